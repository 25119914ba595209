"""`evaluate --summary` groups runs by configuration: seeds of one configuration are averaged, other configurations
(here the DAKD teacher and Sultani's MIL MLP on the same backbone) are reported apart, each saying what sets it apart.
Real tiny runs trained on one store of synthetic features imported through the community-feature path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from feature_sets import feature_store
from test_train import FAST, STRONG

from pipeline.cli import evaluate, train
from pipeline.store import FeatureStore

SEEDS = 2
EPOCHS = 3
SULTANI = ["--set", "model.temporal=none", "--set", "model.projection=false"]  # MIL MLP (method.md §3)


def _train_seeds(store, labels, *config: str) -> list[str]:
    """Train SEEDS seeds of one configuration; their run keys."""
    before = {r["key"] for r in FeatureStore(store).runs("teacher")}
    assert train.main(["teacher", "--store", str(store), "--dataset", str(labels), "--backbones", "i3d",
                       "--seeds", str(SEEDS), "--epochs", str(EPOCHS), "--quiet", *FAST, *config]) == 0
    return [r["key"] for r in FeatureStore(store).runs("teacher") if r["key"] not in before]


def _test_auc(store, run_key: str) -> float:
    row = next(r for r in FeatureStore(store).runs("evaluate") if json.loads(r["summary"])["run"] == run_key)
    return json.loads(row["summary"])["auc"]


@pytest.fixture(scope="module")
def two_configurations(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-configs")
    store, labels = feature_store(root, dims={"i3d": 16}, signal={"i3d": STRONG}, n_train=(8, 8), n_test=(4, 4),
                                  snippets=(24, 40))
    return store, _train_seeds(store, labels), _train_seeds(store, labels, *SULTANI)


def test_summary_keeps_configurations_apart_and_averages_their_seeds(two_configurations, tmp_path, capsys):
    store, tam_runs, mlp_runs = two_configurations
    assert len(tam_runs) == len(mlp_runs) == SEEDS
    summary_file = tmp_path / "summary.json"
    assert evaluate.main([k[:12] for k in tam_runs + mlp_runs] + [
        "--store", str(store), "--summary", str(summary_file), "--no-video-plots", "--quiet"]) == 0
    out = capsys.readouterr().out

    groups = json.loads(summary_file.read_text())
    assert [g["runs"] for g in groups] == [tam_runs, mlp_runs]  # not one group of 4
    tam, mlp = groups
    assert tam["differing"] == {"model.temporal": "tam", "model.projection": True}
    assert mlp["differing"] == {"model.temporal": "none", "model.projection": False}
    for group, runs in ((tam, tam_runs), (mlp, mlp_runs)):
        aucs = [_test_auc(store, key) for key in runs]
        assert group["auc"]["n"] == SEEDS
        assert group["auc"]["mean"] == pytest.approx(np.mean(aucs))
        assert group["auc"]["std"] == pytest.approx(np.std(aucs, ddof=1))
        assert "seed" not in group["config"]["train"] and group["config"]["train"]["epochs"] == EPOCHS
        assert group["stage"] == "teacher" and group["backbones"] == ["i3d"]
        assert set(group["fingerprints"]) == {"i3d"}
    assert tam["config"]["model"]["temporal"] == "tam" and mlp["config"]["model"]["projection"] is False
    # each printed group line says what distinguishes it
    assert "teacher i3d [model.temporal=tam, model.projection=true], mean ± std over 2 runs" in out
    assert "teacher i3d [model.temporal=none, model.projection=false], mean ± std over 2 runs" in out


def test_seeds_of_one_configuration_form_one_group_with_nothing_to_tell_apart(two_configurations, tmp_path,
                                                                              capsys):
    store, tam_runs, _ = two_configurations
    summary_file = tmp_path / "summary.json"
    assert evaluate.main([k[:12] for k in tam_runs] + ["--store", str(store), "--summary", str(summary_file),
                                                       "--no-video-plots", "--quiet"]) == 0
    (group,) = json.loads(summary_file.read_text())
    assert group["runs"] == tam_runs and group["differing"] == {}
    assert "teacher i3d, mean ± std over 2 runs: auc" in capsys.readouterr().out



def _weighted_frame_auc(per_video: dict[str, tuple[list[float], list[tuple[float, int]]]]) -> float:
    """Frame AUC from snippet scores and each snippet's (anomalous fraction, frames): every snippet's frames share
    its score, so weighting the snippet by its anomalous and normal frame counts is the frame-level AUC."""
    from sklearn.metrics import roc_auc_score

    scores, labels, weights = [], [], []
    for values, frames in per_video.values():
        for score, (fraction, n) in zip(values, frames):
            scores += [score, score]
            labels += [1, 0]
            weights += [fraction * n, (1 - fraction) * n]
    return float(roc_auc_score(labels, scores, sample_weight=weights))


def test_evaluation_reports_smoothed_metrics_beside_the_protocols_and_keys_the_window(two_configurations, tmp_path):
    """`--smoothing N` (default 3): auc_smoothed from each video's snippet scores smoothed by a centred moving mean
    over N snippets, each video on its own; the protocol's auc unchanged; N = 1 reports none; each window is its
    own evaluation (key); an even window is refused."""
    from pipeline.defaults import SMOOTHING_SNIPPETS

    store, tam_runs, _ = two_configurations
    run = tam_runs[0][:12]
    results = {}
    for window in (1, SMOOTHING_SNIPPETS, 5):
        out = tmp_path / f"w{window}"
        assert evaluate.main([run, "--store", str(store), "--out", str(out), "--no-video-plots", "--quiet",
                              "--smoothing", str(window)]) == 0
        results[window] = json.loads((out / "metrics.json").read_text())
    assert SMOOTHING_SNIPPETS == 3 and "auc_smoothed" not in results[1] and "smoothing_snippets" not in results[1]
    assert len({m["key"] for m in results.values()}) == 3
    assert results[1]["auc"] == results[3]["auc"] == results[5]["auc"]  # the protocol's metric is untouched

    per_video: dict[str, tuple[list[float], list[tuple[float, int]]]] = {}  # the written snippet scores
    for line in (tmp_path / "w1" / "scores.csv").read_text().splitlines()[1:]:
        video, _, _, _, start, end, score, fraction = line.split(",")
        values, frames = per_video.setdefault(video, ([], []))
        values.append(float(score))
        frames.append((float(fraction), int(end) - int(start)))
    assert _weighted_frame_auc(per_video) == pytest.approx(results[1]["auc"])
    for window in (3, 5):
        half = window // 2
        by_hand = {v: ([float(np.mean(s[max(i - half, 0):i + half + 1])) for i in range(len(s))], f)
                   for v, (s, f) in per_video.items()}
        assert results[window]["smoothing_snippets"] == window
        assert results[window]["auc_smoothed"] == pytest.approx(_weighted_frame_auc(by_hand))
        assert results[window]["auc_smoothed"] != pytest.approx(results[window]["auc"])
    assert evaluate.main([run, "--store", str(store), "--out", str(tmp_path / "even"), "--quiet",
                          "--smoothing", "2"]) != 0
