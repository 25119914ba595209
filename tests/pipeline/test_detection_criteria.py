"""RBDC and TBDC (pipeline/evaluate/detection_criteria.py, Ramachandra & Jones 2020) on hand-made masks and maps
whose answers are known: a perfect map, a map that fires elsewhere, the IoU threshold beta, the track share alpha,
how tracks are linked through frames, and the area under a curve of false positives per frame."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate.detection_criteria import (DETECTION_THRESHOLDS, MAX_FP_PER_FRAME, RBDC_BETA, TBDC_ALPHA,
                                                  DetectionCounter, area_under_curve, detection_thresholds,
                                                  ground_truth_tracks, rbdc_tbdc)

H, W = 40, 60
ONE = np.array([0.5])  # a single threshold: a binary map is its own prediction


def _boxes(frames: int, boxes: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """bool ``[frames, H, W]`` with ``boxes[f] = (y0, y1, x0, x1)`` set in frame f."""
    out = np.zeros((frames, H, W), bool)
    for f, (y0, y1, x0, x1) in boxes.items():
        out[f, y0:y1, x0:x1] = True
    return out


def _walker(frames: int = 12, normal: int = 4) -> np.ndarray:
    """A 6 x 6 object walking one pixel a frame, then ``normal`` frames without anomaly."""
    return _boxes(frames + normal, {f: (10, 16, 5 + f, 11 + f) for f in range(frames)})


def test_the_paper_constants():
    assert (RBDC_BETA, TBDC_ALPHA, MAX_FP_PER_FRAME, DETECTION_THRESHOLDS) == (0.1, 0.1, 1.0, 100)


def test_a_perfect_map_detects_every_region_and_track_without_a_false_positive():
    masks = _walker()
    curves = rbdc_tbdc([masks.astype(np.float32)], [masks])
    assert (curves.frames, curves.regions, curves.tracks) == (16, 12, 1)
    above_zero = curves.thresholds > 0  # the lowest threshold takes the whole frame: one false positive a frame
    assert np.all(curves.region_rate[above_zero] == 1) and np.all(curves.track_rate[above_zero] == 1)
    assert np.all(curves.fp_per_frame[above_zero] == 0) and curves.fp_per_frame[0] == 1
    assert curves.rbdc == curves.tbdc == 1.0


def test_a_map_that_fires_elsewhere_detects_nothing_and_counts_its_false_positives():
    masks = _walker()
    elsewhere = _boxes(16, {f: (30, 36, 40, 46) for f in range(8)})  # a blob far from the walker, 8 of 16 frames
    curves = rbdc_tbdc([elsewhere.astype(np.float32)], [masks])
    assert np.all(curves.region_rate == 0) and np.all(curves.track_rate == 0)
    assert curves.fp_per_frame[-1] == 8 / 16 and curves.fp_per_frame[0] == 1  # whole frame: IoU 36 / 2400 < beta
    assert curves.rbdc == curves.tbdc == 0.0


@pytest.mark.parametrize("inside, detected", [(10, True), (9, False)])
def test_a_region_is_detected_at_an_iou_of_beta_and_a_miss_is_a_false_positive(inside, detected):
    masks = _boxes(1, {0: (0, 10, 0, 10)})  # 100 pixels
    prediction = np.zeros((1, H, W), np.float32)
    prediction[0, 0, :inside] = 1  # inside the box: IoU = inside / 100
    counter = DetectionCounter(ONE)
    counter.add(prediction, masks)
    curves = counter.curves()
    assert curves.region_rate[0] == float(detected) and curves.fp_per_frame[0] == float(not detected)


def test_a_region_larger_than_the_truth_is_judged_by_the_same_iou():
    masks = _boxes(1, {0: (0, 1, 0, 10)})  # 10 pixels inside a predicted 100
    for rows, detected in ((10, True), (11, False)):  # IoU 10 / 100, then 10 / 110
        prediction = _boxes(1, {0: (0, rows, 0, 10)}).astype(np.float32)
        assert rbdc_tbdc([prediction], [masks], thresholds=ONE).region_rate[0] == float(detected)


@pytest.mark.parametrize("length, hits, detected", [(20, 2, True), (20, 1, False), (30, 3, True)])
def test_a_track_is_detected_when_alpha_of_its_regions_are(length, hits, detected):
    masks = _boxes(length, {f: (10, 16, 10 + f, 16 + f) for f in range(length)})
    prediction = np.zeros(masks.shape, np.float32)
    prediction[:hits] = masks[:hits]  # the first frames of the track only
    curves = rbdc_tbdc([prediction], [masks])
    assert curves.tracks == 1 and curves.regions == length
    assert curves.tbdc == float(detected)
    assert curves.rbdc == pytest.approx(hits / length)  # no false positive above the lowest threshold: flat


def test_tracks_link_regions_that_share_a_pixel_in_consecutive_frames():
    assert ground_truth_tracks(_walker())[1] == 1
    jump = _boxes(4, {0: (0, 5, 0, 5), 1: (0, 5, 1, 6), 2: (0, 5, 20, 25), 3: (0, 5, 21, 26)})
    assert ground_truth_tracks(jump)[1] == 2  # moved past its own extent: a new track
    gap = _boxes(5, {0: (0, 5, 0, 5), 1: (0, 5, 0, 5), 3: (0, 5, 0, 5), 4: (0, 5, 0, 5)})
    assert ground_truth_tracks(gap)[1] == 2  # a frame without it ends the track
    two = _walker() | _boxes(16, {f: (30, 35, 40, 45) for f in range(6)})
    tracks, n = ground_truth_tracks(two)
    assert n == 2 and set(np.unique(tracks[0])) == {0, 1, 2}
    diagonal = _boxes(2, {0: (0, 3, 0, 3), 1: (3, 6, 3, 6)})  # touching only corner to corner, across frames
    assert ground_truth_tracks(diagonal)[1] == 2


def test_two_objects_in_a_frame_are_two_regions_of_two_tracks():
    masks = _walker() | _boxes(16, {f: (30, 35, 40, 45) for f in range(12)})
    prediction = _walker().astype(np.float32)  # finds the walker only
    curves = rbdc_tbdc([prediction], [masks])
    assert (curves.regions, curves.tracks) == (24, 2)
    assert curves.rbdc == pytest.approx(0.5) and curves.tbdc == pytest.approx(0.5)


def test_the_area_reads_each_false_positive_level_at_its_best_rate():
    assert area_under_curve(np.array([0.0]), np.array([1.0])) == 1.0
    assert area_under_curve(np.array([0.5]), np.array([1.0])) == 0.75  # from the origin, then flat to 1
    assert area_under_curve(np.array([0.5, 0.8]), np.array([1.0, 0.2])) == 0.75  # a dominated point is passed over
    assert area_under_curve(np.array([2.0]), np.array([1.0])) == 0.25  # read at 1 false positive per frame
    assert area_under_curve(np.array([2.0]), np.array([1.0]), max_fp=2.0) == 0.5
    assert area_under_curve(np.array([1.0, 0.0]), np.array([0.0, 0.0])) == 0.0


def test_the_default_sweep_spans_the_maps_and_bad_input_is_named():
    masks = _walker()
    maps = np.where(masks, 0.9, 0.2).astype(np.float32)
    curves = rbdc_tbdc([maps], [masks])
    assert len(curves.thresholds) == DETECTION_THRESHOLDS
    assert curves.thresholds[0] == pytest.approx(0.2) and curves.thresholds[-1] == pytest.approx(0.9)
    assert len(detection_thresholds(0.3, 0.3)) == 1
    assert np.isnan(rbdc_tbdc([maps], [np.zeros_like(masks)]).rbdc)  # no ground-truth region: undefined
    with pytest.raises(ValueError, match="video 0: maps .* and masks"):
        rbdc_tbdc([maps[:3]], [masks])
    with pytest.raises(ValueError, match="non-finite"):
        detection_thresholds(0.0, float("nan"))
