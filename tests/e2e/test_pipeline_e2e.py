"""The whole chain through the CLIs, in-process: synthetic videos -> extract -> teacher -> student -> evaluate.

Real decoders and real backbones (EfficientNet-Lite0 with its ImageNet weights, CLIP ViT-B/32 with random weights
asked for by name), a tiny training configuration, and a second pass over every stage that must be a cache hit.
"""

from __future__ import annotations

import json

import pytest
from feature_sets import TINY_MODEL

from data.synthetic import generate_dataset
from pipeline.cli import evaluate, extract, train
from pipeline.store import FeatureStore

TRAIN = ["--epochs", "3", "--set", "train.batch_anomalous=2", "--set", "train.batch_normal=2", *TINY_MODEL]


def _stages(dataset, store, capsys) -> dict[str, str]:
    outputs = {}
    assert extract.main([str(dataset.root / "videos"), "--store", str(store), "--backbones", "effnet_lite0,clip_b32",
                         "--weights", "clip_b32=random", "--quiet"]) == 0
    outputs["extract"] = capsys.readouterr().out
    assert train.main(["teacher", "--store", str(store), "--dataset", str(dataset.root),
                       "--backbones", "effnet_lite0,clip_b32", "--quiet", *TRAIN]) == 0
    outputs["teacher"] = capsys.readouterr().out
    teacher = FeatureStore(store).runs("teacher")[0]["key"]
    assert train.main(["student", "--store", str(store), "--teacher", teacher[:12], "--backbones", "effnet_lite0",
                       "--quiet", *TRAIN]) == 0
    outputs["student"] = capsys.readouterr().out
    student = FeatureStore(store).runs("student")[0]["key"]
    assert evaluate.main([teacher[:12], student[:12], "--store", str(store), "--quiet"]) == 0
    outputs["evaluate"] = capsys.readouterr().out
    return outputs


@pytest.mark.slow
def test_videos_to_metrics_and_plots_then_all_cache_hits(tmp_path, capsys):
    dataset = generate_dataset(tmp_path / "synthetic", n_normal=4, n_anomalous=4, seed=1, n_frames=96)
    store = tmp_path / "store"
    first = _stages(dataset, store, capsys)
    assert "8 extracted" in first["extract"]
    evaluations = FeatureStore(store).runs("evaluate")
    assert len(evaluations) == 2
    for row in evaluations:
        folder = store / row["folder"]
        metrics = json.loads((folder / "metrics.json").read_text())
        test_videos = [line for line in dataset.labels_path.read_text().splitlines()[1:] if ",test," in line]
        assert metrics["n_videos"] == len(test_videos) >= 2
        assert metrics["n_frames"] == 16 * 6 * len(test_videos)  # 96 frames = 6 snippets per video
        assert metrics["auc"] is not None and 0.0 <= metrics["auc"] <= 1.0
        assert (folder / "roc.png").is_file() and (folder / "pr.png").is_file()
        assert len(list((folder / "videos").glob("*.png"))) == len(test_videos)
    assert "mean ± std" not in first["evaluate"]  # a teacher and a student are not seeds of one configuration

    second = _stages(dataset, store, capsys)
    assert "0 extracted, 8 cached" in second["extract"]
    assert "cached" in second["teacher"] and "cached" in second["student"]
    assert second["evaluate"].count("(cached)") == 2
