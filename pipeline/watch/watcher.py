"""The watch engine: several cameras scored as their frames arrive, alerts raised as events.

Data flow::

    camera thread (one per camera)       scoring loop (the caller's thread)
    StreamReader.frames() ─ 16 frames ─▶ SnippetQueue ─▶ batch of snippets (any cameras) ─▶ LiveModel.embed
      │ each frame: ClipRecorder ring     (bounded: a       ─▶ per camera: WindowState ─▶ LiveModel.score
      │ a gap (reconnect): marker          slow model drops   ─▶ EventTracker ─▶ EventLog, webhook, clip
                                           the oldest)        ─▶ ScoreLog (CSV), latency

A camera thread never waits for the model: when scoring falls behind, the queue drops its oldest snippet (counted
per camera as ``dropped``), so latency stays bounded and the stream stays live. Every buffer is bounded (the
queue, the windows, the clips' pre-roll rings, the latency samples), so memory stays flat however long it runs.
A camera's failure (never connects, drops, corrupt packets) stays in its thread: the others go on.

Stopping (``stop`` set, e.g. by SIGINT / SIGTERM in ``pipeline.watch``): the camera threads end, the snippets
already queued are still scored, open events are closed (``closed_by: "shutdown"``), clips and files are
flushed and closed, the webhook queue is drained, and ``summary.json`` is written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data.decode import SNIPPET_FRAMES
from pipeline.alert_rule import AlertRule
from pipeline.defaults import WATCH_BATCH_SIZE, WATCH_QUEUE_SIZE
from pipeline.detect.maps import write_snapshot_jpeg
from pipeline.watch.clips import POST_ROLL_S, PRE_ROLL_S, ClipRecorder
from pipeline.watch.events import STATE_CLOSED, STATE_OPEN, EventLog, EventTracker
from pipeline.watch.model import LiveModel
from pipeline.watch.score_log import KEEP_DAYS, ScoreLog
from pipeline.watch.scoring import WindowState
from pipeline.watch.sources import Camera, LiveFrame, ReconnectPolicy, StreamReader
from pipeline.watch.webhook import WebhookSender

log = logging.getLogger("pipeline.watch.watcher")

BATCH_SIZE = WATCH_BATCH_SIZE  # snippets (of any cameras) embedded in one forward pass
QUEUE_SIZE = WATCH_QUEUE_SIZE  # snippets waiting to be scored, all cameras; beyond it the oldest is dropped
LATENCY_SAMPLES = 100_000  # latencies kept per camera for the percentiles (about 18 h of one 25 fps stream)
STATUS_EVERY_S = 60.0  # a log line per camera this often
POLL_S = 0.05  # how long the scoring loop waits for a snippet before it checks the cameras again
JOIN_TIMEOUT_S = 15.0  # wait for a camera thread to end at shutdown (a blocked read ends at the stall timeout)
FALLBACK_FPS = 25.0  # a camera's frame rate when its first snippet's timestamps give none (clips only)
EVENTS_FILE = "events.jsonl"
SCORES_FOLDER = "scores"
CLIPS_FOLDER = "clips"  # also the snapshots of a spatial model's events: clips/<camera>/<event_id>.jpg
SNAPSHOT_SUFFIX = ".jpg"
SNAPSHOT_FRAME = SNIPPET_FRAMES // 2  # the frame of the peak snippet an event's snapshot shows (its middle one)
SUMMARY_FILE = "summary.json"


@dataclass
class WatchConfig:
    """Everything a watch needs besides its cameras and model. ``rule``: the alert rule, its threshold the live one
    (calibrated or given); ``webhook`` None: no POSTs; ``clips`` False: no mp4 clips."""

    out: Path
    rule: AlertRule
    threshold_source: str = ""
    webhook: str | None = None
    clips: bool = False
    pre_roll_s: float = PRE_ROLL_S
    post_roll_s: float = POST_ROLL_S
    batch_size: int = BATCH_SIZE
    queue_size: int = QUEUE_SIZE
    keep_days: int = KEEP_DAYS
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    status_every_s: float = STATUS_EVERY_S


@dataclass
class Snippet:
    """16 frames of one camera: uint8 ``[16, H_p, W_p, 3]`` per decode plan, their clock interval, the arrival
    (``time.monotonic()``) of the last frame, and the snippet's index on its camera."""

    camera: int
    index: int
    images: list[np.ndarray]
    start_s: float
    end_s: float
    arrival: float


