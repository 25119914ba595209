"""Frame-level metrics of the evaluation stage, as pure functions (method.md §7, the RTFM-family protocol).

Every test video contributes ``16 * T`` frames: its ``T`` snippet scores, each repeated 16 times, against its
frame ground truth of the same length. All videos are concatenated in the order given (the caller passes the
dataset's canonical test-list order) and the metrics are computed on that **pooled** sequence; they are not
averages of per-video metrics.

A metric that is undefined on the given frames (e.g. a ROC-AUC when only one class of frames is present) is
``None``, never NaN, and never an exception, so that the result is always valid JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from sklearn.metrics import auc as _trapezoid_area
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

# a normal-video frame with score >= this counts as a false alarm; defined with the command line's defaults
from pipeline.defaults import FALSE_ALARM_THRESHOLD  # noqa: F401

from data.decode import SNIPPET_FRAMES  # every snippet score is repeated this many times

NORMAL_CLASS = "Normal"  # class_name of every normal (label 0) video
PER_CLASS_PROTOCOL = (
    "per class C: pooled frame-level ROC-AUC over the frames of the anomalous videos of class C "
    "concatenated with the frames of all normal videos, in the given order"
)


@dataclass
class VideoScores:
    """One test video's scores and frame ground truth.

    ``snippet_scores``: float ``[T]``, one score per 16-frame snippet (crops already averaged).
    ``gt``: uint8 ``[16 * T]``, frame ground truth (1 = anomalous frame), already truncated to ``16 * T``.
    ``label``: 1 for an anomalous video, 0 for a normal one; ``class_name`` is ``"Normal"`` for normal videos.
    """

    name: str
    label: int
    class_name: str
    snippet_scores: np.ndarray
    gt: np.ndarray

    @property
    def n_snippets(self) -> int:
        """``T``."""
        return int(np.asarray(self.snippet_scores).shape[0])

    @property
    def frame_scores(self) -> np.ndarray:
        """float ``[16 * T]``: each snippet score repeated 16 times (snippet ``i`` covers frames ``16i .. 16i+15``)."""
        return np.repeat(np.asarray(self.snippet_scores, dtype=np.float64), SNIPPET_FRAMES)


def check_smoothing_window(window: int) -> None:
    """Raise ``ValueError`` unless ``window`` is an odd number of snippets >= 1 (a centred window)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"the smoothing window must be an odd number of snippets >= 1 (1: none), got {window}")


def smooth_snippet_scores(scores: np.ndarray, window: int) -> np.ndarray:
    """float ``[T]`` -> ``[T]``: the centred moving mean over ``window`` (odd, >= 1) snippets; near a video's ends
    the mean of the snippets the window holds (no padding), so a constant sequence stays constant."""
    check_smoothing_window(window)
    x = np.asarray(scores, dtype=np.float64)
    half = window // 2
    sums = np.concatenate([[0.0], np.cumsum(x)])
    index = np.arange(len(x))
    low, high = np.maximum(index - half, 0), np.minimum(index + half + 1, len(x))
    return (sums[high] - sums[low]) / (high - low)


def smoothed(videos: Sequence[VideoScores], window: int) -> list[VideoScores]:
    """``videos`` with each one's snippet scores smoothed over ``window`` snippets (:func:`smooth_snippet_scores`),
    each video on its own."""
    return [replace(v, snippet_scores=smooth_snippet_scores(v.snippet_scores, window)) for v in videos]


