"""``dakd watch`` (pipeline.watch, pipeline.watch.watcher) end to end on real video files and loopback streams, with
runs trained on synthetic surveillance videos (EfficientNet-Lite0 with its real weights; the low-resolution frames
for the lightning student): snippets are scored in order with the values of offline windowed scoring of the same
frames, several cameras share one process, events follow the hysteresis rule and reach a local webhook, a camera
that never connects is named while the others go on, and SIGINT closes everything and exits 0."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feature_sets import TINY_MODEL
from videos import encode

from data.decode import open_video
from data.synthetic import generate_dataset
from pipeline import api, defaults, runs
from pipeline.cli import calibrate, export, extract, train, watch
from pipeline.detect import onnx_scorer
from pipeline.watch import watcher as engine
from pipeline.watch.cameras import CameraListError, cameras_from
from pipeline.watch.clips import POST_ROLL_S, PRE_ROLL_S
from pipeline.alert_rule import AlertRule
from pipeline.watch.model import from_run
from pipeline.testing.replay import ReplayServer
from pipeline.watch.score_log import KEEP_DAYS
from pipeline.watch.scoring import windowed_scores
from pipeline.watch.sources import STALL_TIMEOUT_S
from pipeline.store import FeatureStore

pytestmark = pytest.mark.slow  # every test here scores through a model trained by the module's fixture (about 60 s)

TRAIN = ["--quiet", "--set", "train.batch_anomalous=4", "--set", "train.batch_normal=4",
         "--set", "train.lr_other=1e-2", "--set", "train.lr_temporal=1e-3", *TINY_MODEL]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with a teacher (EfficientNet-Lite0) and a lightning student (low-resolution frames) trained on 12
    synthetic videos of 160 frames."""
    root = tmp_path_factory.mktemp("watch")
    dataset = generate_dataset(root / "synthetic", n_normal=6, n_anomalous=6, seed=3, n_frames=160)
    store = root / "store"
    for backbone in ("effnet_lite0", "lowres"):
        assert extract.main([str(dataset.root / "videos"), "--store", str(store), "--backbones", backbone,
                             "--quiet"]) == 0
    common = ["--store", str(store), "--dataset", str(dataset.root), "--set", "train.val_fraction=0"]
    assert train.main(["teacher", *common, "--backbones", "effnet_lite0", "--epochs", "300", *TRAIN]) == 0
    runs = FeatureStore(store).runs
    teacher = runs("teacher")[0]["key"]
    assert train.main(["lightning", *common, "--teachers", teacher[:12], "--epochs", "2", "--quiet",
                       "--set", "lightning.channels=4,8", "--set", "adversarial.window=4"]) == 0
    assert train.main(["student", *common, "--teacher", teacher[:12], "--backbones", "effnet_lite0",
                       "--epochs", "3", *TRAIN]) == 0
    return store, dataset, {stage: runs(stage)[0]["key"] for stage in ("teacher", "lightning", "student")}


def _anomalous(dataset, split="test"):
    return [e for e in dataset.entries if e.label == 1 and e.split == split]


def _offline_live_scores(model, path) -> np.ndarray:
    """The frames of ``path`` decoded offline with PyAV at the model's decode size, embedded, and scored causally
    over the model's window (pipeline.watch.scoring.windowed_scores)."""
    plan = model.plans[0]
    with open_video(path, backend="pyav", short_side=plan.short_side, square=plan.square) as video:
        snippets = np.stack(list(video.snippets()))
    features = model.embed([snippets])
    return windowed_scores(model._network, features, model.window, model.device)


def _scores(out: Path, camera: str) -> pd.DataFrame:
    files = sorted((out / engine.SCORES_FOLDER / camera).glob("scores-*.csv"))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / engine.EVENTS_FILE).read_text().splitlines()]