@dataclass
class Marker:
    """A camera's stream was interrupted (``"gap"``: reconnected or timestamps jumped) or ended (``"end"``)."""

    camera: int
    kind: str


class SnippetQueue:
    """A bounded FIFO shared by the camera threads and the scoring loop. ``put`` never blocks: when full it drops
    the oldest *snippet* (markers are never dropped, so an interruption is always seen) and returns it."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"the snippet queue needs room for at least 1 snippet, got {size}")
        self.size = size
        self._items: deque = deque()
        self._snippets = 0
        self._cond = threading.Condition()

    def put(self, item: Snippet | Marker) -> Snippet | None:
        dropped = None
        with self._cond:
            if isinstance(item, Snippet):
                if self._snippets >= self.size:
                    for i, old in enumerate(self._items):
                        if isinstance(old, Snippet):
                            dropped = old
                            del self._items[i]
                            self._snippets -= 1
                            break
                self._snippets += 1
            self._items.append(item)
            self._cond.notify()
        return dropped

    def take(self, n: int, timeout_s: float) -> list:
        """Up to ``n`` items in order, waiting at most ``timeout_s`` for the first; markers end a batch, so a batch
        is snippets then at most one marker."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout_s)
            out = []
            while self._items and len(out) < n:
                item = self._items.popleft()
                out.append(item)
                if isinstance(item, Marker):
                    break
                self._snippets -= 1
            return out

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass
class CameraSummary:
    """One camera's counters at exit (``summary.json``)."""

    name: str
    source: str
    frames: int = 0
    snippets_scored: int = 0
    snippets_dropped: int = 0
    snippets_failed: int = 0  # could not be scored (the model refused this camera's frames)
    connects: int = 0
    reconnects: int = 0
    failed_connects: int = 0
    corrupt_packets: int = 0
    gaps: int = 0
    events: int = 0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    last_error: str | None = None
    never_connected: bool = False
    stalled: bool = False  # a file source that made no progress for the stall timeout (its camera stopped)


