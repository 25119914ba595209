"""LA-Net, the lightning student and the baselines/ablations grid through the CLIs, in-process.

LA-Net and the grid run on synthetic feature sets imported into a store; the lightning student runs on real
synthetic videos (decoded at low resolution by the extract stage) with real teachers trained on EfficientNet-Lite0
features.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from feature_sets import TINY_MODEL, feature_store

from data.synthetic import generate_dataset
from pipeline.cli import evaluate, extract, grid, train
from pipeline.runs import load_run
from pipeline.store import FeatureStore
from pipeline.train.lightning_student import spread_positions, window_positions

FAST = ["--set", "train.batch_anomalous=8", "--set", "train.batch_normal=8", "--set", "train.lr_other=1e-2",
        "--set", "train.lr_temporal=1e-3"]
TINY_LANET = ["--set", "lanet.d_model=32", "--set", "lanet.n_heads=4", "--set", "lanet.ffn_dim=64",
              "--set", "lanet.classifier_hidden=16"]
TINY_LIGHTNING = ["--set", "lightning.channels=4,8", "--set", "lightning.head_hidden=8",
                  "--set", "lightning.disc_channels=8", "--set", "adversarial.window=4"]


@pytest.fixture(scope="module")
def easy_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("easy")
    return feature_store(root, dims={"i3d": 64, "clip": 32}, signal={"i3d": 2.0, "clip": 2.0}, n_train=(16, 16),
                         n_test=(8, 8))


def _done_runs(store: Path, stage: str) -> list[dict]:
    return [r for r in FeatureStore(store).runs(stage) if r["status"] == "done"]


def _evaluated_auc(store: Path, key: str) -> float:
    row = next(r for r in FeatureStore(store).runs("evaluate") if json.loads(r["summary"])["run"] == key)
    return json.loads(row["summary"])["auc"]


def test_lanet_trains_and_evaluates_through_the_cli(easy_set):
    store, labels = easy_set
    assert train.main(["lanet", "--store", str(store), "--dataset", str(labels), "--backbones", "i3d", "--quiet",
                       "--epochs", "25", *FAST, *TINY_LANET]) == 0
    run = _done_runs(store, "lanet")[-1]
    checkpoint_config = json.loads((store / run["folder"] / "config.json").read_text())
    assert set(checkpoint_config) == {"stage", "backbones", "lanet", "train", "ddl"}
    assert evaluate.main([run["key"][:12], "--store", str(store), "--quiet", "--no-video-plots"]) == 0
    assert _evaluated_auc(store, run["key"]) > 0.9


def test_grid_trains_dependencies_writes_tables_and_reports_failures(easy_set, tmp_path, capsys):
    store, labels = easy_set
    out = tmp_path / "grid"
    code = grid.main(["--store", str(store), "--dataset", str(labels), "--tables", "", "--seeds", "2",
                      "--variants", "sultani,student-no-nce,temporal-gru,lightning", "--epochs", "2",
                      "--teacher-backbones", "i3d,clip", "--student-backbone", "clip", "--out", str(out),
                      *FAST, *TINY_MODEL, *TINY_LANET])
    assert code == 1  # the lightning variant has no low-resolution frames in this store
    rows = {r["variant"]: r for r in json.loads((out / "grid.json").read_text())["rows"]}
    # the students' teacher and the lightning student's three teachers were trained as dependencies
    assert set(rows) == {"sultani", "teacher", "student", "lanet", "student-no-nce", "temporal-gru", "lightning"}
    for name in ("sultani", "teacher", "student", "lanet", "student-no-nce", "temporal-gru"):
        assert rows[name]["auc"]["n"] == 2 and not rows[name]["errors"], rows[name]
        assert 0.0 <= rows[name]["auc"]["mean"] <= 1.0 and rows[name]["auc"]["std"] >= 0.0
    assert set(rows["lightning"]["errors"]) == {"0", "1"} and "lowres" in rows["lightning"]["errors"]["0"]
    # each seed's student distilled that seed's teacher
    for name in ("student", "student-no-nce"):
        for seed in ("0", "1"):
            checkpoint = load_run(FeatureStore(store), rows[name]["runs"][seed]).checkpoint
            assert checkpoint["teacher"] == rows["teacher"]["runs"][seed]
    table = (out / "grid.md").read_text()
    assert "| methods | sultani |" in table and "± " in table and "lightning seed 0:" in table
    # a second grid is all cache hits: the same run keys
    capsys.readouterr()
    grid.main(["--store", str(store), "--dataset", str(labels), "--tables", "", "--seeds", "2", "--variants",
               "sultani", "--epochs", "2", "--student-backbone", "clip", "--out", str(out),
               *FAST, *TINY_MODEL])
    assert "cached" in capsys.readouterr().out
    assert json.loads((out / "grid.json").read_text())["rows"][0]["runs"] == rows["sultani"]["runs"]


def test_grid_rejects_unknown_names(easy_set, capsys):
    store, labels = easy_set
    assert grid.main(["--store", str(store), "--dataset", str(labels), "--variants", "transformer"]) == 2
    assert "unknown variant" in capsys.readouterr().err


def test_lightning_student_distills_teachers_from_low_resolution_frames(tmp_path, capsys):
    dataset = generate_dataset(tmp_path / "synthetic", n_normal=4, n_anomalous=4, seed=2, n_frames=96)
    store = tmp_path / "store"
    assert extract.main([str(dataset.root / "videos"), "--store", str(store), "--backbones", "effnet_lite0,lowres",
                         "--quiet"]) == 0
    common = ["--store", str(store), "--quiet", "--epochs", "3", "--set", "train.batch_anomalous=2",
              "--set", "train.batch_normal=2"]
    assert train.main(["teacher", "--dataset", str(dataset.root), "--backbones", "effnet_lite0", *common,
                       *TINY_MODEL]) == 0
    assert train.main(["lanet", "--dataset", str(dataset.root), "--backbones", "effnet_lite0", *common,
                       *TINY_LANET]) == 0
    teachers = [_done_runs(store, s)[0]["key"][:12] for s in ("teacher", "lanet")]
    assert train.main(["lightning", "--teachers", ",".join(teachers), *common, *TINY_LIGHTNING]) == 0
    run = _done_runs(store, "lightning")[0]
    capsys.readouterr()
    assert evaluate.main([run["key"][:12], teachers[1], "--store", str(store), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "evaluate lightning" in out and "evaluate lanet" in out
    for row in FeatureStore(store).runs("evaluate"):  # the same protocol for both
        metrics = json.loads((store / row["folder"] / "metrics.json").read_text())
        assert metrics["backbones"] in (["lowres"], ["effnet_lite0"])
        assert metrics["n_frames"] == 16 * 6 * metrics["n_videos"] and metrics["auc"] is not None
        assert len(list((store / row["folder"] / "videos").glob("*.png"))) == metrics["n_videos"]
    checkpoint = load_run(FeatureStore(store), run["key"]).checkpoint
    assert checkpoint["stage"] == "lightning" and checkpoint["teachers"] == [
        next(r["key"] for r in _done_runs(store, s) if r["key"].startswith(t)) for s, t in zip(("teacher", "lanet"),
                                                                                                teachers)]
    assert set(checkpoint["heads"]) == {"discriminators"}  # one per teacher, saved with the student
    epochs = [json.loads(line) for line in (store / run["folder"] / "log.jsonl").read_text().splitlines()]
    assert len(epochs) == 3 and {"train_regression", "train_generator", "train_discriminator"} <= set(epochs[0])
    # a lightning run cannot teach, the teachers must be given, and the config must match the stored frames
    assert train.main(["lightning", "--teachers", run["key"][:12], *common]) == 2
    assert train.main(["lightning", *common]) == 2
    assert "--teachers" in capsys.readouterr().err
    assert train.main(["lightning", "--teachers", ",".join(teachers), *common, "--set", "lightning.frames=4"]) == 2
    assert "lightning.frames" in capsys.readouterr().err


def test_lightning_windows_are_consecutive_or_stretched_and_validation_spreads():
    assert window_positions(100, 4, 37).tolist() == [37, 38, 39, 40]
    assert window_positions(3, 6, 0).tolist() == [0, 1, 2]  # shorter than the window: the whole video
    assert window_positions(3, 6, 0, stretch=True).tolist() == [0, 0, 1, 1, 2, 2]  # or stretched, in order
    assert spread_positions(64, 4).tolist() == [8, 24, 40, 56]
    assert spread_positions(2, 4).tolist() == [0, 0, 1, 1]
