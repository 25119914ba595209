"""Live outputs of issue 14: events from scores (hysteresis), the JSON-lines event log, the webhook sender with
retries and a bounded queue, event clips with pre/post roll, and the rolling per-camera score CSV."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np
import pytest

from pipeline.watch.clips import ClipRecorder
from pipeline.watch.events import EventLog, EventTracker
from pipeline.alert_rule import AlertRule
from pipeline.watch.score_log import HEADER, ScoreLog
from pipeline.watch.webhook import WebhookSender
from tests.videos import pattern_frames

SNIPPET_S = 16 / 25  # a 16-frame snippet at 25 fps
WAIT_S = 60.0  # generous: a loaded 2-core machine


def _feed(tracker, scores):
    opened, closed = [], []
    for i, score in enumerate(scores):
        o, c = tracker.update(score, i * SNIPPET_S, (i + 1) * SNIPPET_S)
        opened += [o] if o else []
        closed += [c] if c else []
    return opened, closed


def test_event_tracker_one_event_with_clocks_peak_mean():
    config = AlertRule(threshold=0.5, open_after=2, close_after=3)
    scores = [0.1, 0.6, 0.2, 0.1,  # a lone spike: no event
              0.7, 0.9, 0.4, 0.8, 0.6,  # snippets 4..8 (6 dips below, not long enough to close)
              0.1, 0.2, 0.3, 0.1]
    tracker = EventTracker("cam", "run-1", config, utc_origin=1_700_000_000.0)
    opened, closed = _feed(tracker, scores)
    assert len(opened) == 1 and len(closed) == 1 and opened[0] is closed[0]
    event = closed[0]
    assert event.event_id == "cam-000001" and event.closed_by == "scores" and event.run == "run-1"
    assert event.start_s == pytest.approx(4 * SNIPPET_S) and event.end_s == pytest.approx(9 * SNIPPET_S)
    assert event.peak_score == pytest.approx(0.9)
    assert event.mean_score == pytest.approx(np.mean([0.7, 0.9, 0.4, 0.8, 0.6]))
    assert event.n_snippets == 5 and event.threshold == 0.5
    assert event.start_utc == datetime.fromtimestamp(1_700_000_000.0 + 4 * SNIPPET_S, tz=timezone.utc) \
        .isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert event.end_utc.endswith("Z")


def test_event_tracker_open_event_closed_by_shutdown():
    tracker = EventTracker("cam", None, AlertRule(threshold=0.5, open_after=2, close_after=3), 0.0)
    opened, closed = _feed(tracker, [0.1, 0.8, 0.9, 0.95, 0.2])
    assert len(opened) == 1 and not closed
    assert opened[0].end_s is None and opened[0].closed_by is None
    event = tracker.close("shutdown")
    assert event is opened[0] and event.closed_by == "shutdown"
    assert event.start_s == pytest.approx(1 * SNIPPET_S) and event.end_s == pytest.approx(4 * SNIPPET_S)
    assert event.peak_score == pytest.approx(0.95) and event.n_snippets == 3
    assert tracker.close("shutdown") is None
    with pytest.raises(ValueError, match="unknown close reason"):
        tracker.close("bored")


def test_event_log_json_lines_readable_while_open(tmp_path):
    tracker = EventTracker("cam", "r", AlertRule(threshold=0.5, open_after=1, close_after=1), 0.0)
    log = EventLog(tmp_path / "events" / "events.jsonl")
    opened, _ = tracker.update(0.9, 0.0, 0.64)
    log.write(opened, "open")
    _, closed = tracker.update(0.1, 0.64, 1.28)
    log.write(closed, "closed")
    lines = (tmp_path / "events" / "events.jsonl").read_text().splitlines()  # read while the log is open
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    fields = {"camera", "run", "event_id", "start_s", "end_s", "start_utc", "end_utc", "peak_score",
              "mean_score", "n_snippets", "threshold", "closed_by", "state"}
    assert all(fields <= set(r) for r in records)
    assert [r["state"] for r in records] == ["open", "closed"] and records[1]["closed_by"] == "scores"
    log.close()


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.attempts += 1
            fail = server.attempts <= server.fail_first
            if not fail:
                server.received.append((self.headers["Content-Type"], body))
        self.send_response(500 if fail else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    servers = []

    def start(fail_first=0):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
        server.lock, server.attempts, server.fail_first, server.received = threading.Lock(), 0, fail_first, []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/hook"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _wait(predicate):
    deadline = time.monotonic() + WAIT_S
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_webhook_delivers_events(receiver):
    server, url = receiver()
    sender = WebhookSender(url, backoff_s=0.05)
    for n in range(3):
        sender.send({"event_id": f"cam-{n}"})
    assert _wait(lambda: sender.sent == 3)
    sender.close()
    assert [body["event_id"] for _, body in server.received] == ["cam-0", "cam-1", "cam-2"]
    assert all(ctype == "application/json" for ctype, _ in server.received)
    assert sender.failed == 0 and sender.dropped == 0


def test_webhook_retries_after_5xx(receiver):
    server, url = receiver(fail_first=2)
    sender = WebhookSender(url, retries=3, backoff_s=0.05)
    sender.send({"event_id": "cam-000001"})
    assert _wait(lambda: sender.sent == 1)
    sender.close()
    assert server.attempts == 3 and [b for _, b in server.received] == [{"event_id": "cam-000001"}]
    assert sender.failed == 0


def test_webhook_gives_up_after_retries(receiver):
    server, url = receiver(fail_first=100)
    sender = WebhookSender(url, retries=2, backoff_s=0.01)
    sender.send({"n": 1})
    assert _wait(lambda: sender.failed == 1)
    sender.close()
    assert server.attempts == 3 and sender.sent == 0


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_webhook_dead_url_drops_oldest_never_blocks():
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    sender = WebhookSender(url, queue_size=2, retries=1000, backoff_s=0.5, timeout_s=1.0)
    sender.send({"n": 0})
    assert _wait(lambda: sender.pending() == 1 and len(sender._queue) == 0)  # n=0 is being retried
    for n in range(1, 6):
        sender.send({"n": n})  # returns at once although nothing is ever delivered
    assert sender.dropped == 3  # 1, 2, 3 pushed out by the newer ones
    assert [p["n"] for p in sender._queue] == [4, 5]
    sender.close(timeout_s=0.5)
    assert sender.sent == 0 and sender.dropped == 5 and not sender._thread.is_alive()


def test_clip_recorder_pre_event_post_roll(tmp_path):
    fps = 25
    frames = pattern_frames(100, 33, 47)  # odd size: cropped to 32 x 46
    recorder = ClipRecorder(tmp_path, "cam", fps, pre_roll_s=0.4, post_roll_s=0.6)
    start_frame, stop_frame = 40, 60
    for i, image in enumerate(frames):
        clock = i / fps
        if i == start_frame:
            path = recorder.start("cam-000001", clock)
        recorder.push(image, clock)
        if i == stop_frame:
            recorder.stop(clock)
    recorder.close()
    assert path == tmp_path / "cam" / "cam-000001.mp4" and path.exists()
    assert recorder.clips == [path]
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    expected = 0.4 * fps + (stop_frame - start_frame + 1) + 0.6 * fps  # 10 + 21 + 15
    assert abs(len(decoded) - expected) <= 1
    assert decoded[0].shape == (32, 46, 3)
    # the first frame of the clip is the ring buffer's oldest (the pre-roll), not the event's first
    first = frames[start_frame - 10][:32, :46].astype(int)
    assert np.abs(decoded[0].astype(int)[..., :2] - first[..., :2]).mean() < 40


def test_clip_recorder_idle_memory_is_a_ring(tmp_path):
    recorder = ClipRecorder(tmp_path, "cam", 25, pre_roll_s=0.2)
    for i, image in enumerate(pattern_frames(50, 16, 16)):
        recorder.push(image, i / 25)
    assert len(recorder._ring) == 5 and not (tmp_path / "cam").exists()
    recorder.close()


def test_score_log_rows_day_rollover_and_pruning(tmp_path):
    day1 = datetime(2026, 3, 1, 23, 59, 59, tzinfo=timezone.utc).timestamp()
    day2 = datetime(2026, 3, 2, 0, 0, 1, tzinfo=timezone.utc).timestamp()
    old = tmp_path / "cam" / "scores-2026-02-01.csv"
    old.parent.mkdir(parents=True)
    old.write_text(",".join(HEADER) + "\n")
    log = ScoreLog(tmp_path, "cam", AlertRule(0.5), keep_days=7)
    log.write(0, 0.0, 0.64, day1, 0.2, None)
    log.write(1, 0.64, 1.28, day1 + 0.64, 0.7, "cam-000001")
    first = tmp_path / "cam" / "scores-2026-03-01.csv"
    rows = first.read_text().splitlines()  # flushed per row: readable while open
    assert rows[0] == ",".join(HEADER) and len(rows) == 3
    assert rows[2].split(",")[-2:] == ["1", "cam-000001"] and rows[1].split(",")[-2:] == ["0", ""]
    assert not old.exists()  # older than keep_days
    log.write(2, 1.28, 1.92, day2, 0.1, None)
    second = tmp_path / "cam" / "scores-2026-03-02.csv"
    assert second.exists() and first.exists()  # yesterday is within keep_days
    assert second.read_text().splitlines()[1].split(",")[3] == "2026-03-02T00:00:01.000Z"
    log.close()
    later = ScoreLog(tmp_path, "cam", AlertRule(0.5), keep_days=1)
    later.write(3, 2.0, 2.64, day2 + 3600, 0.1, None)  # same day, appends without a second header
    later.close()
    lines = second.read_text().splitlines()
    assert len(lines) == 3 and lines.count(",".join(HEADER)) == 1
    assert not first.exists()  # keep_days=1 keeps only today's file
