"""``dakd watch`` with a model that gives anomaly maps: each event carries its box (the per-cell max of its
snippets' maps, pixels of the camera's frames) and a JPEG snapshot of its peak snippet's frame with the heatmap,
written beside its clip; a model without maps writes the events as before. The model is a real two-output ONNX
export (tests/map_export.py) served a loopback camera stream."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from map_export import write_map_export
from PIL import Image
from videos import encode

from pipeline import api
from pipeline.alert_rule import AlertRule
from pipeline.detect import maps
from pipeline.testing.replay import ReplayServer
from pipeline.watch import watcher as engine
from pipeline.watch.events import MAP_FIELDS, EventTracker

FRAME_HW = (60, 80)
GRID = (3, 4)
SNIPPET_S = 16 / 25
DEADLINE_S = 60.0  # the watch is stopped after this long, whatever happens (a loaded 2-core machine)
HOLD_S = 1.5  # how long the watch goes on after the first event opened


def _map(hot=(1, 2), value=0.9) -> np.ndarray:
    m = np.full(GRID, 0.1, np.float32)
    m[hot] = value
    return m


def _frame(level: int) -> np.ndarray:
    return np.full((*FRAME_HW, 3), level, dtype=np.uint8)


def test_an_event_keeps_the_max_map_of_its_snippets_its_box_and_its_peak_frame():
    tracker = EventTracker("cam", None, AlertRule(0.5, open_after=2, close_after=2), 0.0)
    feed = [(0.2, _map((0, 0))),  # below: not part of the event
            (0.7, _map((0, 1))), (0.8, _map((0, 2))),  # open the event
            (0.3, _map((2, 0))),  # a dip (tail), counted once the score rises again
            (0.95, _map((1, 2))),  # the peak
            (0.1, _map((2, 3))), (0.1, _map((2, 3)))]  # close it: not part of the event
    events = []
    for i, (score, cell_map) in enumerate(feed):
        opened, closed = tracker.update(score, i * SNIPPET_S, (i + 1) * SNIPPET_S, cell_map, _frame(10 * i))
        if opened is not None:
            assert opened.box_cells == [0, 1, 1, 3] and opened.box == [20, 0, 60, 20]  # cells (0, 1) and (0, 2)
            assert tracker.peak_view.frame[0, 0, 0] == 20  # snippet 2 (0.8) is the peak so far
        events += [e for e in (opened, closed) if e is not None]
    [event] = {id(e): e for e in events}.values()
    # cells (0, 1), (0, 2), (2, 0) and (1, 2) are at 0.9: (0, 1), (0, 2), (1, 2) connect; (2, 0) touches none
    assert event.box_cells == [0, 1, 2, 3] and event.box == [20, 0, 60, 40] and event.box_above_threshold
    assert tracker.peak_view.frame[0, 0, 0] == 40 and tracker.peak_view.cell_map[1, 2] == pytest.approx(0.9)
    assert set(MAP_FIELDS) - {"snapshot"} <= set(event.to_json())
    plain = EventTracker("cam", None, AlertRule(0.5, open_after=1, close_after=1), 0.0)
    opened, _ = plain.update(0.9, 0.0, SNIPPET_S)
    assert opened.box is None and not set(MAP_FIELDS) & set(opened.to_json())  # no maps: the record as before


def _video(tmp_path, n=96):
    yy, xx = np.mgrid[0:FRAME_HW[0], 0:FRAME_HW[1]]
    frames = np.stack([np.stack([60 + xx + t, 80 + 2 * yy, 100 + (xx + yy) // 2], axis=-1) for t in range(n)])
    return encode(tmp_path / "gate.mp4", frames.astype(np.uint8), codec="libx264", lossless=False)


def _events(out) -> list[dict]:
    path = out / engine.EVENTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _watch(tmp_path, folder, out):
    """A loopback camera looping the video, watched with the export in ``folder`` until an event has been open for
    ``HOLD_S`` (then stopped: the shutdown closes it)."""
    stop = threading.Event()

    def stop_after_an_event():
        deadline = time.monotonic() + DEADLINE_S
        while not stop.is_set() and time.monotonic() < deadline and not _events(out):
            time.sleep(0.1)
        stop.wait(HOLD_S)
        stop.set()

    threading.Thread(target=stop_after_an_event, daemon=True).start()
    with ReplayServer(_video(tmp_path), loop=True) as server:
        summary = api.watch([f"gate={server.url}"], onnx=folder, out=out, window=4,
                            rule=AlertRule(0.5, open_after=2, close_after=2), clips=True, stall_timeout_s=5.0,
                            stop=stop)
    return summary, _events(out)


@pytest.mark.slow  # a live-paced stream until an event opened
def test_watch_puts_a_box_and_a_heatmap_snapshot_on_every_event(tmp_path):
    folder, _ = write_map_export(tmp_path / "export")  # the hot cell (1, 2) of 3 x 4: pixels x 40-60, y 20-40
    out = tmp_path / "w"
    summary, events = _watch(tmp_path, folder, out)
    [camera] = summary.cameras
    assert camera.snippets_scored >= 2 and not camera.snippets_failed
    # every snippet scores about 0.88: one event, open until the stop
    assert [(e["state"], e["closed_by"]) for e in events] == [("open", None), ("closed", "shutdown")]
    snapshot = out / engine.CLIPS_FOLDER / "gate" / "gate-000001.jpg"
    for e in events:
        assert e["box"] == [40, 20, 60, 40] and e["box_cells"] == [1, 2, 2, 3] and e["box_above_threshold"]
        assert e["snapshot"] == str(snapshot)
    assert (out / engine.CLIPS_FOLDER / "gate" / "gate-000001.mp4").is_file()  # beside the clip
    with Image.open(snapshot) as image:
        assert image.format == "JPEG" and image.size == (FRAME_HW[1], FRAME_HW[0])
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert (pixels[20, 42:58] > 200).all()  # the box's top edge
    assert pixels[30, 50, 0] - pixels[30, 50, 2] > 40  # the hot cell's heatmap (jet's reds)
    assert abs(pixels[50, 10, 1:] - np.array([180, 130])).max() < 15  # a cold cell (map 0.05): about the frame


@pytest.mark.slow
def test_watch_without_maps_writes_its_events_as_before(tmp_path):
    folder, _ = write_map_export(tmp_path / "export", maps=False)
    out = tmp_path / "w"
    _, events = _watch(tmp_path, folder, out)
    assert [e["state"] for e in events] == ["open", "closed"]
    assert not any(set(MAP_FIELDS) & set(e) for e in events)
    assert not list((out / engine.CLIPS_FOLDER).rglob("*.jpg"))


def test_the_snapshot_writer_is_the_heatmap_overlay(tmp_path):
    frame = _frame(128)
    path = maps.write_snapshot_jpeg(tmp_path / "s.jpg", frame, _map(), (40, 20, 60, 40), quality=95)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    expected = maps.heatmap_overlay(frame, _map(), box=(40, 20, 60, 40)).astype(int)
    assert np.abs(pixels - expected).mean() < 3
