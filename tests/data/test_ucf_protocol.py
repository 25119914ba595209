"""The evaluation protocol on UCF-Crime's real test list: 290 videos with their real lengths, imported RTFM-style.

Feature values are random (the metrics' values mean nothing here); what is checked is the protocol: canonical
order and counts, T from each feature file, ``len(gt) == 16 * sum(T)``, and the anomalous frames equal to the
official annotation (end exclusive) truncated to each video's ``16 * T`` frames, counted independently.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from feature_sets import TINY_MODEL

from data.discover import split_file
from pipeline.cli import evaluate, import_features, train
from pipeline.store import FeatureStore

DIM = 4


def _frame_counts() -> dict[str, int]:
    """name -> frame count, from UR-DMU's UCF_Annotation.txt (``Class/Name.mp4 N ...``)."""
    counts = {}
    for line in split_file("ucf_crime/UCF_Annotation.txt").splitlines():
        if line.strip():
            path, n = line.split()[:2]
            counts[path.split("/")[-1].removesuffix(".mp4")] = int(n)
    return counts


def _annotated_frames(n_snippets: dict[str, int]) -> int:
    """Anomalous frames of the official annotation, each interval [s, e) cut at the video's 16 * T frames."""
    total = 0
    for line in split_file("ucf_crime/Temporal_Anomaly_Annotation.txt").splitlines():
        if not line.strip():
            continue
        name, _, *bounds = line.split()
        frames = 16 * n_snippets[name.removesuffix(".mp4")]
        for s, e in zip(map(int, bounds[0::2]), map(int, bounds[1::2])):
            if s >= 0:
                total += max(0, min(e, frames) - min(s, frames))
    return total


@pytest.mark.slow
def test_ucf_crime_test_protocol_on_the_official_list(tmp_path):
    rng = np.random.default_rng(0)
    counts = _frame_counts()
    assert len(counts) == 290
    train_names = [p.split("/")[-1].removesuffix(".mp4")
                   for p in split_file("ucf_crime/Anomaly_Train.txt").split()]
    train_names = train_names[:6] + [n for n in train_names if n.startswith("Normal")][:6]
    lines = []
    for name, n_frames in [*counts.items(), *((n, 320) for n in train_names)]:
        path = tmp_path / "rtfm" / f"{name}_i3d.npy"  # RTFM's file naming
        path.parent.mkdir(exist_ok=True)
        np.save(path, rng.standard_normal((n_frames // 16, 1, DIM)).astype(np.float32))
        lines.append(f"/home/someone/UCF_Crime_i3d/{path.name}")  # the authors' paths: found through --root
    (tmp_path / "ucf-i3d.list").write_text("\n".join(lines) + "\n")
    store = tmp_path / "store"
    assert import_features.main([str(tmp_path / "ucf-i3d.list"), "--backbone", "i3d", "--root",
                                 str(tmp_path / "rtfm"), "--store", str(store), "--quiet"]) == 0
    # 12 of the 1610 training videos have features: training says so (exit 1) and goes on with them.
    assert train.main(["teacher", "--store", str(store), "--dataset", "ucf-crime", "--backbones", "i3d",
                       "--epochs", "1", "--allow-missing", "--quiet", *TINY_MODEL]) == 1
    run = FeatureStore(store).runs("teacher")[0]["key"]
    out = tmp_path / "eval"
    assert evaluate.main([run[:12], "--store", str(store), "--out", str(out), "--no-video-plots", "--quiet"]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    n_snippets = {name: n // 16 for name, n in counts.items()}
    assert (metrics["n_videos"], metrics["n_anomalous_videos"]) == (290, 140)
    assert metrics["n_frames"] == 16 * sum(n_snippets.values())
    assert metrics["n_anomalous_frames"] == _annotated_frames(n_snippets)
    assert set(metrics["per_class_auc"]) == {"Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion",
                                             "Fighting", "RoadAccidents", "Robbery", "Shooting", "Shoplifting",
                                             "Stealing", "Vandalism"}
    videos = pd.read_csv(out / "videos.csv")
    assert videos.label.tolist() == [1] * 140 + [0] * 150  # canonical order: anomalous first
    assert dict(zip(videos.video, videos.n_snippets)) == n_snippets
