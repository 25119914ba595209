"""Scoring new videos with trained runs (``pipeline.detect``), in-process through the CLIs, on real videos:
OpenCV's vtest.avi and synthetic surveillance videos with known anomaly intervals; and with the exported student
in onnxruntime (``--onnx``), which must give the eager scores without a store."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from feature_sets import TINY_MODEL
from videos import encode, pattern_frames
from torch import nn

from data.synthetic import SyntheticSpec, generate_dataset, write_video
from data.watchdog import DECODE_STALL_TIMEOUT_S
from extractors.base import preprocess_snippets
from extractors.effnet_lite import PREPROCESSING, EffNetLite0Backbone
from pipeline.cli import detect, export, extract, train
from pipeline.export import exporter
from pipeline.detect import onnx_scorer
from pipeline.detect import detector as detection
from pipeline.alert_rule import AlertRule
from pipeline.detect.overlay import BAR_ANOMALOUS, BAR_BACKGROUND, BAR_NORMAL, draw_score_bar
from pipeline.store import FeatureStore

pytestmark = pytest.mark.slow  # the module's fixture trains a teacher and a student (about 35 s)

TRAIN = ["--quiet", "--set", "train.batch_anomalous=4", "--set", "train.batch_normal=4",
         "--set", "train.lr_other=1e-2", "--set", "train.lr_temporal=1e-3", *TINY_MODEL]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with a teacher, a student and a lightning run trained on 12 synthetic videos (EfficientNet-Lite0
    with its real weights, and the low-resolution frames)."""
    root = tmp_path_factory.mktemp("detect")
    # two cameras, people a quarter of the frame high: anomalies an image backbone sees (benchmarks/demo.py)
    dataset = generate_dataset(root / "synthetic", n_normal=6, n_anomalous=6, seed=3, n_frames=160, n_scenes=2,
                               figure_height=0.25)
    store = root / "store"
    assert extract.main([str(dataset.root / "videos"), "--store", str(store), "--backbones", "effnet_lite0",
                         "--quiet"]) == 0
    assert extract.main([str(dataset.root / "videos"), "--store", str(store), "--backbones", "lowres",
                         "--quiet"]) == 0
    common = ["--store", str(store), "--dataset", str(dataset.root), "--set", "train.val_fraction=0"]
    assert train.main(["teacher", *common, "--backbones", "effnet_lite0", "--epochs", "300", *TRAIN]) == 0
    runs = FeatureStore(store).runs
    teacher = runs("teacher")[0]["key"]
    assert train.main(["student", *common, "--teacher", teacher[:12], "--backbones", "effnet_lite0",
                       "--epochs", "3", *TRAIN]) == 0
    assert train.main(["lightning", *common, "--teachers", teacher[:12], "--epochs", "2", "--quiet",
                       "--set", "lightning.channels=4,8", "--set", "adversarial.window=4"]) == 0
    keys = {stage: runs(stage)[0]["key"] for stage in ("teacher", "student", "lightning")}
    return store, dataset, keys


@pytest.fixture(scope="module")
def exported_student(trained, tmp_path_factory):
    """The trained student exported through the CLI (the export checks its own scores against the eager model's
    on fixed inputs before it writes export.json)."""
    store, _, keys = trained
    out = tmp_path_factory.mktemp("export")
    assert export.main([keys["student"][:12], "--store", str(store), "--out", str(out)]) == 0
    return out


def _anomalous_training_video(dataset):
    return next(e for e in dataset.entries if e.label == 1 and e.split == "train")


