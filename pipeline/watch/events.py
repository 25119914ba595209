"""Alerts as events: :class:`EventTracker` turns one camera's snippet scores (through the alert rule of
:mod:`pipeline.alert_rule`) into :class:`Event` objects with a running peak and mean, and :class:`EventLog`
writes them as JSON lines, flushed and fsynced per line so a stopped process loses nothing.

With a spatial model each snippet also brings its anomaly map ``[rows, cols]`` and a frame: the event then keeps
the per-cell maximum of its snippets' maps, its box (:func:`pipeline.detect.maps.map_box`, in the frame's pixels)
and the frame and map of its peak snippet, which the watcher writes as the event's snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.alert_rule import CLOSE, OPEN, AlertRule
from pipeline.detect.maps import map_box

log = logging.getLogger("pipeline.watch.events")

EVENT_ID_FORMAT = "{camera}-{n:06d}"  # event ids: camera name and a per-camera counter from 1
STATE_OPEN = "open"  # EventLog line state of an event that has just opened
STATE_CLOSED = "closed"  # ... of a finished event
CLOSE_REASONS = ("scores", "shutdown", "stream_end", "stream_lost")  # the values of Event.closed_by
MAP_FIELDS = ("box", "box_cells", "box_above_threshold", "snapshot")  # an Event's fields of a spatial model only


def utc_iso(epoch_s: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with millisecond precision and a ``Z``, e.g. ``2026-12-02T13:50:36.123Z``."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Event:
    """One alert. ``start_s`` / ``end_s`` are on the camera's clock (seconds since its first frame); ``end_*`` and
    ``closed_by`` are None while the event is open."""

    camera: str
    run: str | None
    event_id: str
    start_s: float
    end_s: float | None
    start_utc: str
    end_utc: str | None
    peak_score: float
    mean_score: float
    n_snippets: int
    threshold: float
    closed_by: str | None = None
    # a spatial model's (None otherwise, and then absent from to_json): the box of the event's cells at or above
    # the threshold and the map's half maximum (pipeline.detect.maps.box_level), pixels [x0, y0, x1, y1]
    # (half-open) of the camera's frames as the clip and snapshot show them (pipeline.detect.maps.EventBox), and
    # the path of the snapshot JPEG (the peak snippet's frame, heatmap, box)
    box: list[int] | None = None
    box_cells: list[int] | None = None
    box_above_threshold: bool | None = None
    snapshot: str | None = None

    def to_json(self) -> dict:
        """The event's fields; those of :data:`MAP_FIELDS` only when set (a model with maps)."""
        return {k: v for k, v in asdict(self).items() if k not in MAP_FIELDS or v is not None}


@dataclass
class PeakView:
    """What an event's snapshot shows: uint8 ``[H, W, 3]`` frame of its peak snippet and that snippet's map
    ``[rows, cols]``."""

    frame: np.ndarray
    cell_map: np.ndarray


