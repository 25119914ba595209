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