def check_video(video: VideoScores) -> None:
    """Raise ``ValueError`` naming the video when its arrays break the protocol.

    Checks: ``snippet_scores`` is 1-D, non-empty and finite; ``gt`` is 1-D with ``len(gt) == 16 * T`` and only
    0/1 values; ``label`` is 0 or 1; normal videos (label 0) have class ``"Normal"`` and no anomalous frame;
    anomalous videos (label 1) have a class other than ``"Normal"``.
    """
    scores = np.asarray(video.snippet_scores)
    gt = np.asarray(video.gt)
    where = f"video {video.name!r}"
    if scores.ndim != 1 or gt.ndim != 1:
        raise ValueError(f"{where}: snippet_scores must be [T] and gt [16*T], got shapes {scores.shape} and "
                         f"{gt.shape}")
    if scores.shape[0] == 0:
        raise ValueError(f"{where}: no snippets (T == 0)")
    if len(gt) != SNIPPET_FRAMES * len(scores):
        raise ValueError(f"{where}: len(gt) = {len(gt)} but 16 * T = {SNIPPET_FRAMES * len(scores)} "
                         f"(T = {len(scores)} snippets); build gt from the feature file's T and truncate it")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{where}: snippet_scores contain NaN or inf")
    if not np.all((gt == 0) | (gt == 1)):
        raise ValueError(f"{where}: gt must contain only 0 and 1")
    if video.label not in (0, 1):
        raise ValueError(f"{where}: label must be 0 (normal) or 1 (anomalous), got {video.label!r}")
    if video.label == 0 and video.class_name != NORMAL_CLASS:
        raise ValueError(f"{where}: a normal video (label 0) must have class_name {NORMAL_CLASS!r}, "
                         f"got {video.class_name!r}")
    if video.label == 1 and video.class_name == NORMAL_CLASS:
        raise ValueError(f"{where}: an anomalous video (label 1) cannot have class_name {NORMAL_CLASS!r}")
    if video.label == 0 and gt.any():
        raise ValueError(f"{where}: a normal video (label 0) has {int(gt.sum())} anomalous ground-truth frames")


def pooled_frames(videos: Sequence[VideoScores]) -> tuple[np.ndarray, np.ndarray]:
    """Check every video, then concatenate in the given order: ``(gt uint8 [N], scores float [N])``, N = 16*sum(T)."""
    for video in videos:
        check_video(video)
    if not videos:
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.float64)
    gt = np.concatenate([np.asarray(v.gt, dtype=np.uint8) for v in videos])
    scores = np.concatenate([v.frame_scores for v in videos])
    total_snippets = sum(v.n_snippets for v in videos)
    if len(gt) != SNIPPET_FRAMES * total_snippets or len(scores) != len(gt):
        raise ValueError(f"pooled ground truth has {len(gt)} frames and pooled scores {len(scores)}, "
                         f"expected 16 * sum(T) = {SNIPPET_FRAMES * total_snippets}")
    return gt, scores


def _both_classes(gt: np.ndarray) -> bool:
    return bool(gt.any()) and not bool(gt.all())