def test_files_are_scored_in_order_with_the_offline_windowed_scores(trained, tmp_path, capsys):
    store, dataset, keys = trained
    a, b = _anomalous(dataset)[:2]
    out = tmp_path / "w"
    # two cameras on one file and one on another: their snippets share forward passes (--batch-size 5)
    code = watch.main([f"one={a.path}", f"two={a.path}", f"three={b.path}", "--store", str(store), "--model",
                       keys["teacher"][:12], "--out", str(out), "--threshold", "0.5", "--batch-size", "5",
                       "--window", "4", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    model = from_run(store, keys["teacher"][:12], window=4)
    for camera, video in (("one", a), ("two", a), ("three", b)):
        scores = _scores(out, camera)
        assert scores["snippet"].tolist() == list(range(10))  # 160 frames: 10 snippets, in order
        np.testing.assert_allclose(scores["score"], _offline_live_scores(model, video.path), atol=1e-5)
        assert np.all(np.diff(scores["start_s"]) > 0) and scores["threshold"].eq(0.5).all()
    summary = json.loads((out / engine.SUMMARY_FILE).read_text())
    assert [c["snippets_scored"] for c in summary["cameras"]] == [10, 10, 10]
    assert all(c["snippets_dropped"] == 0 and c["latency_p99_s"] is not None for c in summary["cameras"])
    assert summary["threshold_source"] == "--threshold" and summary["stopped"] is False
    assert "one: 160 frames, 10 snippets scored" in captured.out


def test_events_follow_the_hysteresis_rule_and_reach_the_webhook(trained, tmp_path, capsys):
    store, dataset, keys = trained
    videos = _anomalous(dataset)
    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "w"
    try:
        code = watch.main([*[f"c{i}={e.path}" for i, e in enumerate(videos)], "--store", str(store), "--model",
                           keys["teacher"][:12], "--out", str(out), "--webhook",
                           f"http://127.0.0.1:{server.server_port}/alerts", "--clips", "--quiet"])
    finally:
        server.shutdown()
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / engine.SUMMARY_FILE).read_text())
    threshold = summary["threshold"]
    assert summary["threshold_source"].startswith("uncalibrated")
    events = _events(out)
    opened = [e for e in events if e["state"] == "open"]
    closed = [e for e in events if e["state"] == "closed"]
    assert opened and len(opened) == len(closed)
    for i, video in enumerate(videos):
        scores = _scores(out, f"c{i}")
        expected = AlertRule(threshold).events(scores["score"].to_numpy())
        mine = [e for e in closed if e["camera"] == f"c{i}"]
        starts, ends = scores["start_s"].to_numpy(), scores["end_s"].to_numpy()
        np.testing.assert_allclose(  # [events, 2] (start, end) seconds; a different count fails on the shape
            np.array([(e["start_s"], e["end_s"]) for e in mine], dtype=float).reshape(-1, 2),
            np.array([(starts[s], ends[t]) for s, t in expected], dtype=float).reshape(-1, 2), rtol=0, atol=1e-5)
        for e in mine:  # the snippets of an event are marked with its id in the score file
            assert set(scores.loc[scores["event"] == e["event_id"], "snippet"]) >= set(
                range(int(np.searchsorted(starts, e["start_s"] - 1e-6)),
                      int(np.searchsorted(starts, e["end_s"] - 1e-6))))
            assert e["closed_by"] in ("scores", "stream_end") and e["run"] == keys["teacher"]
            assert (out / engine.CLIPS_FOLDER / e["camera"] / f"{e['event_id']}.mp4").stat().st_size > 0
    # the webhook got every event line, in order
    assert sorted(json.dumps(r, sort_keys=True) for r in received) == sorted(
        json.dumps(e, sort_keys=True) for e in events)
    assert summary["webhook"]["sent"] == len(events) and summary["webhook"]["dropped"] == 0


