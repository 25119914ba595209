"""Full-length snippet scoring (method.md §7): each crop scored as its own sequence, scores averaged."""

import numpy as np
import torch

from models.vad_model import ModelConfig, VADModel
from pipeline.evaluate import scoring

TINY = ModelConfig(d_model=16, n_heads=2, projection_hidden=16, ffn_dim=32, classifier_hidden=16, k=4)


def _model():
    torch.manual_seed(0)
    return VADModel([6, 4], TINY).eval()


def test_crops_are_scored_separately_then_averaged(monkeypatch):
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((40, 3, 6)).astype(np.float32), rng.standard_normal((40, 3, 4)).astype(np.float32)]
    model = _model()
    with torch.no_grad():
        per_crop = [model([torch.from_numpy(f[:, c][None]) for f in feats]).scores[0] for c in range(3)]
    expected = torch.stack(per_crop).mean(0).numpy()
    np.testing.assert_allclose(scoring.score_snippets(model, feats, torch.device("cpu"), n_heads=2), expected,
                               rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(scoring, "ATTENTION_MEMORY_BUDGET", 1)  # one crop per forward pass: same scores
    np.testing.assert_allclose(scoring.score_snippets(model, feats, torch.device("cpu"), n_heads=2), expected,
                               rtol=1e-5, atol=1e-6)


def test_backbones_are_cut_to_the_shortest_and_mismatched_crops_averaged():
    a, b = np.ones((10, 5, 6)), np.arange(9 * 1 * 4, dtype=float).reshape(9, 1, 4)
    (a2, b2), dropped = scoring.align_snippets([a, b])
    assert dropped == 1 and a2.shape == (9, 1, 6) and b2.shape == (9, 1, 4)
    same, none_dropped = scoring.align_snippets([np.zeros((7, 3, 2)), np.zeros((7, 3, 5))])
    assert none_dropped == 0 and [f.shape for f in same] == [(7, 3, 2), (7, 3, 5)]