class CameraWorker:
    """One camera: its reader thread turning frames into snippets, and the state the scoring loop keeps for it."""

    def __init__(self, index: int, camera: Camera, model: LiveModel, config: WatchConfig, queue: SnippetQueue,
                 stop: threading.Event):
        self.index, self.camera, self.config, self.queue = index, camera, config, queue
        plans = model.plans
        self.reader = StreamReader(camera, sizes=[(p.short_side, p.square) for p in plans],
                                   clip_short_side=None, policy=config.policy, stop=stop)
        self.window = WindowState(len(model.backbones), model.window)
        self.tracker: EventTracker | None = None  # made at the first frame, which fixes the UTC origin
        self.run = model.run
        self.scores = ScoreLog(config.out / SCORES_FOLDER, camera.name, config.rule, keep_days=config.keep_days)
        self.clips: ClipRecorder | None = None
        self.utc_origin: float | None = None
        self.latencies: deque = deque(maxlen=LATENCY_SAMPLES)
        self.held: list[tuple] = []  # score rows waiting for the rule to decide their event (< open_after)
        self.snippets_scored = self.snippets_dropped = self.snippets_failed = self.events = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, name=f"camera {camera.name}", daemon=True)

    # -- the camera thread -----------------------------------------------------------------------------------
    def _read(self) -> None:
        frames: list[LiveFrame] = []
        index = 0
        try:
            for frame in self.reader.frames():
                if self.utc_origin is None:
                    self.utc_origin = time.time() - frame.clock_s
                    self.tracker = EventTracker(self.camera.name, self.run, self.config.rule, self.utc_origin)
                if frame.gap_before:
                    frames = []  # a snippet spans no gap: the partial one is let go
                    self.queue.put(Marker(self.index, "gap"))
                if self.clips is not None:
                    self.clips.push(frame.images[0], frame.clock_s)
                frames.append(frame)
                if len(frames) == SNIPPET_FRAMES:
                    if self.config.clips and self.clips is None:
                        self._start_clips(frames)
                    dropped = self.queue.put(self._snippet(frames, index))
                    if dropped is not None:
                        self._dropped(dropped)
                    index += 1
                    frames = []
        except Exception as exc:  # a camera's own failure ends this camera only
            self.reader.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error("%s: %s", self.camera.name, self.reader.stats.last_error)
        finally:
            self.queue.put(Marker(self.index, "end"))
            self.done.set()

    def _snippet(self, frames: list[LiveFrame], index: int) -> Snippet:
        step = (frames[-1].clock_s - frames[0].clock_s) / (len(frames) - 1)
        images = [np.stack([f.images[p] for f in frames]) for p in range(len(frames[0].images))]
        return Snippet(self.index, index, images, frames[0].clock_s, frames[-1].clock_s + step, frames[-1].arrival)

    def _start_clips(self, frames: list[LiveFrame]) -> None:
        span = frames[-1].clock_s - frames[0].clock_s
        fps = (len(frames) - 1) / span if span > 0 else FALLBACK_FPS
        self.clips = ClipRecorder(self.config.out / CLIPS_FOLDER, self.camera.name, fps,
                                  pre_roll_s=self.config.pre_roll_s, post_roll_s=self.config.post_roll_s)
        for f in frames:
            self.clips.push(f.images[0], f.clock_s)

    def _dropped(self, snippet: Snippet) -> None:
        self.snippets_dropped += 1  # the camera thread's own counter: only it puts this camera's snippets
        if self.snippets_dropped == 1 or self.snippets_dropped % 100 == 0:
            log.warning("%s: scoring is behind, %d snippet(s) dropped so far (queue of %d full)", self.camera.name,
                        self.snippets_dropped, self.queue.size)

    # -- the scoring loop's side -----------------------------------------------------------------------------
    def summary(self) -> CameraSummary:
        s = self.reader.stats
        lat = np.asarray(self.latencies, dtype=np.float64)
        pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: None)
        return CameraSummary(self.camera.name, self.camera.source, s.frames, self.snippets_scored,
                             self.snippets_dropped, self.snippets_failed, s.connects, s.reconnects, s.failed_connects,
                             s.corrupt_packets, s.gaps, self.events, pct(50), pct(95), pct(99), s.last_error,
                             s.connects == 0, s.stalled)


@dataclass
class WatchSummary:
    """What a watch did (``summary.json``)."""

    model: str
    run: str | None
    threshold: float
    threshold_source: str
    window: int
    seconds: float
    stopped: bool  # ended by stop (a signal) rather than by its sources ending
    cameras: list[CameraSummary]
    webhook: dict | None = None
    rss_mb: dict = field(default_factory=dict)  # start / end / max resident memory, MiB
    cpu_s: float = 0.0  # process CPU time over the watch
    scoring_busy_s: float = 0.0  # wall time the scoring loop spent embedding and scoring (vs waiting for snippets)

    @property
    def failed_cameras(self) -> list[str]:
        """Cameras that never connected, whose file stalled or whose snippets the model could not score."""
        return [c.name for c in self.cameras if c.never_connected or c.stalled or c.snippets_failed]