def _roc_auc(gt: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC (ties count one half), ``None`` unless both classes are present."""
    return float(roc_auc_score(gt, scores)) if _both_classes(gt) else None


def _pr_area(gt: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None]:
    """``(trapezoidal PR area, step-wise average precision)``; ``None`` without any positive frame.

    Precision/recall need at least one positive; with positives only, both are (trivially) 1.0.
    """
    if not gt.any():
        return None, None
    # The XD-Violence community (Wu et al. 2020 and the RTFM family after it) reports the trapezoidal area under
    # the PR points: `precision_recall_curve` then `auc(recall, precision)`, which joins consecutive points with
    # straight lines (not achievable operating points; Davis & Goadrich 2006). sklearn's
    # `average_precision_score` is the step-wise sum sum_n (R_n - R_{n-1}) * P_n, precision held constant
    # between recall levels. Neither is always the larger; the gap grows when the curve has few points (few
    # distinct scores). `ap` is the trapezoid, comparable with the papers; both are reported.
    precision, recall, _ = precision_recall_curve(gt, scores)
    return float(_trapezoid_area(recall, precision)), float(average_precision_score(gt, scores))


def video_auc(video: VideoScores) -> float | None:
    """Frame-level ROC-AUC within one video, ``None`` when the video has only one class of frames."""
    check_video(video)
    return _roc_auc(np.asarray(video.gt, dtype=np.uint8), video.frame_scores)


def frame_metrics(videos: Sequence[VideoScores], *, threshold: float = FALSE_ALARM_THRESHOLD) -> dict:
    """Pooled frame-level metrics over ``videos`` concatenated in the given (canonical test-list) order.

    Raises ``ValueError`` naming the video when ``len(gt) != 16 * T`` (or another check of ``check_video``
    fails). Returns a JSON-able dict:

    - ``auc``: pooled frame-level ROC-AUC over all frames (UCF-Crime, ShanghaiTech).
    - ``ap``: trapezoidal area under the pooled precision-recall curve, as the XD-Violence community computes
      it; ``ap_average_precision``: sklearn's step-wise ``average_precision_score`` on the same frames.
    - ``auc_anomalous_videos``: pooled ROC-AUC over the frames of the anomalous videos only.
    - ``false_alarm_rate_normal``: fraction of normal-video frames with score ``>= threshold``; ``threshold``.
    - ``per_class_auc``: ``{class: AUC}`` for every class other than ``"Normal"``, protocol in
      ``per_class_protocol`` (the class's anomalous videos plus all normal videos).
    - ``n_videos``, ``n_anomalous_videos``, ``n_frames``, ``n_anomalous_frames``.

    Undefined metrics are ``None``.
    """
    videos = list(videos)
    gt, scores = pooled_frames(videos)
    labels = np.array([v.label for v in videos], dtype=np.int64)
    frames_per_video = np.array([SNIPPET_FRAMES * v.n_snippets for v in videos], dtype=np.int64)
    video_of_frame = np.repeat(np.arange(len(videos)), frames_per_video)  # [N] index of each frame's video
    anomalous_frame_of_video = np.repeat(labels == 1, frames_per_video)  # [N] frame belongs to a label-1 video
    normal_video_frame = ~anomalous_frame_of_video

    ap, ap_step = _pr_area(gt, scores)
    normal_scores = scores[normal_video_frame]

    per_class: dict[str, float | None] = {}
    for class_name in sorted({v.class_name for v in videos if v.label == 1}):
        in_class = np.array([v.label == 1 and v.class_name == class_name for v in videos], dtype=bool)
        mask = in_class[video_of_frame] | normal_video_frame
        per_class[class_name] = _roc_auc(gt[mask], scores[mask])

    return {
        "auc": _roc_auc(gt, scores),
        "ap": ap,
        "ap_average_precision": ap_step,
        "auc_anomalous_videos": _roc_auc(gt[anomalous_frame_of_video], scores[anomalous_frame_of_video]),
        "false_alarm_rate_normal": float(np.mean(normal_scores >= threshold)) if normal_scores.size else None,
        "threshold": float(threshold),
        "per_class_auc": per_class,
        "per_class_protocol": PER_CLASS_PROTOCOL,
        "n_videos": len(videos),
        "n_anomalous_videos": int(np.sum(labels == 1)),
        "n_frames": int(len(gt)),
        "n_anomalous_frames": int(gt.sum()),
    }


def roc_points(videos: Sequence[VideoScores]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled ROC curve ``(fpr [K], tpr [K])``; two empty arrays when only one class of frames is present."""
    gt, scores = pooled_frames(list(videos))
    if not _both_classes(gt):
        return np.zeros(0), np.zeros(0)
    fpr, tpr, _ = roc_curve(gt, scores)
    return fpr, tpr


def pr_points(videos: Sequence[VideoScores]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled precision-recall curve ``(recall [K], precision [K])``; empty arrays without positive frames."""
    gt, scores = pooled_frames(list(videos))
    if not gt.any():
        return np.zeros(0), np.zeros(0)
    precision, recall, _ = precision_recall_curve(gt, scores)
    return recall, precision