class EventTracker:
    """One camera's events. Not thread-safe: the scoring thread owns it.

    The event spans the first of the ``open_after`` snippets that opened it to its last snippet above the
    threshold; peak and mean are over those snippets (the below-threshold snippets after the last above one, which
    only close the event, do not count). With maps (``update``'s ``cell_map`` and ``frame``), the event's map is the
    per-cell maximum over the same snippets, and :attr:`peak_view` holds its peak snippet's frame and map (kept
    after the event closed, until the next one opens)."""

    def __init__(self, camera: str, run: str | None, rule: AlertRule, utc_origin: float):
        self.camera = camera
        self.run = run
        self.rule = rule
        self.utc_origin = float(utc_origin)  # time.time() of the camera clock's 0
        self._stream = rule.stream()
        self._count = 0
        self._pending: list[tuple[float, float, float]] = []  # (score, start_s, end_s) of the current above run
        self._event: Event | None = None
        self._scores: list[float] = []  # the open event's snippets up to the latest above one ...
        self._tail: list[float] = []  # ... and the below ones after it (counted only if the score rises again)
        self._end_s: float | None = None
        # with maps: the views of the pending run (aligned with _pending), the event's per-cell max map, the max
        # map of the tail (merged when the score rises again) and the peak snippet's view
        self._pending_views: list[PeakView | None] = []
        self._map: np.ndarray | None = None
        self._tail_map: np.ndarray | None = None
        self.peak_view: PeakView | None = None

    @property
    def open_event(self) -> Event | None:
        return self._event

    def update(self, score: float, start_s: float, end_s: float, cell_map: np.ndarray | None = None,
               frame: np.ndarray | None = None) -> tuple[Event | None, Event | None]:
        """One snippet (its score and clock interval; with a spatial model its map ``[rows, cols]`` and a uint8
        frame ``[H, W, 3]`` of it) -> (event opened by it, event closed by it)."""
        score = float(score)
        above = self.rule.above(score)
        decision = self._stream.update(score)
        view = PeakView(frame, np.asarray(cell_map, dtype=np.float32)) if cell_map is not None else None
        opened = closed = None
        if self._event is None:
            # the run of above snippets that may open an event: keep the last open_after of them
            self._pending = (self._pending + [(score, start_s, end_s)])[-self.rule.open_after:] if above else []
            self._pending_views = (self._pending_views + [view])[-self.rule.open_after:] if above else []
            if decision == OPEN:
                self._count += 1
                self._scores = [s for s, _, _ in self._pending]
                self._start_maps()
                self._tail = []
                self._end_s = self._pending[-1][2]
                first_start = self._pending[0][1]
                self._event = Event(
                    camera=self.camera, run=self.run,
                    event_id=EVENT_ID_FORMAT.format(camera=self.camera, n=self._count),
                    start_s=float(first_start), end_s=None, start_utc=utc_iso(self.utc_origin + first_start),
                    end_utc=None, peak_score=max(self._scores), mean_score=sum(self._scores) / len(self._scores),
                    n_snippets=len(self._scores), threshold=float(self.rule.threshold))
                self._pending, self._pending_views = [], []
                self._refresh()
                opened = self._event
        else:
            if above:
                if view is not None and self._map is not None:
                    self._map = np.maximum(self._map, view.cell_map if self._tail_map is None else
                                           np.maximum(self._tail_map, view.cell_map))
                    self._tail_map = None
                    if score > self._event.peak_score:
                        self.peak_view = view
                self._scores += self._tail + [score]
                self._tail = []
                self._end_s = float(end_s)
                self._refresh()
            else:
                self._tail.append(score)
                if view is not None and self._map is not None:
                    self._tail_map = view.cell_map if self._tail_map is None else np.maximum(self._tail_map,
                                                                                             view.cell_map)
            if decision == CLOSE:
                closed = self._finish("scores")
        return opened, closed

    def close(self, reason: str) -> Event | None:
        """Close the open event (``"shutdown"``, ``"stream_end"``, ``"stream_lost"``) at its last snippet above the
        threshold; None when no event is open. The rule's state restarts (a reconnected stream starts fresh)."""
        if reason not in CLOSE_REASONS:
            raise ValueError(f"{self.camera}: unknown close reason {reason!r}; use one of {CLOSE_REASONS}")
        event = self._finish(reason) if self._event is not None else None
        self._stream = self.rule.stream()
        self._pending, self._pending_views = [], []
        return event

    def _start_maps(self) -> None:
        """The opening run's maps (when every snippet of it brought one): their per-cell max and the peak view."""
        views = self._pending_views
        if not views or any(v is None for v in views):
            self._map, self.peak_view = None, None
            return
        self._map = np.max([v.cell_map for v in views], axis=0)
        self._tail_map = None
        self.peak_view = views[int(np.argmax([s for s, _, _ in self._pending]))]

    def _refresh(self) -> None:
        event = self._event
        event.peak_score = max(self._scores)
        event.mean_score = sum(self._scores) / len(self._scores)
        event.n_snippets = len(self._scores)
        if self._map is not None and self.peak_view is not None and self.peak_view.frame is not None:
            box = map_box(self._map, self.rule.threshold, self.peak_view.frame.shape[:2]).to_json()
            event.box, event.box_cells, event.box_above_threshold = (box["box"], box["box_cells"],
                                                                     box["box_above_threshold"])

    def _finish(self, reason: str) -> Event:
        event = self._event
        self._refresh()
        event.end_s = float(self._end_s)
        event.end_utc = utc_iso(self.utc_origin + self._end_s)
        event.closed_by = reason
        self._event = None
        self._scores, self._tail = [], []
        self._map = self._tail_map = None
        return event


class EventLog:
    """A JSON-lines file: one line per event state (``{"state": "open"|"closed", **event}``), appended, flushed
    and fsynced per line so a reader (or a crash) always sees whole lines. Thread-safe."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, event: Event, state: str) -> None:
        if state not in (STATE_OPEN, STATE_CLOSED):
            raise ValueError(f"{self.path}: event state must be {STATE_OPEN!r} or {STATE_CLOSED!r}, got {state!r}")
        line = json.dumps({"state": state, **event.to_json()}) + "\n"
        with self._lock:
            if self._file is None:
                raise ValueError(f"{self.path}: event log is closed")
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