def resident_mb() -> float:
    """This process's resident memory in MiB (Linux ``/proc``; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class Watch:
    """Cameras, a model and the outputs. :meth:`run` blocks until every source ended or ``stop`` is set."""

    def __init__(self, cameras: Sequence[Camera], model: LiveModel, config: WatchConfig,
                 stop: threading.Event | None = None):
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must differ: {', '.join(names)}")
        if config.batch_size < 1:
            raise ValueError(f"the batch size must be at least 1 snippet, got {config.batch_size}")
        self.model, self.config = model, config
        self.stop = stop or threading.Event()
        config.out.mkdir(parents=True, exist_ok=True)
        self.queue = SnippetQueue(config.queue_size)
        self.workers = [CameraWorker(i, c, model, config, self.queue, self.stop) for i, c in enumerate(cameras)]
        self.events = EventLog(config.out / EVENTS_FILE)
        self.webhook = WebhookSender(config.webhook) if config.webhook else None
        self.rss = {"start": resident_mb()}
        self.rss["max"] = self.rss["start"]
        self.busy_s = 0.0

    def run(self) -> WatchSummary:
        start, cpu_start = time.monotonic(), time.process_time()
        log.info("watch: %d camera(s) with %s, window %d, threshold %.4g (%s); out %s", len(self.workers),
                 self.model.label, self.model.window, self.config.rule.threshold, self.config.threshold_source,
                 self.config.out)
        for w in self.workers:
            w.thread.start()
        next_status = time.monotonic() + self.config.status_every_s
        try:
            while True:
                items = self.queue.take(self.config.batch_size, POLL_S)
                if items:
                    busy = time.monotonic()
                    self._process(items)
                    self.busy_s += time.monotonic() - busy
                elif all(w.done.is_set() for w in self.workers) and not len(self.queue):
                    break
                if time.monotonic() >= next_status:
                    self._status()
                    next_status = time.monotonic() + self.config.status_every_s
        finally:
            stopped = self.stop.is_set()
            self.stop.set()
            deadline = time.monotonic() + JOIN_TIMEOUT_S
            for w in self.workers:
                w.thread.join(max(0.0, deadline - time.monotonic()))
            for items in iter(lambda: self.queue.take(self.config.batch_size, 0.0), []):
                self._process(items)  # what arrived while stopping is still scored
            summary = self._close(stopped, time.monotonic() - start, time.process_time() - cpu_start)
        return summary

    # -- scoring ---------------------------------------------------------------------------------------------
    def _process(self, items: list) -> None:
        snippets = [i for i in items if isinstance(i, Snippet)]
        if snippets:
            self._score(snippets)
        for marker in (i for i in items if isinstance(i, Marker)):
            self._interrupted(self.workers[marker.camera], marker.kind)
        self.rss["max"] = max(self.rss["max"], resident_mb())

    def _score(self, snippets: list[Snippet]) -> None:
        """One batch; when it fails (e.g. an export traced for another frame size than one camera's), each
        camera's snippets are scored alone, so only the camera at fault loses its snippets (logged by name)."""
        try:
            self._score_batch(snippets)
        except Exception:
            for camera in sorted({s.camera for s in snippets}):
                mine = [s for s in snippets if s.camera == camera]
                try:
                    self._score_batch(mine)
                except Exception as exc:
                    w = self.workers[camera]
                    w.snippets_failed += len(mine)
                    w.reader.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("%s: %d snippet(s) could not be scored (%s)", w.camera.name, len(mine),
                              w.reader.stats.last_error)

    def _score_batch(self, snippets: list[Snippet]) -> None:
        features = self.model.embed([np.stack([s.images[p] for s in snippets])
                                     for p in range(len(self.model.plans))])
        windows = [self.workers[s.camera].window.push([f[i] for f in features]) for i, s in enumerate(snippets)]
        scores, maps = self.model.score_maps(windows)  # maps None: a model without maps
        now = time.monotonic()
        for i, (snippet, score) in enumerate(zip(snippets, scores)):
            self._record(self.workers[snippet.camera], snippet, float(score), now,
                         None if maps is None else maps[i])

    def _record(self, w: CameraWorker, s: Snippet, score: float, now: float,
                cell_map: np.ndarray | None = None) -> None:
        w.latencies.append(now - s.arrival)
        w.snippets_scored += 1
        # with a map, the frame an event's snapshot would show (a copy: the snippet's 16 frames are let go)
        frame = s.images[0][SNAPSHOT_FRAME].copy() if cell_map is not None else None
        opened, closed = w.tracker.update(score, s.start_s, s.end_s, cell_map, frame)
        if opened is not None:
            self._emit(w, opened, STATE_OPEN)
        event = w.tracker.open_event or closed  # the event this snippet is part of (or closes), if any
        w.held.append((s.index, s.start_s, s.end_s, w.utc_origin + s.start_s, score))
        if event is not None or not self.config.rule.above(score):
            # an above snippet may be the first of those that open an event: its row waits for the rule to decide
            self._flush_rows(w, event.event_id if event is not None else None)
        if closed is not None:
            self._emit(w, closed, STATE_CLOSED)

    def _flush_rows(self, w: CameraWorker, event_id: str | None) -> None:
        for row in w.held:
            w.scores.write(*row, event_id)
        w.held = []

    def _snapshot(self, w: CameraWorker, event) -> None:
        """A spatial model's event: its snapshot (the peak snippet's frame with its heatmap and the event's box)
        written to ``clips/<camera>/<event_id>.jpg`` (again at close, with the final peak and box), its path set on
        the event. A failed write is logged and leaves ``snapshot`` None: the alert goes out regardless."""
        view = w.tracker.peak_view
        if event.box is None or view is None or view.frame is None:
            return
        path = self.config.out / CLIPS_FOLDER / w.camera.name / f"{event.event_id}{SNAPSHOT_SUFFIX}"
        try:
            write_snapshot_jpeg(path, view.frame, view.cell_map, tuple(event.box))
            event.snapshot = str(path)
        except (OSError, ValueError) as exc:
            log.error("%s: snapshot %s not written (%s)", w.camera.name, path, exc)

    def _emit(self, w: CameraWorker, event, state: str) -> None:
        self._snapshot(w, event)
        self.events.write(event, state)
        if self.webhook is not None:
            self.webhook.send({"state": state, **event.to_json()})
        if state == STATE_OPEN:
            w.events += 1
            log.warning("%s: event %s opened at %.1f s (peak %.3f)", w.camera.name, event.event_id, event.start_s,
                        event.peak_score)
            if w.clips is not None:
                w.clips.start(event.event_id, event.start_s)
        else:
            log.warning("%s: event %s closed at %.1f s (%s; peak %.3f, mean %.3f)", w.camera.name, event.event_id,
                        event.end_s, event.closed_by, event.peak_score, event.mean_score)
            if w.clips is not None:
                w.clips.stop(event.end_s)

    def _interrupted(self, w: CameraWorker, kind: str) -> None:
        """A gap closes the open event (``stream_lost``) and restarts the window: the past before an outage is
        not the context of what comes after. An end closes it with ``stream_end`` (``shutdown`` when stopping)."""
        self._flush_rows(w, None)  # held rows of an above run too short to open an event
        if w.tracker is not None:
            reason = "stream_lost" if kind == "gap" else ("shutdown" if self.stop.is_set() else "stream_end")
            event = w.tracker.close(reason)
            if event is not None:
                self._emit(w, event, STATE_CLOSED)
        w.window = WindowState(len(self.model.backbones), self.model.window)

    # -- reporting -------------------------------------------------------------------------------------------
    def _status(self) -> None:
        for w in self.workers:
            c = w.summary()
            lat = "" if c.latency_p95_s is None else f", latency p95 {c.latency_p95_s:.2f} s"
            log.info("%s: %s, %d frames, %d snippets scored, %d dropped, %d events, %d reconnects%s", c.name,
                     "connected" if w.reader.stats.connected else "not connected", c.frames, c.snippets_scored,
                     c.snippets_dropped, c.events, c.reconnects, lat)

    def _close(self, stopped: bool, seconds: float, cpu_s: float) -> WatchSummary:
        for w in self.workers:
            if w.tracker is not None:  # a camera thread that did not end in time: its event closes here
                event = w.tracker.close("shutdown")
                if event is not None:
                    self._emit(w, event, STATE_CLOSED)
            self._flush_rows(w, None)
            if w.clips is not None:
                w.clips.close()
            w.scores.close()
        self.events.close()
        hook = None
        if self.webhook is not None:
            self.webhook.close()
            hook = {"url": self.webhook.url, "sent": self.webhook.sent, "failed": self.webhook.failed,
                    "dropped": self.webhook.dropped}
        self.rss["end"] = resident_mb()
        self.rss["max"] = max(self.rss["max"], self.rss["end"])
        summary = WatchSummary(self.model.label, self.model.run, self.config.rule.threshold,
                               self.config.threshold_source, self.model.window, seconds, stopped,
                               [w.summary() for w in self.workers], hook,
                               {k: round(v, 1) for k, v in self.rss.items()}, cpu_s, round(self.busy_s, 2))
        from pipeline.atomic import atomic_write_json

        atomic_write_json(self.config.out / SUMMARY_FILE, _jsonable(asdict(summary)))
        return summary


def _jsonable(value):
    """NaN and infinities as None, so summary.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def load_summary(out: Path) -> dict:
    """``summary.json`` of a finished watch."""
    return json.loads((Path(out) / SUMMARY_FILE).read_text(encoding="utf-8"))
