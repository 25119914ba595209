"""A spatial run's anomaly maps through every output path, on real videos: synthetic surveillance videos extracted
with EfficientNet-Lite0 (its real weights) on its native grid (``dakd extract --grid native``), a spatial teacher
and a spatial student trained on the cells, then ``dakd detect`` (torch) writing ``<name>.maps.npz`` on the run's
grid with event boxes and the heatmap overlay, ``dakd export`` giving two-output graphs (scores and maps) whose
``detect --onnx`` maps equal the torch path's within the export tolerance, and ``dakd watch`` with the torch run
putting a box and a snapshot on its events.

No planted-object test here: whether a tiny model trained a few epochs on a dozen videos puts its highest cell on
a given object is not something a test can rely on; the box is checked against the maps it comes from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from data.decode import open_video
from pipeline import api
from pipeline.alert_rule import AlertRule
from pipeline.cli import detect, export, watch
from pipeline.detect import detector
from pipeline.detect import maps as map_files
from pipeline.detect.onnx_scorer import EXPORT_JSON, MAPS_NAME, OUTPUT_NAME, TOLERANCE
from pipeline.evaluate.scoring import score_cells
from pipeline.watch import watcher as engine
from pipeline.watch.model import from_run

pytestmark = pytest.mark.slow  # the module's fixture extracts 12 videos' grids and trains two runs

TOP_K = 3  # spatial.k's default: a snippet's score is the mean of its 3 highest cells


@pytest.fixture(scope="module")
def trained(spatial_runs):
    """12 synthetic videos (320 x 240, 160 frames), their effnet_lite0 cells on its native grid, a spatial teacher
    and a spatial student distilled from it (tests/spatial_runs.py, shared with the calibration tests)."""
    return spatial_runs


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    store, _, keys, _ = trained
    out = tmp_path_factory.mktemp("export")
    assert export.main([keys["student"][:12], "--store", str(store), "--out", str(out)]) == 0
    return out


def _video(dataset):
    return next(e for e in dataset.entries if e.label == 1 and e.split == "test").path


def test_the_runs_are_spatial_on_the_native_grid(trained):
    _, _, _, grids = trained
    # effnet_lite0's full view of a 320 x 240 frame: 224 x 299 -> its stride-32 map, 7 x 10
    assert grids == {"teacher": (7, 10), "student": (7, 10)}


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_torch_detect_writes_the_runs_maps_an_event_box_and_a_heatmap_overlay(trained, tmp_path, stage,
                                                                             monkeypatch):
    store, dataset, keys, grids = trained
    path = _video(dataset)
    # smoothing 1: the model's own scores, which its maps make (detect smooths them over 3 snippets by default)
    first = api.detect(path, store=store, run=keys[stage], out=tmp_path / "first",
                       rule=AlertRule(0.0, open_after=1, close_after=1), smoothing=1)
    assert not first.failures and not first.warnings  # the grid backbone matches the training fingerprint
    d = first.detections[0]
    assert d.maps.shape == (len(d.snippet_scores), *grids[stage]) and d.maps.dtype == np.float32
    assert ((d.maps > 0) & (d.maps < 1)).all()
    assert d.frame_hw == (240, 320)  # the source frames' size, from the store's record of the video
    # the spatial model's maps: each snippet's score is the mean of its top-3 cells
    top = np.sort(d.maps.reshape(len(d.maps), -1), axis=1)[:, -TOP_K:].mean(axis=1)
    np.testing.assert_allclose(top, d.snippet_scores, atol=1e-5)

    # an event at the top snippet's score: its box holds the top cell of that snippet, at or above the threshold
    threshold = float(d.snippet_scores.max())
    out, overlay = tmp_path / "second", tmp_path / "overlay.mp4"

    def reopened(path):
        raise AssertionError(f"{path} opened again for its frame size")
    monkeypatch.setattr(detector, "frame_size", reopened)  # the boxes' pixels come from what extraction decoded
    assert detect.main([str(path), "--store", str(store), "--model", keys[stage][:12], "--out", str(out),
                        "--threshold", str(threshold), "--open-after", "1", "--close-after", "1", "--smoothing", "1",
                        "--overlay", str(overlay), "--quiet"]) == 0
    info = json.loads((out / f"{path.stem}.json").read_text())
    assert info["grid"] == list(grids[stage]) and info["maps_file"] == f"{path.stem}{map_files.MAPS_SUFFIX}"
    written = map_files.read_maps_npz(out / info["maps_file"])
    assert written.grid == grids[stage]
    np.testing.assert_allclose(written.maps, d.maps, atol=1e-3)  # float16 on disk
    peak = int(np.argmax(d.snippet_scores))
    [event] = [e for e in info["events"] if e["first_snippet"] <= peak <= e["last_snippet"]]
    expected = map_files.event_box(d.maps, event["first_snippet"], event["last_snippet"], threshold, (240, 320))
    assert event["box"] == list(expected.box) and event["box_cells"] == list(expected.cells)
    assert event["box_above_threshold"]
    r, c = np.unravel_index(int(np.argmax(d.maps[peak])), grids[stage])
    r0, c0, r1, c1 = event["box_cells"]
    assert r0 <= r < r1 and c0 <= c < c1
    x0, y0, x1, y1 = event["box"]
    assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
    with open_video(overlay) as video:
        frame = next(iter(video.snippets(1)))[0]  # frame 0, inside the event when it starts at snippet 0
    assert frame.shape[:2] == (240, 320)


def test_the_export_outputs_scores_and_maps_and_detect_onnx_gives_the_torch_maps(trained, exported, tmp_path):
    store, dataset, keys, grids = trained
    info = json.loads((exported / EXPORT_JSON).read_text())
    assert info["outputs"] == [OUTPUT_NAME, MAPS_NAME] and info["grid"] == list(grids["student"])
    assert info["features"]["shape"] == ["T", 70, 1280] and info["features"]["cells"] == [7, 10]
    assert max(info["max_abs_diff"].values()) <= TOLERANCE
    line = export.summary_line(keys["student"], "effnet_lite0", exported, info)
    assert "; scores and 7x10 maps; checked on" in line and "max |score and map - eager|" in line
    path = _video(dataset)
    eager = api.detect(path, store=store, run=keys["student"], out=tmp_path / "torch").detections[0]
    result = api.detect(path, onnx=exported, out=tmp_path / "onnx")
    assert not result.failures
    onnx = result.detections[0]
    assert onnx.maps.shape == eager.maps.shape
    np.testing.assert_allclose(onnx.snippet_scores, eager.snippet_scores, atol=TOLERANCE)
    np.testing.assert_allclose(onnx.maps, eager.maps, atol=TOLERANCE)
    written = map_files.read_maps_npz(tmp_path / "onnx" / f"{path.stem}{map_files.MAPS_SUFFIX}")
    assert written.grid == grids["student"]


def test_live_cells_scored_over_the_whole_video_give_the_offline_maps(trained, tmp_path):
    store, dataset, keys, grids = trained
    path = _video(dataset)
    offline = api.detect(path, store=store, run=keys["student"], out=tmp_path / "d", smoothing=1).detections[0]
    model = from_run(store, keys["student"][:12])
    assert model.map_scorer is not None
    plan = model.plans[0]
    with open_video(path, short_side=plan.short_side, square=plan.square) as video:
        snippets = np.stack(list(video.snippets()))
    [cells] = model.embed([snippets])  # [T, C, D], the live embedding
    assert cells.shape[1] == grids["student"][0] * grids["student"][1]
    scores, maps = model.score_maps([[cells[:t + 1]] for t in (0, len(cells) - 1)])
    assert maps.shape == (2, *grids["student"])
    np.testing.assert_allclose(scores[1], offline.snippet_scores[-1], atol=1e-5)
    np.testing.assert_allclose(maps[1], offline.maps[-1], atol=1e-5)
    # the first window holds the first snippet alone: the offline model over that one snippet
    first, first_map = score_cells(model._network, [cells[:1]], [grids["student"]], torch.device("cpu"),
                                   grid=grids["student"])
    np.testing.assert_allclose(maps[0], first_map[0], atol=1e-6)


def test_watch_with_the_torch_run_puts_a_box_and_a_snapshot_on_its_events(trained, tmp_path, capsys):
    store, dataset, keys, grids = trained
    path = _video(dataset)
    out = tmp_path / "w"
    # threshold 0: every snippet is at or above it, so one event opens at once and closes at the stream's end
    code = watch.main([f"gate={path}", "--store", str(store), "--model", keys["student"][:12], "--out", str(out),
                       "--threshold", "0", "--open-after", "1", "--close-after", "1", "--window", "4", "--clips",
                       "--quiet"])
    assert code == 0, capsys.readouterr().err
    events = [json.loads(line) for line in (out / engine.EVENTS_FILE).read_text().splitlines()]
    assert [e["state"] for e in events] == ["open", "closed"]
    snapshot = out / engine.CLIPS_FOLDER / "gate" / f"{events[0]['event_id']}.jpg"
    assert events[-1]["snapshot"] == str(snapshot)
    with Image.open(snapshot) as image:
        # the frames as the run decodes them (short side 224, as its training videos): the clip's and the boxes'
        assert image.format == "JPEG" and image.size == (298, 224)
    rows, cols = grids["student"]
    for e in events:
        r0, c0, r1, c1 = e["box_cells"]
        assert 0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols and e["box_above_threshold"]
        assert e["box"] == list(map_files.cells_to_pixels(tuple(e["box_cells"]), (rows, cols), (224, 298)))


def test_watch_with_the_spatial_export_puts_the_boxes_of_its_maps_on_its_events(trained, exported, tmp_path,
                                                                                capsys):
    _, dataset, _, grids = trained
    out = tmp_path / "w"
    code = watch.main([f"gate={_video(dataset)}", "--onnx", str(exported), "--out", str(out), "--threshold", "0",
                       "--open-after", "1", "--close-after", "1", "--window", "4", "--clips", "--quiet"])
    assert code == 0, capsys.readouterr().err
    events = [json.loads(line) for line in (out / engine.EVENTS_FILE).read_text().splitlines()]
    assert [e["state"] for e in events] == ["open", "closed"]
    for e in events:
        assert e["box"] == list(map_files.cells_to_pixels(tuple(e["box_cells"]), grids["student"], (224, 298)))
    assert (out / engine.CLIPS_FOLDER / "gate" / f"{events[0]['event_id']}.jpg").is_file()
