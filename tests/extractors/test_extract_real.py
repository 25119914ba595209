"""The real default: DeepMind's I3D weights on OpenCV's real vtest.avi through the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.cli import extract
from pipeline.store import FeatureStore


@pytest.mark.slow
def test_vtest_with_real_i3d_gives_49_snippets(tmp_path, vtest_path, i3d_weights, capsys):
    store = tmp_path / "store"
    code = extract.main([str(vtest_path), "--store", str(store), "--backbones", "i3d", "--quiet",
                         "--weights", f"i3d={i3d_weights}"])
    assert code == 0, capsys.readouterr().err
    (row,) = FeatureStore(store).features()
    feats = np.load(store / row["file"])
    assert feats.shape == (49, 1, 1024)
    assert (row["n_frames"], row["fps"]) == (795, 10.0)
    # Post-ReLU average-pooled activations: non-negative, informative, and different along time.
    assert feats.min() >= 0 and np.isfinite(feats).all()
    assert feats.std(axis=0).mean() > 1e-3
    assert "1 extracted, 0 cached, 0 failed; 795 frames" in capsys.readouterr().out
