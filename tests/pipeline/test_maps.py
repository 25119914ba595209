"""Anomaly maps (pipeline.detect.maps) and detect's outputs with them: boxes from planted hot cells land on the
right pixels, the region of the highest cell is chosen, the heatmap changes a frame only where the map is high, the
maps file round-trips, an export's second (maps) output is read from a real ONNX graph, and detect writes the maps,
the events' boxes and a heatmap overlay for a Detection with maps, and nothing new without them."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from map_export import DIM, head_outputs, write_map_export
from PIL import Image
from videos import encode

from pipeline.alert_rule import AlertRule
from pipeline.detect import detector, maps
from pipeline.detect.onnx_scorer import OnnxScorer, maps_output
from pipeline.evaluate import localization

GRID = (3, 4)
FRAME_HW = (60, 80)  # cells of 20 x 20 pixels


def _smooth(n: int) -> np.ndarray:
    """uint8 [n, 60, 80, 3]: slow gradients (no pixel noise, which H.264's and JPEG's chroma subsampling would
    blur into differences of their own)."""
    yy, xx = np.mgrid[0:FRAME_HW[0], 0:FRAME_HW[1]]
    frames = np.empty((n, *FRAME_HW, 3), dtype=np.uint8)
    for t in range(n):
        frames[t, ..., 0] = 60 + xx + t
        frames[t, ..., 1] = 80 + yy * 2
        frames[t, ..., 2] = 100 + (xx + yy) // 2
    return frames


def _planted(value: float = 0.9, cells=((1, 2),), background: float = 0.1) -> np.ndarray:
    m = np.full(GRID, background, dtype=np.float32)
    for r, c in cells:
        m[r, c] = value
    return m


def test_a_planted_hot_cell_gives_its_pixels():
    assert maps.cell_box(_planted(), 0.5, FRAME_HW) == (40, 20, 60, 40)  # cell (1, 2): x 40-60, y 20-40
    assert maps.cell_box(_planted(cells=((0, 0),)), 0.5, FRAME_HW) == (0, 0, 20, 20)
    assert maps.cell_box(_planted(cells=((2, 3),)), 0.5, (61, 83)) == (62, 41, 83, 61)  # rounded equal cells
    assert maps.cell_box(_planted(), 0.95, FRAME_HW) is None  # no cell at or above the threshold
    assert maps.cell_box(_planted(0.5), 0.5, FRAME_HW) == (40, 20, 60, 40)  # at the threshold counts


def test_the_region_holding_the_highest_cell_is_chosen_and_corners_connect():
    m = _planted(0.7, cells=((0, 0), (1, 0)))  # a region of two cells on the left ...
    m[2, 3] = 0.95  # ... and a hotter cell alone at the bottom right
    assert maps.cell_region(m, 0.5) == (2, 3, 3, 4)
    m[1, 2] = 0.6  # touches (2, 3) at a corner: one region (8-connectivity)
    assert maps.cell_region(m, 0.5) == (1, 2, 3, 4)
    assert maps.cell_box(m, 0.5, FRAME_HW) == (40, 20, 80, 60)
    m[2, 3] = 0.65  # now the left region holds the highest cell
    assert maps.cell_region(m, 0.5) == (0, 0, 2, 1)


def test_an_event_box_takes_the_max_over_its_snippets_and_flags_a_fallback():
    snippet_maps = np.stack([_planted(cells=((0, 0),)), _planted(cells=((0, 1),)), _planted(cells=((2, 3),))])
    box = maps.event_box(snippet_maps, 0, 1, 0.5, FRAME_HW)  # snippets 0 and 1: cells (0, 0) and (0, 1)
    assert box.above and box.cells == (0, 0, 1, 2) and box.box == (0, 0, 40, 20)
    low = maps.event_box(snippet_maps * 0.5, 2, 2, 0.5, FRAME_HW)  # 0.45 at most: the highest cell, flagged
    assert not low.above and low.cells == (2, 3, 3, 4) and low.box == (60, 40, 80, 60)
    assert low.to_json() == {"box": [60, 40, 80, 60], "box_cells": [2, 3, 3, 4], "box_above_threshold": False}


def test_frame_maps_hold_each_snippet_over_its_frames_and_the_last_over_the_tail():
    snippet_maps = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((1, *GRID), np.float32)
    frames = maps.frame_maps(snippet_maps, 53)
    assert frames.shape == (53, *GRID)
    assert (frames[:16] == 0).all() and (frames[16:32] == 1).all() and (frames[32:] == 2).all()
    assert maps.frame_maps(snippet_maps, 20).shape == (20, *GRID)  # fewer frames than snippets cover


def test_cells_and_upsampling_are_the_localisation_metrics():
    for size, cells in ((60, 3), (61, 7), (337, 11)):
        np.testing.assert_array_equal(maps.cell_edges(size, cells), localization.cell_edges(size, cells))
    m = np.random.default_rng(0).random((7, 11)).astype(np.float32)
    np.testing.assert_allclose(maps.upsample(m, (224, 337)), localization.upsample(m[None], (224, 337))[0],
                               atol=1e-6)


def test_the_heatmap_changes_the_frame_only_where_the_map_is_high_and_draws_the_box():
    frame = np.full((*FRAME_HW, 3), 128, dtype=np.uint8)
    m = np.zeros(GRID, np.float32)
    m[1, 2] = 1.0
    out = maps.heatmap_overlay(frame, m, alpha=0.5)
    changed = (out != frame).any(axis=2)
    # bilinear between cell centres: the hot cell's colour reaches at most half a cell (10 px) beyond it
    assert changed[30, 50] and not changed[:, :30].any() and not changed[:10].any() and not changed[50:].any()
    red = out[30, 50].astype(int)  # near 1: jet's reds, blended half and half with grey
    assert red[0] - red[2] > 60
    faint = maps.heatmap_overlay(frame, np.full(GRID, 0.1, np.float32), alpha=0.5)
    assert np.abs(faint.astype(int) - frame).max() <= 0.5 * 0.1 * 255 + 1  # low alpha where the map is low
    boxed = maps.heatmap_overlay(frame, m, alpha=0.5, box=(40, 20, 60, 40))
    assert (boxed[20, 40:60] == maps.BOX_COLOUR).all() and (boxed[20:40, 59] == maps.BOX_COLOUR).all()
    assert (boxed[30, 50] == out[30, 50]).all()  # inside the outline: the heatmap
    assert (boxed[:, :30] == frame[:, :30]).all()
    with pytest.raises(ValueError, match="alpha"):
        maps.heatmap_overlay(frame, m, alpha=1.5)


def test_the_maps_file_round_trips(tmp_path):
    snippet_maps = np.random.default_rng(1).random((5, *GRID)).astype(np.float32)
    path = maps.write_maps_npz(tmp_path / "v.maps.npz", snippet_maps, grid=GRID, fps=25.0)
    back = maps.read_maps_npz(path)
    assert back.grid == GRID and back.fps == 25.0 and back.snippet_frames == 16
    assert back.maps.dtype == np.float32 and back.maps.shape == (5, *GRID)
    np.testing.assert_allclose(back.maps, snippet_maps, atol=1e-3)  # stored as float16
    assert back.frame_maps(90).shape == (90, *GRID)
    with np.load(path) as raw:
        assert raw["maps"].dtype == np.float16 and sorted(raw.files) == sorted(maps.NPZ_KEYS)
    with pytest.raises(ValueError, match="not \\[T, 3, 5\\]"):
        maps.write_maps_npz(tmp_path / "w.npz", snippet_maps, grid=(3, 5), fps=25.0)
    np.savez(tmp_path / "other.npz", mask=np.zeros(3))
    with pytest.raises(ValueError, match="not a maps file"):
        maps.read_maps_npz(tmp_path / "other.npz")


def test_a_snapshot_is_a_jpeg_of_the_frame_with_its_heatmap(tmp_path):
    frame = _smooth(1)[0]
    path = maps.write_snapshot_jpeg(tmp_path / "e.jpg", frame, _planted(1.0, background=0.0), (40, 20, 60, 40))
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (80, 60)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(pixels[:, :25] - frame[:, :25]).mean() < 12  # untouched (JPEG's loss)
    assert np.abs(pixels[25:35, 45:55] - frame[25:35, 45:55]).mean() > 40  # the hot cell's heatmap


def test_the_export_seam_reads_a_second_onnx_output_named_in_export_json(tmp_path):
    folder, head = write_map_export(tmp_path / "export")
    info = json.loads((folder / "export.json").read_text())
    assert maps_output(info) == ("maps", GRID)
    scorer = OnnxScorer(folder, providers=["CPUExecutionProvider"], maps=maps_output(info))
    features = np.random.default_rng(2).standard_normal((6, DIM)).astype(np.float32)
    scores, cell_maps = scorer.score_maps(features)
    eager_scores, eager_maps = head_outputs(head, features)
    assert cell_maps.shape == (6, *GRID)
    np.testing.assert_allclose(scores, eager_scores, atol=1e-6)
    np.testing.assert_allclose(cell_maps, eager_maps, atol=1e-6)
    two_crops = np.stack([features, features[::-1]], axis=1)  # [T, 2, D]: each crop its own sequence, averaged
    s, m = scorer.score_crops_maps(two_crops)
    np.testing.assert_allclose(m, (eager_maps + head_outputs(head, features[::-1])[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(s, scorer.score_crops(two_crops), atol=1e-6)
    # export.json without outputs: no maps, the scores as before
    plain, _ = write_map_export(tmp_path / "plain", maps=False)
    assert maps_output(json.loads((plain / "export.json").read_text())) is None
    plain_scorer = OnnxScorer(plain, providers=["CPUExecutionProvider"])
    got, none = plain_scorer.score_maps(features)
    assert none is None and plain_scorer.grid is None
    np.testing.assert_allclose(got, eager_scores, atol=1e-6)
    with pytest.raises(ValueError, match="grid"):
        maps_output({"outputs": ["scores", "maps"]})
    with pytest.raises(ValueError, match="no output 'cells'"):
        OnnxScorer(folder, providers=["CPUExecutionProvider"], maps=("cells", GRID))


def _video(tmp_path: Path, n: int = 53) -> Path:
    return encode(tmp_path / "v.mp4", _smooth(n))


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_detect_writes_maps_boxes_and_a_heatmap_overlay_for_a_detection_with_maps(tmp_path):
    video = _video(tmp_path)
    snippet_maps = np.stack([_planted(0.2), _planted(0.9), _planted(0.8, cells=((1, 2), (2, 3)))])
    d = detector.Detection(video, np.array([0.1, 0.9, 0.8], np.float32), 53, 25.0, maps=snippet_maps)
    model = detector.ModelInfo("k" * 64, "student", ("effnet_lite0",), detector.ENGINE_TORCH)
    rule = AlertRule(0.5, open_after=1, close_after=1)
    [written] = detector.write_all([d], model, tmp_path / "out", rule, tmp_path / "ov")
    out = tmp_path / "out"
    assert [f.name for f in written.files] == ["v.csv", "v.json", "v.png", "v.maps.npz", "v.mp4"]
    back = maps.read_maps_npz(out / "v.maps.npz")
    np.testing.assert_allclose(back.maps, snippet_maps, atol=1e-3)
    result = json.loads((out / "v.json").read_text())
    assert result["maps_file"] == "v.maps.npz" and result["grid"] == list(GRID)
    [event] = result["events"]
    assert event["first_snippet"] == 1 and event["last_snippet"] == 2 and event["peak_score"] == pytest.approx(0.9)
    # the per-cell max over snippets 1-2: cells (1, 2) and (2, 3) touch at a corner, one region
    assert event["box"] == [40, 20, 80, 60] and event["box_cells"] == [1, 2, 3, 4] and event["box_above_threshold"]
    assert written.events == result["events"]
    frames, original = _frames(written.overlay), _frames(video)
    assert len(frames) == 53
    # frame 5 is snippet 0's heatmap (no event, no box), frame 20 snippet 1's with the event's box; above the bar
    # (its 6 bottom rows), within H.264's loss
    above_bar = slice(0, 54)
    for i, expected in ((5, maps.heatmap_overlay(original[5], snippet_maps[0])),
                        (20, maps.heatmap_overlay(original[20], snippet_maps[1], box=(40, 20, 80, 60)))):
        assert np.abs(frames[i][above_bar].astype(int) - expected[above_bar]).mean() < 3, i
    assert np.abs(frames[20][25:35, 45:55].astype(int) - original[20][25:35, 45:55]).mean() > 30  # hot cell
    assert (frames[20][21, 44:76] > 200).all() and not (frames[5][21, 44:76] > 200).all()  # the box's top edge


def test_detect_without_maps_writes_what_it_wrote_before(tmp_path):
    video = _video(tmp_path)
    d = detector.Detection(video, np.array([0.1, 0.9, 0.8], np.float32), 53, 25.0)
    model = detector.ModelInfo(None, "student", ("effnet_lite0",), detector.ENGINE_ONNX)
    [written] = detector.write_all([d], model, tmp_path / "out", AlertRule(0.5, 1, 1), None)
    assert [f.name for f in written.files] == ["v.csv", "v.json", "v.png"]
    result = json.loads((tmp_path / "out" / "v.json").read_text())
    assert "maps_file" not in result and "grid" not in result
    assert set(result["events"][0]) == {"start_s", "end_s", "first_snippet", "last_snippet", "peak_score"}


def test_detect_onnx_gives_the_heads_maps_on_a_real_video(tmp_path):
    folder, head = write_map_export(tmp_path / "export")
    export = detector.load_export(folder, ["CPUExecutionProvider"])
    video = _video(tmp_path, 70)
    d = detector.onnx_detect(video, export, chunk=2)
    assert d.maps.shape == (4, *GRID) and d.grid == GRID and len(d.snippet_scores) == 4
    features, _, _, frame_hw = detector.video_features(video, export, 2)
    scores, eager_maps = head_outputs(head, features[:, 0])
    np.testing.assert_allclose(d.maps, eager_maps, atol=1e-5)
    np.testing.assert_allclose(d.snippet_scores, scores, atol=1e-5)
    assert d.frame_hw == frame_hw == _frames(video)[0].shape[:2]  # from the decoding, not a second opening
    [written] = detector.write_all([d], export.model, tmp_path / "out", AlertRule(0.5), None)
    [event] = written.events  # every snippet scores about 0.88: one event over the video
    assert event["box"] == [40, 20, 60, 40] and event["box_cells"] == [1, 2, 2, 3]
    assert d.maps.dtype == np.float32
    plain, _ = write_map_export(tmp_path / "plain", maps=False)
    assert detector.onnx_detect(video, detector.load_export(plain, ["CPUExecutionProvider"]), 2).maps is None


def test_a_box_keeps_to_the_half_maximum_when_every_cell_passes_the_threshold():
    """A spatial cell score is the mean of the snippet's score and the cell's evidence, so a saturated snippet puts
    every cell at or above 0.5: the box is then the peak's region at the map's half maximum, not the whole frame."""
    m = np.full(GRID, 0.52, dtype=np.float32)  # every cell passes 0.5 ...
    m[1, 2], m[1, 3] = 0.95, 0.8  # ... and two adjacent cells carry the evidence
    assert maps.box_level(m, 0.5) == pytest.approx(0.52 + maps.BOX_PEAK_FRACTION * (0.95 - 0.52))
    assert maps.cell_region(m, 0.5) == (0, 0, 3, 4)  # the threshold alone: every cell
    box = maps.map_box(m, 0.5, FRAME_HW)
    assert box.above and box.cells == (1, 2, 2, 4) and box.box == (40, 20, 80, 40)
    assert maps.cell_box(m, 0.5, FRAME_HW) == (40, 20, 80, 40)
    assert maps.box_level(m, 0.9) == 0.9  # a threshold above the half maximum still decides
    assert maps.cell_box(m, 0.9, FRAME_HW) == (40, 20, 60, 40)
    assert maps.cell_box(m, 0.96, FRAME_HW) is None  # no cell reaches the threshold: no box
    flat = np.full(GRID, 0.7, dtype=np.float32)  # no cell stands out: the whole map is the region
    assert maps.cell_box(flat, 0.5, FRAME_HW) == (0, 0, 80, 60)
