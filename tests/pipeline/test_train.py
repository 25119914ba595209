"""Training and evaluation stages on synthetic feature sets imported into a store (CLIs called in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from feature_sets import TINY_MODEL, feature_store

from pipeline.cli import evaluate, train
from pipeline.import_features import importer
from pipeline.train import trainer as training
from pipeline.store import FeatureStore

# Few iterations: small batches and larger steps than the paper's, so that the tiny model converges in CI.
FAST = ["--set", "train.batch_anomalous=8", "--set", "train.batch_normal=8", "--set", "train.lr_other=1e-2",
        "--set", "train.lr_temporal=1e-3"] + TINY_MODEL
STRONG, WEAK = 2.0, 0.6  # anomaly signal of the teacher's backbones and of the student's (harder) backbone


@pytest.fixture(scope="module")
def harder_set(tmp_path_factory):
    """Two strong backbones and one weak one: the teacher sees all three, the student only the weak one."""
    root = tmp_path_factory.mktemp("harder")
    return feature_store(root, dims={"i3d": 64, "s3d": 64, "clip": 32},
                         signal={"i3d": STRONG, "s3d": STRONG, "clip": WEAK}, n_train=(24, 24), n_test=(10, 10))


def _train(stage: str, store: Path, *args: str, epochs: int = 30) -> dict:
    out = Path(store) / f"last-{stage}.json"
    code = train.main([stage, "--store", str(store), "--quiet", "--epochs", str(epochs), *FAST, *args])
    assert code == 0
    runs = [r for r in FeatureStore(store).runs(stage) if r["status"] == "done"]
    out.write_text(json.dumps(runs))
    return json.loads(runs[-1]["summary"]) if runs else {}


def _run_key(store: Path, stage: str, seed: int, backbones: str) -> str:
    return next(r["key"] for r in FeatureStore(store).runs(stage) if r["seed"] == seed and r["backbones"] == backbones)


def _test_auc(store: Path, key: str) -> float:
    assert evaluate.main([key[:12], "--store", str(store), "--quiet", "--no-video-plots"]) == 0
    metrics = next(r for r in FeatureStore(store).runs("evaluate") if json.loads(r["summary"])["run"] == key)
    return json.loads(metrics["summary"])["auc"]


def test_teacher_learns_an_easy_set(tmp_path):
    store, labels = feature_store(tmp_path, dims={"i3d": 64, "clip": 32}, signal={"i3d": STRONG, "clip": STRONG})
    _train("teacher", store, "--dataset", str(labels), "--backbones", "i3d,clip")
    assert _test_auc(store, _run_key(store, "teacher", 0, "i3d,clip")) > 0.95


@pytest.mark.slow
def test_distilled_student_beats_the_same_student_trained_with_mil_alone(harder_set):
    store, labels = harder_set
    distilled, mil_alone = [], []
    for seed in (0, 1):
        _train("teacher", store, "--dataset", str(labels), "--seed", str(seed))
        teacher = _run_key(store, "teacher", seed, "i3d,s3d,clip")
        _train("student", store, "--teacher", teacher[:12], "--seed", str(seed))
        # The same single-backbone architecture trained with the MIL loss only.
        _train("teacher", store, "--dataset", str(labels), "--backbones", "clip", "--seed", str(seed))
        distilled.append(_test_auc(store, _run_key(store, "student", seed, "clip")))
        mil_alone.append(_test_auc(store, _run_key(store, "teacher", seed, "clip")))
    assert np.mean(distilled) > np.mean(mil_alone) + 0.02, (distilled, mil_alone)
    assert min(distilled) > 0.9


def test_rerun_is_a_cache_hit_and_force_retrains(harder_set, capsys, monkeypatch):
    store, labels = harder_set
    args = ["--dataset", str(labels), "--backbones", "clip", "--seed", "5"]
    _train("teacher", store, *args, epochs=2)
    capsys.readouterr()
    original = training.build_training_set
    monkeypatch.setattr(training, "build_training_set", lambda *a: pytest.fail("a cache hit loaded the features"))
    _train("teacher", store, *args, epochs=2)
    assert "cached" in capsys.readouterr().out
    monkeypatch.setattr(training, "build_training_set", original)
    _train("teacher", store, *args, "--force", epochs=2)
    assert "cached" not in capsys.readouterr().out


def test_a_killed_run_resumes_to_the_same_model(tmp_path, harder_set, monkeypatch):
    store, labels = harder_set
    args = ["teacher", "--store", str(store), "--dataset", str(labels), "--backbones", "s3d,clip", "--seed", "7",
            "--epochs", "6", "--checkpoint-every", "2", "--quiet", *FAST]
    assert train.main(args) == 0
    key = _run_key(store, "teacher", 7, "s3d,clip")
    reference = torch.load(Path(store) / "runs" / "teacher" / key / "checkpoint.pt", weights_only=True)

    calls = {"n": 0}
    original = training.TrainingJob._validate

    def dies_in_epoch_5(self, objective, modules, *rest):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # as if killed after the epoch-4 state was saved
        return original(self, objective, modules, *rest)

    monkeypatch.setattr(training.TrainingJob, "_validate", dies_in_epoch_5)
    with pytest.raises(KeyboardInterrupt):
        train.main(args + ["--force"])
    folder = Path(store) / "runs" / "teacher" / key
    assert (folder / "state.pt").is_file() and not (folder / "checkpoint.pt").exists()
    assert torch.load(folder / "state.pt", weights_only=True)["epoch"] == 4
    monkeypatch.setattr(training.TrainingJob, "_validate", original)
    assert train.main(args) == 0
    resumed = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert not (folder / "state.pt").exists()
    assert resumed["epoch"] == reference["epoch"]
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_validation_videos_come_from_the_training_split_only(harder_set):
    store, labels = harder_set
    metrics = _train("teacher", store, "--dataset", str(labels), "--backbones", "i3d", "--seed", "3",
                     "--set", "train.min_val_videos=2", epochs=1)
    assert metrics["n_train_videos"] + metrics["n_val_videos"] == 48  # the 20 test videos are never used
    assert metrics["n_val_videos"] == 4  # round(10 % of 24) = 2 anomalous + 2 normal
    assert metrics["selection"].startswith("best validation video AUC")


def test_a_validation_split_too_small_to_select_on_trains_on_everything_and_keeps_the_last_step(harder_set):
    store, labels = harder_set
    metrics = _train("teacher", store, "--dataset", str(labels), "--backbones", "i3d", "--seed", "4", epochs=3)
    # 10 % of 24 = 2 videos of each label, below the default train.min_val_videos = 5
    assert metrics["n_val_videos"] == 0 and metrics["n_train_videos"] == 48
    assert metrics["best_epoch"] == 3 and "min_val_videos = 5" in metrics["selection"]


def test_min_steps_lengthens_training_on_a_small_set_in_whole_epochs(harder_set):
    store, labels = harder_set
    # 24 anomalous videos in batches of 8: 3 steps an epoch, so 10 steps take 4 epochs (12 steps)
    argv = ["teacher", "--store", str(store), "--quiet", "--dataset", str(labels), "--backbones", "i3d", "--seed",
            "6", *FAST, "--set", "train.epochs=1", "--set", "train.min_steps=10"]
    assert train.main(argv) == 0
    metrics = json.loads(FeatureStore(store).runs("teacher")[-1]["summary"])
    assert metrics["epochs"] == 4 and metrics["steps"] == 12
    # --epochs N is exactly N epochs, whatever train.min_steps says
    assert train.main([*argv, "--epochs", "2", "--seed", "8"]) == 0
    assert json.loads(FeatureStore(store).runs("teacher")[-1]["summary"])["steps"] == 6
    log = (Path(store) / "runs" / "teacher" / metrics["run"] / "log.jsonl").read_text().splitlines()
    assert len(log) == 4


def test_seeds_report_mean_and_std(harder_set, capsys):
    store, labels = harder_set
    _train("teacher", store, "--dataset", str(labels), "--backbones", "i3d", "--seed", "10", "--seeds", "2",
           "--set", "train.min_val_videos=2", epochs=1)
    out = capsys.readouterr().out
    assert "over 2 seeds" in out and "±" in out


def test_missing_features_stop_training_with_the_fix(tmp_path, harder_set, capsys):
    store, labels = harder_set
    extra = tmp_path / "labels.csv"
    extra.write_text(Path(labels).read_text() + "not_extracted_video,1,train,Anomaly,0-32\n")
    assert train.main(["teacher", "--store", str(store), "--dataset", str(extra), "--backbones", "clip",
                       "--quiet", "--epochs", "1", *FAST]) == 2
    err = capsys.readouterr().err
    assert "not_extracted_video" in err and "dakd extract" in err and "--allow-missing" in err
    assert train.main(["teacher", "--store", str(store), "--dataset", str(extra), "--backbones", "clip",
                       "--quiet", "--epochs", "1", "--allow-missing", *FAST]) == 1


def test_student_without_teacher_is_a_usage_error(harder_set, capsys):
    store, _ = harder_set
    assert train.main(["student", "--store", str(store), "--quiet"]) == 2
    assert "--teacher" in capsys.readouterr().err
    assert train.main(["student", "--store", str(store), "--teacher", "ffffffffff", "--quiet"]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_evaluate_writes_metrics_curves_and_one_plot_per_video(harder_set, tmp_path):
    store, labels = harder_set
    _train("teacher", store, "--dataset", str(labels), "--backbones", "clip", "--seed", "20", epochs=1)
    key = _run_key(store, "teacher", 20, "clip")
    out = tmp_path / "eval"
    assert evaluate.main([key[:12], "--store", str(store), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_videos"] == 20 and metrics["n_anomalous_videos"] == 10
    assert set(metrics) >= {"auc", "ap", "auc_anomalous_videos", "false_alarm_rate_normal", "per_class_auc"}
    assert metrics["n_frames"] == 16 * sum(1 for _ in (out / "scores.csv").open()) - 16  # header line
    for name in ("roc.png", "pr.png", "scores.csv", "videos.csv"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "videos").glob("*.png"))) == 20


def test_two_extractions_of_one_backbone_must_be_chosen_between(tmp_path, capsys):
    from pipeline.cli import import_features
    from pipeline.keys import hash_json

    store, labels = feature_store(tmp_path, dims={"clip": 16}, signal={"clip": STRONG}, n_train=(4, 4),
                                  n_test=(1, 1))
    again = tmp_path / "features" / "clip.list"
    assert import_features.main([str(again), "--backbone", "clip", "--store", str(store), "--source", "other",
                                 "--quiet"]) == 0
    args = ["teacher", "--store", str(store), "--dataset", str(labels), "--backbones", "clip", "--epochs", "1",
            "--quiet", *FAST]
    assert train.main(args) == 2
    assert "--fingerprint clip=PREFIX" in capsys.readouterr().err
    chosen = hash_json(importer.import_params("clip", "other"))
    assert train.main(args + ["--fingerprint", f"clip={chosen[:10]}"]) == 0
    run = torch.load(next((Path(store) / "runs" / "teacher").glob("*/checkpoint.pt")), weights_only=True)
    assert run["fingerprints"] == {"clip": chosen}


def test_evaluating_seeds_reports_mean_and_std_over_them(harder_set, tmp_path, capsys):
    store, labels = harder_set
    _train("teacher", store, "--dataset", str(labels), "--backbones", "s3d", "--seed", "30", "--seeds", "2",
           epochs=1)
    keys = [_run_key(store, "teacher", seed, "s3d") for seed in (30, 31)]
    summary_file = tmp_path / "summary.json"
    assert evaluate.main([k[:12] for k in keys] + ["--store", str(store), "--summary", str(summary_file),
                                                   "--no-video-plots", "--quiet"]) == 0
    assert "mean ± std over 2 runs" in capsys.readouterr().out
    (summary,) = json.loads(summary_file.read_text())
    aucs = []
    for key in keys:
        row = next(r for r in FeatureStore(store).runs("evaluate") if json.loads(r["summary"])["run"] == key)
        aucs.append(json.loads(row["summary"])["auc"])
    assert summary["auc"]["n"] == 2 and summary["runs"] == keys
    assert summary["auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert summary["auc"]["std"] == pytest.approx(np.std(aucs, ddof=1))


def test_each_crop_can_be_its_own_training_sample(tmp_path):
    from data.datasets import load_dataset
    from pipeline.features import resolve_features
    from pipeline.train.data import build_segment_data

    store, labels = feature_store(tmp_path, dims={"i3d": 16, "clip": 8}, signal={"i3d": STRONG, "clip": STRONG},
                                  n_train=(4, 4), n_test=(1, 1), crops=3)
    found = resolve_features(FeatureStore(store), load_dataset(labels).split("train"), ("i3d", "clip")).found
    averaged = build_segment_data(found, ("i3d", "clip"), n_segments=32, crops="mean")
    samples = build_segment_data(found, ("i3d", "clip"), n_segments=32, crops="samples")
    assert averaged.segments["i3d"].shape == (8, 32, 16) and samples.segments["clip"].shape == (24, 32, 8)
    assert samples.video.tolist() == [v for v in range(8) for _ in range(3)]
    torch.testing.assert_close(samples.segments["i3d"].reshape(8, 3, 32, 16).mean(1), averaged.segments["i3d"])
    metrics = _train("teacher", store, "--dataset", str(labels), "--backbones", "i3d,clip", "--crops", "samples",
                     "--val-fraction", "0.25", "--set", "train.min_val_videos=1", epochs=2)
    assert metrics["n_val_videos"] == 2 and metrics["val_video_auc"] is not None


def test_evaluation_with_missing_test_features_needs_consent_and_says_so(harder_set, tmp_path, capsys):
    store, labels = harder_set
    _train("teacher", store, "--dataset", str(labels), "--backbones", "clip", "--seed", "40", epochs=1)
    key = _run_key(store, "teacher", 40, "clip")
    extra = tmp_path / "labels.csv"
    extra.write_text(Path(labels).read_text() + "never_extracted,1,test,Anomaly,0-32\n")
    args = [key[:12], "--store", str(store), "--dataset", str(extra), "--no-video-plots", "--quiet"]
    assert evaluate.main(args) == 2
    assert "never_extracted" in capsys.readouterr().err
    assert evaluate.main(args + ["--allow-missing", "--out", str(tmp_path / "eval")]) == 1
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["missing_videos"] == ["never_extracted"] and metrics["n_videos"] == 20


def test_an_out_folder_holding_another_evaluation_is_not_a_cache_hit(harder_set, tmp_path, capsys):
    store, labels = harder_set
    _train("teacher", store, "--dataset", str(labels), "--backbones", "clip", "--seed", "50", "--seeds", "2",
           epochs=1)
    first, second = (_run_key(store, "teacher", seed, "clip") for seed in (50, 51))
    out = tmp_path / "eval"
    for key in (first, second):
        assert evaluate.main([key[:12], "--store", str(store), "--out", str(out), "--no-video-plots",
                              "--quiet"]) == 0
        assert json.loads((out / "metrics.json").read_text())["run"] == key
    assert "(cached)" not in capsys.readouterr().out
    assert evaluate.main([second[:12], "--store", str(store), "--out", str(out), "--quiet"]) == 0
    assert "(cached)" not in capsys.readouterr().out  # per-video plots were asked for this time
    assert len(list((out / "videos").glob("*.png"))) == 20