def _files(folder) -> dict:
    """Every file under ``folder`` with its size and modification time, to check that nothing touched it."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _forbidden(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"detect --onnx used {name}")
    return fail


def test_detect_scores_every_frame_and_the_anomalies_score_higher(trained, vtest_path, tmp_path, capsys):
    store, dataset, keys = trained
    videos = [e for e in dataset.entries if e.label == 1 and e.split == "test"]  # never seen in training
    out = tmp_path / "out"
    code = detect.main([str(vtest_path), *[str(e.path) for e in videos], "--store", str(store), "--model",
                        keys["teacher"][:12], "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    for path, n_frames in ((vtest_path, 795), *((e.path, 160) for e in videos)):
        stem = path.stem
        frames = pd.read_csv(out / f"{stem}.csv")
        assert list(frames.columns) == ["frame", "time_s", "snippet", "score"]
        assert len(frames) == n_frames and frames["frame"].tolist() == list(range(n_frames))
        info = json.loads((out / f"{stem}.json").read_text())
        assert info["n_frames"] == n_frames and info["n_snippets"] == n_frames // 16
        assert info["run"] == keys["teacher"] and info["stage"] == "teacher"
        assert np.allclose(info["frame_score"], frames["score"]) and len(info["frame_time_s"]) == n_frames
        assert info["fps"] == pytest.approx(frames["time_s"][1] ** -1)
        assert (out / f"{stem}.png").stat().st_size > 0
    # vtest: 795 frames = 49 snippets + 11 trailing frames, which take the last snippet's score
    tail = pd.read_csv(out / "vtest.csv")["score"].to_numpy()
    assert np.all(tail[784:] == tail[783])
    # the unseen synthetic videos' anomalous intervals score higher than their normal parts
    inside, outside, localised = [], [], 0
    for e in videos:
        scores = pd.read_csv(out / f"{e.path.stem}.csv")["score"].to_numpy()
        mask = np.zeros(len(scores), dtype=bool)
        for event in e.events:
            mask[event.start:event.end] = True
        inside.append(scores[mask])
        outside.append(scores[~mask])
        localised += scores[mask].mean() > scores[~mask].mean() + 0.1
    assert np.concatenate(inside).mean() > np.concatenate(outside).mean() + 0.1
    assert localised >= 1


def test_default_model_is_the_student_and_lightning_runs_score_too(trained, tmp_path, capsys):
    store, dataset, keys = trained
    video = _anomalous_training_video(dataset)
    assert detect.main([str(video.path), "--store", str(store), "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert json.loads((tmp_path / "s" / f"{video.path.stem}.json").read_text())["run"] == keys["student"]
    assert detect.main([str(video.path), "--store", str(store), "--model", keys["lightning"][:12],
                        "--out", str(tmp_path / "l"), "--quiet"]) == 0
    info = json.loads((tmp_path / "l" / f"{video.path.stem}.json").read_text())
    assert info["stage"] == "lightning" and info["backbones"] == ["lowres"] and info["n_frames"] == 160


def test_a_folder_with_bad_files_scores_the_good_ones_and_exits_1(trained, tmp_path, capsys):
    store, _, keys = trained
    folder = tmp_path / "in"
    good = write_video(SyntheticSpec(n_frames=48, seed=11), folder / "good.mp4")
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "empty.avi").write_bytes(b"")
    code = detect.main([str(folder), str(tmp_path / "missing.mp4"), "--store", str(store), "--model",
                        keys["teacher"][:12], "--out", str(tmp_path / "out"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "1 scored, 3 failed" in out
    for name in ("random.mp4", "empty.avi", "missing.mp4"):
        assert f"FAILED {tmp_path}" in err and name in err
    assert len(pd.read_csv(tmp_path / "out" / "good.csv")) == 48 and good.is_file()


def test_overlay_copies_every_frame_with_a_score_bar(trained, tmp_path):
    store, dataset, keys = trained
    video = _anomalous_training_video(dataset)
    dest = tmp_path / "overlay.mp4"
    assert detect.main([str(video.path), "--store", str(store), "--model", keys["teacher"][:12], "--out",
                        str(tmp_path / "out"), "--overlay", str(dest), "--threshold", "0.5", "--quiet"]) == 0
    scores = pd.read_csv(tmp_path / "out" / f"{video.path.stem}.csv")["score"].to_numpy()
    with av.open(str(dest)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == len(scores) == 160
    h, w = frames[0].shape[:2]
    # The bar's filled part has the threshold colour, the rest the background (lossy H.264). Sampled at a quarter
    # of the filled part and three quarters into the rest: never on the white threshold tick at w / 2 (a score
    # near 1 would put the filled part's middle there) and never within 8 pixels of a colour edge.
    for i in (0, 80, 159):
        row = frames[i][h - 3].astype(int)
        filled = int(round(scores[i] * w))
        colour = BAR_ANOMALOUS if scores[i] >= 0.5 else BAR_NORMAL
        if filled > 32:
            assert np.abs(row[filled // 4] - colour).max() < 40
        if filled < w - 32:
            assert np.abs(row[filled + 3 * (w - filled) // 4] - BAR_BACKGROUND).max() < 40


def test_score_bar_is_drawn_exactly():
    frame = np.zeros((100, 50, 3), dtype=np.uint8)
    draw_score_bar(frame, 0.4, AlertRule(0.5))
    assert (frame[:94] == 0).all()  # 6 % of 100 rows = 6 rows of bar
    assert (frame[94:, :20] == BAR_NORMAL).all() and (frame[94:, 20:25] == BAR_BACKGROUND).all()
    assert (frame[94:, 25] == 255).all()  # the threshold tick
    draw_score_bar(frame, 0.9, AlertRule(0.5))
    assert (frame[94:, :25] == BAR_ANOMALOUS).all() and (frame[94:, 45:] == BAR_BACKGROUND).all()


def test_unknown_store_and_model_are_usage_errors(trained, tmp_path, capsys):
    store, dataset, _ = trained
    video = _anomalous_training_video(dataset)
    assert detect.main([str(video.path), "--store", str(tmp_path / "nowhere")]) == 2
    assert detect.main([str(video.path), "--store", str(store), "--model", "ffffffffffff"]) == 2
    assert "matches no finished run" in capsys.readouterr().err


def test_the_trained_student_exports_to_torchscript_and_onnx_with_equal_scores(trained, exported_student, tmp_path):
    store, _, keys = trained
    out = exported_student
    report = json.loads((out / onnx_scorer.EXPORT_JSON).read_text())
    assert report["run"] == keys["student"] and (out / onnx_scorer.BACKBONE_ONNX).is_file()
    assert (out / onnx_scorer.HEAD_ONNX).is_file()
    assert (out / onnx_scorer.TORCHSCRIPT_FILE).is_file()
    assert report["tolerance"]["max_abs_diff_scores"] == onnx_scorer.TOLERANCE
    assert max(report["max_abs_diff"].values()) <= onnx_scorer.TOLERANCE and set(report["max_abs_diff"]) == {
        "onnx", "torchscript"}
    # effnet_lite0's whole-frame view of the 320 x 240 training videos: traced for 298 x 224 inputs
    assert report["input"]["shape"] == ["n", 3, 1, 224, 298] and report["preprocessing"]["view"] == "full"
    longest_ucf_video = 6750
    assert report["T_range"] == [1, exporter.DEFAULT_MAX_SNIPPETS] and exporter.DEFAULT_MAX_SNIPPETS > longest_ucf_video
    # how the run's training features were decoded, for detect --onnx
    assert report["decode"] == {"backend": "auto", "short_side": 224, "filter": "swscale-bilinear"}
    assert export.main([keys["lightning"][:12], "--store", str(store), "--out", str(tmp_path / "l")]) == 2


def test_detect_onnx_gives_the_eager_scores_from_the_export_folder_alone(trained, exported_student, vtest_path,
                                                                         tmp_path, monkeypatch, capsys):
    store, dataset, keys = trained
    unseen = next(e for e in dataset.entries if e.label == 1 and e.split == "test")
    paths = [str(vtest_path), str(unseen.path)]
    assert detect.main([*paths, "--store", str(store), "--model", keys["student"][:12], "--out",
                        str(tmp_path / "eager"), "--quiet"]) == 0
    before = _files(store)
    for name in ("FeatureStore", "load_run", "backbones_for", "Extractor"):  # no store, run or backbone
        monkeypatch.setattr(detection, name, _forbidden(name))
    unused = tmp_path / "no-store"  # a --store beside --onnx is not needed, and not created
    code = detect.main([*paths, "--onnx", str(exported_student), "--store", str(unused), "--out",
                        str(tmp_path / "onnx"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "2 scored, 0 failed" in out and not unused.exists() and _files(store) == before
    for path, n_frames in ((vtest_path, 795), (unseen.path, 160)):
        eager = json.loads((tmp_path / "eager" / f"{path.stem}.json").read_text())
        onnx = json.loads((tmp_path / "onnx" / f"{path.stem}.json").read_text())
        assert eager["engine"] == "torch" and onnx["engine"] == "onnxruntime"
        for same in ("video", "run", "stage", "backbones", "fps", "n_frames", "n_snippets", "frame_time_s"):
            assert onnx[same] == eager[same], same
        assert onnx["n_frames"] == n_frames and onnx["run"] == keys["student"]
        diff = np.abs(np.array(onnx["frame_score"]) - np.array(eager["frame_score"])).max()
        print(f"{path.name}: max |onnx - eager| frame score {diff:.3g}")
        assert diff <= onnx_scorer.TOLERANCE
        assert np.ptp(eager["snippet_scores"]) > onnx_scorer.TOLERANCE  # the scores vary: equality is not trivial
        frames = pd.read_csv(tmp_path / "onnx" / f"{path.stem}.csv")
        assert list(frames.columns) == ["frame", "time_s", "snippet", "score"] and len(frames) == n_frames
        assert (tmp_path / "onnx" / f"{path.stem}.png").stat().st_size > 0


def test_an_export_with_a_lower_limit_fails_longer_videos_by_name_and_scores_the_rest(trained, vtest_path, tmp_path,
                                                                                     monkeypatch, capsys):
    store, _, keys = trained
    folder = tmp_path / "export8"
    assert export.main([keys["student"][:12], "--store", str(store), "--out", str(folder),
                        "--max-snippets", "8"]) == 0, capsys.readouterr().err
    info = json.loads((folder / onnx_scorer.EXPORT_JSON).read_text())
    assert info["T_range"] == [1, 8]
    short = write_video(SyntheticSpec(n_frames=48, seed=11), tmp_path / "short.mp4")  # 3 snippets
    broken = tmp_path / "random.mp4"
    broken.write_bytes(np.random.default_rng(0).bytes(5000))
    opened, pulled = {}, {}
    real_open = detection.open_video

    def counting_open(path, **kwargs):  # records the decode settings and how many snippets were decoded
        video = real_open(path, **kwargs)
        opened[Path(path).name], snippets = kwargs, video.snippets

        def counted(*args):
            for snippet in snippets(*args):
                pulled[Path(path).name] = pulled.get(Path(path).name, 0) + 1
                yield snippet
        video.snippets = counted
        return video

    monkeypatch.setattr(detection, "open_video", counting_open)
    capsys.readouterr()
    overlay = tmp_path / "overlays"
    code = detect.main([str(vtest_path), str(broken), str(short), "--onnx", str(folder), "--out",
                        str(tmp_path / "out"), "--overlay", str(overlay), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1 and "1 scored, 2 failed" in out
    assert f"FAILED {broken}: not a readable video" in err
    assert (f"FAILED {vtest_path}: the video has more than 8 snippets but the exported model scores at most 8 at "
            "once") in err
    assert f"(run dakd detect without --onnx, with --store S --model {keys['student'][:12]}" in err
    assert pulled == {"vtest.avi": 9, "short.mp4": 3}  # vtest's 49 snippets: decoding stopped past the limit
    # as in training (vtest is 4:3 like the training videos: the same 298 x 224 whole-frame input)
    assert opened["vtest.avi"] == {"backend": "auto", "short_side": 224, "needed": (8,), "square": False,
                                   "timeline": "constant", "stall_timeout_s": DECODE_STALL_TIMEOUT_S}
    assert not (tmp_path / "out" / "vtest.json").exists()
    scored = json.loads((tmp_path / "out" / "short.json").read_text())
    assert scored["engine"] == "onnxruntime" and scored["n_frames"] == 48 and scored["n_snippets"] == 3
    with av.open(str(overlay / "short.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 48
    # a camera of another aspect gives another whole-frame size than the graph was traced for: named, with the fix
    wide = write_video(SyntheticSpec(n_frames=32, width=320, height=180, seed=12), tmp_path / "wide.mp4")
    assert detect.main([str(wide), "--onnx", str(folder), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {wide}: its frames become 398x224 inputs but the export was traced for 298x224" in err
    assert "--frame-size WIDTHxHEIGHT" in err


def test_onnx_needs_a_checked_export_and_onnxruntime_and_otherwise_a_store(tmp_path, monkeypatch, capsys):
    video = str(tmp_path / "v.mkv")  # never decoded: the export's checks come first (it exists: the inputs' do)
    encode(tmp_path / "v.mkv", pattern_frames(32, 48, 64, seed=6))
    unchecked = tmp_path / "unchecked"
    unchecked.mkdir()
    for name in (onnx_scorer.BACKBONE_ONNX, onnx_scorer.HEAD_ONNX):  # an export whose check failed has no export.json
        (unchecked / name).write_bytes(b"")
    assert detect.main([video, "--onnx", str(unchecked)]) == 2
    err = capsys.readouterr().err
    assert f"{unchecked} holds no checked export (no {onnx_scorer.EXPORT_JSON}" in err
    assert "dakd export RUN --store S" in err
    (unchecked / onnx_scorer.EXPORT_JSON).write_text("{}")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    assert detect.main([video, "--onnx", str(unchecked)]) == 2
    assert "onnxruntime, which is not installed: pip install -e '.[export]'" in capsys.readouterr().err
    assert detect.main([video]) == 2
    assert "pass --store (the store holding the run) or --onnx" in capsys.readouterr().err


def test_preprocess_snippets_is_the_backbones_preprocessing_without_the_backbone():
    prep = dataclasses.replace(PREPROCESSING, resize_size=20, crop_size=16)  # small frames: fast
    backbone = EffNetLite0Backbone(nn.Identity(), prep, crops=5, frame_indices=(3, 11))  # no weights needed
    gen = torch.Generator().manual_seed(0)
    for size in ((30, 40), (20, 26)):  # resized in torch, and already at the size (decoder-resized)
        snippets = torch.randint(0, 256, (2, 16, *size, 3), dtype=torch.uint8, generator=gen)
        got = preprocess_snippets(snippets, prep, (3, 11), 5)
        assert got.shape == (2 * 5, 3, 2, 16, 16) and torch.equal(got, backbone.preprocess(snippets))


def test_frame_scores_cover_the_tail_and_events_are_in_seconds():
    from pathlib import Path

    d = detection.Detection(Path("v.mp4"), np.array([0.1, 0.9, 0.2], dtype=np.float32), n_frames=53, fps=25.0)
    assert len(d.frame_scores) == 53 and (d.frame_scores[48:] == np.float32(0.2)).all()
    assert (d.frame_scores[16:32] == np.float32(0.9)).all() and d.frame_times[25] == 1.0
    one = AlertRule(0.5, open_after=1, close_after=1)
    assert [(e["start_s"], e["end_s"]) for e in detection.alert_events(d, one)] == [(0.64, 1.28)]  # frames [16, 32)
    assert detection.alert_events(d, AlertRule(0.5)) == []  # one snippet above does not open an event
    unknown_rate = detection.Detection(Path("v"), d.snippet_scores, n_frames=53, fps=0.0)
    assert [(e["start_s"], e["end_s"]) for e in detection.alert_events(unknown_rate, one)] == [(16.0, 32.0)]  # frames
    # an event reaching the last snippet ends with the video (the trailing frames take that snippet's score)
    tail = detection.Detection(Path("v"), np.array([0.1, 0.9, 0.95], np.float32), n_frames=53, fps=25.0)
    assert detection.alert_events(tail, AlertRule(0.5)) == [
        {"start_s": 0.64, "end_s": 2.12, "first_snippet": 1, "last_snippet": 2,
         "peak_score": float(np.float32(0.95))}]
