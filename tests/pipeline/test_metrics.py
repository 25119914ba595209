"""Frame-level metrics of method.md §7 against hand computations."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from pipeline.evaluate.metrics import VideoScores, frame_metrics, pr_points, roc_points


def _video(name, label, scores, gt_snippets, class_name=None):
    """gt given per snippet (each value repeated over its 16 frames) unless already 16*T long."""
    gt = np.asarray(gt_snippets, dtype=np.uint8)
    if len(gt) == len(scores):
        gt = np.repeat(gt, 16)
    return VideoScores(name, label, class_name or ("Anomaly" if label else "Normal"), np.asarray(scores, float), gt)


def _pairwise_auc(gt: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive frame outscores a random negative one, ties counted one half."""
    pos, neg = scores[gt == 1], scores[gt == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_frame_scores_repeat_each_snippet_16_times():
    v = _video("a", 1, [0.1, 0.7], [0, 1])
    np.testing.assert_array_equal(v.frame_scores, [0.1] * 16 + [0.7] * 16)


def test_pooled_auc_equals_the_pairwise_definition():
    videos = [_video("a", 1, [0.2, 0.9, 0.4], [0, 1, 0]), _video("b", 0, [0.3, 0.1], [0, 0]),
              _video("c", 1, [0.5, 0.5, 0.8, 0.1], [0, 1, 1, 0], "Fight")]
    m = frame_metrics(videos)
    gt = np.concatenate([v.gt for v in videos])
    scores = np.concatenate([v.frame_scores for v in videos])
    assert m["auc"] == pytest.approx(_pairwise_auc(gt, scores))
    assert m["n_frames"] == 16 * 9 == len(gt) and m["n_anomalous_frames"] == 16 * 3 and m["n_videos"] == 3


def test_auc_is_pooled_not_an_average_over_videos():
    # Each anomalous video ranks its own frames perfectly, but video b's normal frames outscore a's anomalies.
    a = _video("a", 1, [0.1, 0.3], [0, 1])
    b = _video("b", 1, [0.6, 0.9], [0, 1])
    m = frame_metrics([a, b])
    assert m["auc"] == pytest.approx(0.75)  # pooled: 3 of the 4 (anomalous, normal) snippet pairs ordered right
    assert np.mean([1.0, 1.0]) != m["auc"]


def test_ap_is_the_area_under_the_pr_points():
    videos = [_video("a", 1, [0.9, 0.8, 0.3], [1, 0, 1]), _video("n", 0, [0.1], [0])]
    m = frame_metrics(videos)
    # Thresholds 0.9, 0.8, 0.3, 0.1 give (recall, precision): (0.5, 1), (0.5, 0.5), (1, 2/3), (1, 0.5); sklearn
    # starts the curve at (0, 1). Trapezoid over recall: 0.5 * (1 + 1) / 2 + 0.5 * (0.5 + 2/3) / 2.
    assert m["ap"] == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert m["ap_average_precision"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # step-wise
    recall, precision = pr_points(videos)
    assert recall[0] == 1.0 and precision[-1] == 1.0


def test_false_alarms_count_normal_frames_at_or_above_the_threshold():
    videos = [_video("n1", 0, [0.5, 0.49, 0.2, 0.7], [0, 0, 0, 0]), _video("a", 1, [0.9], [1])]
    m = frame_metrics(videos)
    assert m["false_alarm_rate_normal"] == pytest.approx(2 / 4) and m["threshold"] == 0.5


def test_anomalous_only_and_per_class_auc():
    fight = _video("f", 1, [0.9, 0.2], [1, 0], "Fight")
    fall = _video("g", 1, [0.4, 0.6], [1, 0], "Fall")
    normal = _video("n", 0, [0.5, 0.1], [0, 0])
    m = frame_metrics([fight, fall, normal])
    assert m["auc_anomalous_videos"] == pytest.approx(_pairwise_auc(
        np.concatenate([fight.gt, fall.gt]), np.concatenate([fight.frame_scores, fall.frame_scores])))
    # per class: that class's anomalous videos plus every normal video
    assert m["per_class_auc"]["Fight"] == pytest.approx(_pairwise_auc(
        np.concatenate([fight.gt, normal.gt]), np.concatenate([fight.frame_scores, normal.frame_scores])))
    assert m["per_class_auc"]["Fall"] == pytest.approx(1 / 3)
    assert "Normal" not in m["per_class_auc"]


def test_undefined_metrics_are_none():
    m = frame_metrics([_video("n", 0, [0.2, 0.3], [0, 0])])
    assert m["auc"] is None and m["ap"] is None and m["auc_anomalous_videos"] is None
    assert m["false_alarm_rate_normal"] == 0.0


def test_ground_truth_must_have_16_frames_per_snippet():
    bad = VideoScores("Abuse028_x264", 1, "Abuse", np.array([0.1, 0.2]), np.zeros(33, dtype=np.uint8))
    with pytest.raises(ValueError, match="Abuse028_x264.*16 \\* T = 32"):
        frame_metrics([bad])


def test_pooled_auc_matches_pairwise_on_a_random_tied_example():
    rng = np.random.default_rng(0)
    videos = []
    for i in range(4):
        t = int(rng.integers(2, 5))
        gt = np.zeros(16 * t, dtype=np.uint8)
        if i % 2 == 0:
            gt[5:5 + 16 * (t - 1)] = 1  # interval not aligned to snippets: partial snippets on both ends
        # scores rounded to one decimal so that ties across videos occur
        videos.append(VideoScores(f"v{i}", 1 - i % 2, "Fight" if i % 2 == 0 else "Normal",
                                  np.round(rng.random(t), 1), gt))
    gt = np.concatenate([v.gt for v in videos])
    frames = np.array([s for v in videos for s in v.snippet_scores for _ in range(16)])  # expanded by loops
    assert frame_metrics(videos)["auc"] == pytest.approx(_pairwise_auc(gt, frames))


def test_undefined_metrics_are_none_and_the_result_is_strict_json():
    only_anomalous = [_video("a", 1, [0.2, 0.9], [1, 1], "Fight")]  # positives only, no normal video
    m = frame_metrics(only_anomalous)
    assert m["auc"] is None and m["auc_anomalous_videos"] is None and m["per_class_auc"] == {"Fight": None}
    assert m["false_alarm_rate_normal"] is None  # no normal frame to raise an alarm on
    assert m["ap"] == pytest.approx(1.0)  # precision is 1 at every threshold: defined, trivially
    json.dumps(m, allow_nan=False)
    empty = frame_metrics([])
    assert empty["auc"] is None and empty["ap"] is None and empty["n_frames"] == 0
    assert roc_points(only_anomalous)[0].size == 0 and pr_points([_video("n", 0, [0.1], [0])])[0].size == 0


def test_roc_points_span_the_unit_square():
    fpr, tpr = roc_points([_video("a", 1, [0.2, 0.9], [0, 1]), _video("n", 0, [0.5], [0])])
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


@pytest.mark.parametrize("video, message", [
    (VideoScores("Normal_Videos_003_x264", 0, "Normal", np.array([0.1]), np.ones(16, dtype=np.uint8)),
     "Normal_Videos_003_x264.*anomalous ground-truth frames"),
    (VideoScores("Arson011_x264", 1, "Normal", np.array([0.1]), np.ones(16, dtype=np.uint8)),
     "Arson011_x264.*cannot have class_name"),
    (VideoScores("Arson012_x264", 1, "Arson", np.array([0.1, np.nan]), np.ones(32, dtype=np.uint8)),
     "Arson012_x264.*NaN"),
    (VideoScores("Arson013_x264", 1, "Arson", np.array([0.1]), np.full(16, 2, dtype=np.uint8)),
     "Arson013_x264.*only 0 and 1"),
])
def test_inconsistent_videos_are_rejected_by_name(video, message):
    with pytest.raises(ValueError, match=message):
        frame_metrics([_video("ok", 0, [0.1], [0]), video])


def test_smoothing_is_a_centred_moving_mean_that_averages_what_the_window_holds_at_the_ends():
    from pipeline.evaluate.metrics import smooth_snippet_scores

    scores = np.array([0.0, 3.0, 0.0, 0.0, 6.0])
    assert smooth_snippet_scores(scores, 1).tolist() == scores.tolist()
    np.testing.assert_allclose(smooth_snippet_scores(scores, 3), [1.5, 1.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(smooth_snippet_scores(scores, 5), [1.0, 0.75, 1.8, 2.25, 2.0])
    np.testing.assert_allclose(smooth_snippet_scores(np.full(4, 0.3), 3), np.full(4, 0.3))  # constant stays
    assert smooth_snippet_scores(np.array([0.7]), 3).tolist() == [0.7]
    for window in (0, 2, -1):
        with pytest.raises(ValueError, match="odd"):
            smooth_snippet_scores(scores, window)


def test_smoothing_keeps_each_video_to_itself():
    """A high last snippet of one video must not leak into the next video's first frames."""
    from pipeline.evaluate.metrics import smoothed

    a = _video("a", 1, [0.0, 0.0, 0.9], [0, 0, 1])
    b = _video("b", 0, [0.1, 0.1], [0, 0])
    sa, sb = smoothed([a, b], 3)
    np.testing.assert_allclose(sa.snippet_scores, [0.0, 0.3, 0.45])
    np.testing.assert_allclose(sb.snippet_scores, [0.1, 0.1])
    assert (sa.gt == a.gt).all() and a.snippet_scores.tolist() == [0.0, 0.0, 0.9]  # the input is left as it was