def _spliced(dataset, path: Path) -> Path:
    """A normal training video, an anomalous one, another normal one (their first 80 frames each): a stream whose
    anomaly is frames [80, 160). The run scores its training videos' normal ones near 0 and anomalous ones near 1
    (MIL on 12 videos does not localise inside a video, so the anomaly is a whole clip spliced in)."""
    normals = [e for e in dataset.entries if e.label == 0 and e.split == "train"]
    parts = [normals[0].path, _anomalous(dataset, "train")[0].path, normals[1].path]
    frames = []
    for part in parts:
        with open_video(part, backend="pyav") as video:
            frames.append(np.concatenate(list(video.snippets()))[:80])
    return encode(path, np.concatenate(frames), codec="libx264", lossless=False)


def test_events_match_the_synthetic_anomaly(trained, tmp_path):
    """Served live over a loopback TCP stream, a normal stream with an anomalous clip spliced in raises one event,
    over the clip."""
    store, dataset, keys = trained
    video = _spliced(dataset, tmp_path / "spliced.mp4")
    out = tmp_path / "w"
    stop = threading.Event()
    with ReplayServer(video, loop=False) as server:
        # the stream ends after its 240 frames (9.6 s); a live source is then retried, so the watch is stopped
        threading.Timer(240 / 25 + 1.5, stop.set).start()
        summary = api.watch([f"gate={server.url}"], store=store, run=keys["teacher"][:12], out=out, window=4,
                            rule=AlertRule(0.5), stop=stop)
        first = server.clients[0].first  # the frames served before the watch connected are lost, as live
    assert summary.stopped and summary.cameras[0].snippets_scored == (240 - first) // 16
    events = _events(out)
    assert [e["state"] for e in events] == ["open", "closed"] and events[1]["closed_by"] == "scores"
    # on the served video's frames (clock 0 is frame `first`), the event covers frames [80, 160) to a snippet
    start, end = (first + round(events[1][k] * 25) for k in ("start_s", "end_s"))
    assert abs(start - 80) <= 16 and abs(end - 160) <= 16, (first, start, end)


def test_an_export_scores_a_stream_as_its_run_does_without_a_store(trained, tmp_path, capsys):
    store, dataset, keys = trained
    video = _anomalous(dataset)[0]
    folder = tmp_path / "export"
    assert export.main([keys["student"][:12], "--store", str(store), "--out", str(folder), "--quiet"]) == 0
    assert watch.main([f"gate={video.path}", "--onnx", str(folder), "--out", str(tmp_path / "onnx"), "--window",
                       "8", "--quiet"]) == 0, capsys.readouterr().err
    assert watch.main([f"gate={video.path}", "--store", str(store), "--model", keys["student"][:12], "--out",
                       str(tmp_path / "torch"), "--window", "8", "--quiet"]) == 0
    onnx, eager = _scores(tmp_path / "onnx", "gate"), _scores(tmp_path / "torch", "gate")
    assert onnx["snippet"].tolist() == list(range(10))
    np.testing.assert_allclose(onnx["score"], eager["score"], atol=onnx_scorer.TOLERANCE)
    summary = json.loads((tmp_path / "onnx" / engine.SUMMARY_FILE).read_text())
    assert summary["run"] == keys["student"] and summary["window"] == 8


def test_a_stream_that_drops_is_reconnected_and_its_open_event_closed(trained, tmp_path):
    """The loopback server dies mid-stream and comes back 1.5 s later: the watch reconnects, the open event is
    closed as stream_lost, the window starts again, and scoring goes on; the other camera is not disturbed."""
    store, dataset, keys = trained
    anomalous = _anomalous(dataset, "train")[0].path  # the lightning run scores it at 1 throughout
    out = tmp_path / "w"
    stop = threading.Event()
    with ReplayServer(anomalous, loop=True) as server:
        def outage():
            time.sleep(3.0)
            server.stop()
            time.sleep(1.5)
            server.start()
            time.sleep(3.0)
            stop.set()

        threading.Thread(target=outage, daemon=True).start()
        summary = api.watch([f"gate={server.url}", f"door={anomalous}"], store=store, run=keys["teacher"][:12],
                            out=out, window=4, rule=AlertRule(0.5), realtime=True, stop=stop, stall_timeout_s=2.0)
    gate, door = summary.cameras
    assert gate.reconnects == 1 and gate.connects == 2 and door.reconnects == 0
    assert gate.snippets_scored >= 5 and door.snippets_scored == 10
    closed = [e for e in _events(out) if e["state"] == "closed" and e["camera"] == "gate"]
    assert [e["closed_by"] for e in closed][:1] == ["stream_lost"]
    after = [e for e in _events(out) if e["state"] == "open" and e["camera"] == "gate"][1:]
    assert after and after[0]["start_s"] > closed[0]["end_s"] + 1.0  # a new event after the outage


def test_a_camera_that_never_connects_is_named_and_the_others_go_on(trained, tmp_path, capsys):
    store, dataset, keys = trained
    video = _anomalous(dataset)[0]
    out = tmp_path / "w"
    code = watch.main([f"door={video.path}", "gate=tcp://127.0.0.1:9", "--store", str(store), "--model",
                       keys["lightning"][:12], "--out", str(out), "--give-up-after", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == defaults.EXIT_SOME_FAILED
    assert "gate" in captured.out and "NEVER CONNECTED to tcp://127.0.0.1:9" in captured.out
    summary = json.loads((out / engine.SUMMARY_FILE).read_text())
    door, gate = summary["cameras"]
    assert door["snippets_scored"] == 10 and gate["never_connected"] and gate["failed_connects"] == 2
    assert summary["window"] == 1  # the lightning student needs no window


def test_sigint_closes_events_flushes_files_and_exits_0(trained, tmp_path):
    store, dataset, keys = trained
    video = _anomalous(dataset)[0]
    out = tmp_path / "w"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.watch", f"gate={video.path}", "--realtime",
                             "--store", str(store), "--model", keys["lightning"][:12], "--out", str(out),
                             "--threshold", "0", "--open-after", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _events_or_empty(out):
        time.sleep(0.1)  # threshold 0: the first snippet opens an event, 0.64 s into the video
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGINT received" in stderr and "stopped" in stdout
    events = _events(out)
    assert [e["state"] for e in events] == ["open", "closed"] and events[1]["closed_by"] == "shutdown"
    summary = json.loads((out / engine.SUMMARY_FILE).read_text())
    assert summary["stopped"] is True and 0 < summary["cameras"][0]["snippets_scored"] < 10
    assert len(_scores(out, "gate")) == summary["cameras"][0]["snippets_scored"]  # every score flushed


def _events_or_empty(out: Path) -> list:
    try:
        return _events(out)
    except (OSError, ValueError):
        return []


def test_camera_lists_and_names():
    cams = cameras_from(["rtsp://h/s?a=b", "door=/dev/video0"], format="v4l2")
    assert [(c.name, c.source, c.format) for c in cams] == [("cam1", "rtsp://h/s?a=b", "v4l2"),
                                                           ("door", "/dev/video0", "v4l2")]
    with pytest.raises(CameraListError, match="given twice"):
        cameras_from(["a=x.mp4", "a=y.mp4"])
    with pytest.raises(CameraListError, match="no camera"):
        cameras_from([])


def test_camera_yaml(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text("- {name: gate, source: 'rtsp://h/1', options: {rtsp_transport: tcp}}\n"
                    "- {source: rec.mp4, realtime: true}\n")
    gate, rec = cameras_from(["x.mp4"], path)[:2]
    assert gate.options == {"rtsp_transport": "tcp"} and (rec.name, rec.realtime) == ("cam2", True)
    path.write_text("- {name: gate, sauce: x}\n")
    with pytest.raises(CameraListError, match="camera 1"):
        cameras_from([], path)


def test_the_cli_defaults_are_the_engines():
    assert (defaults.WATCH_PRE_ROLL_S, defaults.WATCH_POST_ROLL_S) == (PRE_ROLL_S, POST_ROLL_S)
    assert (defaults.WATCH_KEEP_DAYS, defaults.WATCH_STALL_TIMEOUT_S) == (KEEP_DAYS, STALL_TIMEOUT_S)
    assert (defaults.WATCH_BATCH_SIZE, defaults.WATCH_QUEUE_SIZE) == (engine.BATCH_SIZE, engine.QUEUE_SIZE)


def test_watch_uses_the_calibrated_live_threshold_unless_one_is_given(trained, tmp_path, caplog):
    store, dataset, keys = trained
    normal = [str(e.path) for e in dataset.entries if e.label == 0]
    assert calibrate.main([keys["student"][:12], "--store", str(store), "--normal", *normal, "--window", "8",
                           "--quiet"]) == 0
    folder = next((store / "runs" / "student").glob(f"{keys['student']}*"))
    live = json.loads((folder / runs.CALIBRATION_FILE).read_text())["thresholds"]["live"]
    video = _anomalous(dataset)[0].path
    assert watch.main([f"gate={video}", "--store", str(store), "--model", keys["student"][:12], "--out",
                       str(tmp_path / "cal"), "--window", "8", "--quiet"]) == 0
    summary = json.loads((tmp_path / "cal" / engine.SUMMARY_FILE).read_text())
    assert summary["threshold"] == pytest.approx(live) and summary["threshold_source"].startswith("calibration")
    assert _scores(tmp_path / "cal", "gate")["threshold"].to_numpy() == pytest.approx(live, abs=1e-6)
    with caplog.at_level("WARNING"):
        assert watch.main([f"gate={video}", "--store", str(store), "--model", keys["student"][:12], "--out",
                           str(tmp_path / "w4"), "--window", "4", "--quiet"]) == 0
    assert any("calibrated with a window of 8" in r.message for r in caplog.records)
    assert watch.main([f"gate={video}", "--store", str(store), "--model", keys["student"][:12], "--out",
                       str(tmp_path / "given"), "--threshold", "0.25", "--quiet"]) == 0
    given = json.loads((tmp_path / "given" / engine.SUMMARY_FILE).read_text())
    assert (given["threshold"], given["threshold_source"]) == (0.25, "--threshold")


def test_a_camera_whose_frames_the_model_refuses_fails_alone(trained, tmp_path, monkeypatch):
    """Fault injection: the model refuses frames of one size (as an export traced for another frame size does);
    that camera's snippets fail and it is named, the other camera's batches are scored in full."""
    from videos import pattern_frames

    from pipeline.watch import model as live_model

    store, dataset, keys = trained
    good = _anomalous(dataset)[0].path
    odd = encode(tmp_path / "odd.mp4", pattern_frames(64, 96, 160), codec="libx264", lossless=False)
    embed = live_model.LiveModel.embed
    size = None

    def refusing(self, snippets):
        if any(s.shape[2:4] != size for s in snippets):
            raise ValueError(f"traced for {size}, got {[s.shape[2:4] for s in snippets]}")
        return embed(self, snippets)

    with open_video(good, backend="pyav", short_side=from_run(store, keys["teacher"][:12]).plans[0].short_side) as v:
        size = next(iter(v.snippets())).shape[1:3]
    monkeypatch.setattr(live_model.LiveModel, "embed", refusing)
    out = tmp_path / "w"
    summary = api.watch([f"good={good}", f"odd={odd}"], store=store, run=keys["teacher"][:12], out=out,
                        rule=AlertRule(0.5))
    good_cam, odd_cam = summary.cameras
    assert good_cam.snippets_scored == 10 and good_cam.snippets_failed == 0
    assert odd_cam.snippets_scored == 0 and odd_cam.snippets_failed == 4 and "traced for" in odd_cam.last_error
    assert summary.failed_cameras == ["odd"]
