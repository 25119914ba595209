"""Plots and CSV files of the evaluation stage, as pure functions of ``VideoScores`` lists.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly: pyplot is never
imported, so no backend is switched, no global figure registry is touched and no figure outlives its function
(each one is cleared after saving). Every file is written atomically (``pipeline.atomic``).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc as _trapezoid_area

from data.decode import SNIPPET_FRAMES
from pipeline.atomic import atomic_write
from pipeline.evaluate.metrics import (
    FALSE_ALARM_THRESHOLD,
    VideoScores,
    check_video,
    pooled_frames,
    pr_points,
    roc_points,
    video_auc,
)

CURVE_FIGSIZE = (5.0, 5.0)  # inches, ROC and PR plots
VIDEO_FIGSIZE = (10.0, 3.0)  # inches, per-video score plots
DPI = 100  # PNG size in pixels = figsize * DPI
# Score axis of the per-video plots: [0, 1] with a small margin both sides, so a score of 0 (or 1) is drawn
# above (below) the axis line instead of on it, where it would disappear.
SCORE_MARGIN = 0.02
Y_LIMITS = (0.0 - SCORE_MARGIN, 1.0 + SCORE_MARGIN)
SCORE_LINEWIDTH = 2.0  # points: wide enough to read against the axis and the shaded ground truth
GT_COLOR = "tab:red"
GT_ALPHA = 0.2
SCORE_COLOR = "tab:blue"
CHANCE_COLOR = "gray"
CHANCE_LABEL = "chance (prevalence {:.1f}%)"  # the PR plot's baseline: precision of a score that knows nothing
# Legends sit outside the axes so that they can never hide a curve: right of a score plot, below a curve plot.
SCORE_LEGEND = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="small")
CURVE_LEGEND = dict(loc="outside lower center", fontsize="small")  # a figure legend (constrained layout)
SAFE_NAME_MAX = 150  # characters of a file stem derived from a video name
SAFE_NAME_HASH = 8  # hex digits of the name hash appended when two names make the same stem
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")  # everything else (dots, '#', spaces, slashes...) becomes '_'

SCORES_COLUMNS = ["video", "label", "class", "snippet", "frame_start", "frame_end", "score", "gt_fraction"]
SUMMARY_COLUMNS = ["video", "label", "class", "n_snippets", "max_score", "mean_score", "auc"]


# -- helpers -------------------------------------------------------------------------------------------------
def gt_intervals(gt: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of ``gt == 1`` in a frame ground truth ``[N]``, as ``(start, end)``, end exclusive."""
    g = np.asarray(gt).astype(bool).astype(np.int8)
    edges = np.diff(np.concatenate(([0], g, [0])))  # +1 where a run starts, -1 one past where it ends
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def safe_filename(name: str) -> str:
    """A file stem made of ``[A-Za-z0-9_-]`` only, from a video name (XD names contain '#', spaces and dots)."""
    stem = _UNSAFE.sub("_", name).strip("_")[:SAFE_NAME_MAX]
    return stem or "video"


def _save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    FigureCanvasAgg(fig)  # attach the Agg canvas to this figure only
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    finally:
        fig.clear()


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


# -- curves --------------------------------------------------------------------------------------------------
def plot_roc(videos: Sequence[VideoScores], path: str | os.PathLike, *, title: str) -> Path:
    """Pooled frame-level ROC curve, its AUC in the legend, and the chance diagonal; returns the PNG path."""
    return _save_figure(roc_figure(videos, title=title), path)


def roc_figure(videos: Sequence[VideoScores], *, title: str) -> Figure:
    """The figure that :func:`plot_roc` saves (exposed for tests)."""
    videos = list(videos)
    fpr, tpr = roc_points(videos)
    auc = float(_trapezoid_area(fpr, tpr)) if fpr.size else None  # equals frame_metrics()["auc"]
    fig = Figure(figsize=CURVE_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color=SCORE_COLOR, label=f"AUC = {_fmt(auc)}")
    ax.plot([0, 1], [0, 1], color=CHANCE_COLOR, linestyle="--", linewidth=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.set_aspect("equal")
    fig.legend(**CURVE_LEGEND)
    return fig


def prevalence(videos: Sequence[VideoScores]) -> float | None:
    """The share of anomalous frames over the pooled videos: the precision of a detector that knows nothing, so
    the PR plot's chance level (an AP of 0.11 is chance when 11 % of the frames are anomalous). None without
    frames."""
    gt, _ = pooled_frames(list(videos))
    return float(gt.mean()) if gt.size else None


def plot_pr(videos: Sequence[VideoScores], path: str | os.PathLike, *, title: str) -> Path:
    """Pooled frame-level precision-recall curve with AP (trapezoidal PR area) in the legend, and the chance level
    dashed (the prevalence of anomalous frames, :func:`prevalence`); returns the path."""
    return _save_figure(pr_figure(videos, title=title), path)


def pr_figure(videos: Sequence[VideoScores], *, title: str) -> Figure:
    """The figure that :func:`plot_pr` saves (exposed for tests)."""
    videos = list(videos)
    recall, precision = pr_points(videos)
    # Both equal frame_metrics()["ap"] and ["ap_average_precision"]; computed from the points, one pass.
    ap = float(_trapezoid_area(recall, precision)) if recall.size else None
    ap_step = float(-np.sum(np.diff(recall) * precision[:-1])) if recall.size else None
    fig = Figure(figsize=CURVE_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(recall, precision, color=SCORE_COLOR,
            label=f"AP = {_fmt(ap)} (step-wise {_fmt(ap_step)})")
    base = prevalence(videos)
    if base is not None:
        ax.axhline(base, color=CHANCE_COLOR, linestyle="--", linewidth=1, label=CHANCE_LABEL.format(100 * base))
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title=title)
    ax.set_aspect("equal")
    fig.legend(**CURVE_LEGEND)
    return fig


# -- one video -----------------------------------------------------------------------------------------------
def video_scores_figure(video: VideoScores, *, fps: float | None = None, title: str | None = None) -> Figure:
    """The figure that ``plot_video_scores`` saves (exposed for tests): scores over time, GT runs shaded.

    The frame scores are drawn as steps (snippet ``i`` covers frames ``[16i, 16i + 16)``); x is in frames, or in
    seconds (frame / fps) when ``fps`` is given. Each run of ``gt_intervals(video.gt)`` is one ``axvspan`` patch.
    """
    check_video(video)
    if fps is not None and not fps > 0:
        raise ValueError(f"video {video.name!r}: fps must be positive, got {fps!r}")
    scale = 1.0 if fps is None else 1.0 / fps
    edges = np.arange(video.n_snippets + 1) * SNIPPET_FRAMES * scale
    fig = Figure(figsize=VIDEO_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    for i, (start, end) in enumerate(gt_intervals(video.gt)):
        ax.axvspan(start * scale, end * scale, color=GT_COLOR, alpha=GT_ALPHA, linewidth=0,
                   label="ground truth" if i == 0 else None)
    ax.stairs(np.asarray(video.snippet_scores, dtype=np.float64), edges, color=SCORE_COLOR, label="score",
              linewidth=SCORE_LINEWIDTH)
    ax.axhline(FALSE_ALARM_THRESHOLD, color=CHANCE_COLOR, linestyle="--", linewidth=1,
               label=f"threshold {FALSE_ALARM_THRESHOLD:g}")
    ax.set(xlim=(edges[0], edges[-1]), ylim=Y_LIMITS, ylabel="anomaly score",
           xlabel="frame" if fps is None else "time (s)",
           title=title if title is not None else f"{video.name} ({video.class_name})")
    ax.legend(**SCORE_LEGEND)
    return fig


def plot_video_scores(video: VideoScores, path: str | os.PathLike, *, fps: float | None = None,
                      title: str | None = None) -> Path:
    """Frame scores of one video over time with its GT intervals shaded and the 0.5 threshold dashed; a PNG."""
    return _save_figure(video_scores_figure(video, fps=fps, title=title), path)


def unique_stems(names: Sequence[str]) -> list[str]:
    """File stems for distinct ``names``, safe and distinct (a name hash is appended when two stems collide)."""
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate video names: {dup}")
    used: set[str] = set()
    out = []
    for name in names:
        stem = safe_filename(name)
        if stem.lower() in used:  # case-insensitive file systems too
            stem = f"{stem}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:SAFE_NAME_HASH]}"
        used.add(stem.lower())
        out.append(stem)
    return out


def video_plot_names(videos: Sequence[VideoScores]) -> list[str]:
    """PNG file names for ``videos``, safe and distinct (a name hash is appended when two stems collide)."""
    return [f"{stem}.png" for stem in unique_stems([v.name for v in videos])]


def plot_detection(snippet_scores: np.ndarray, n_frames: int, fps: float, path: str | os.PathLike, *,
                   threshold: float, title: str) -> Path:
    """A new video's scores over time (``pipeline.detect``): snippet ``t`` covers frames ``[16t, 16t + 16)``, the
    last snippet's score extends over the trailing frames; x in seconds (frames when ``fps`` is unknown)."""
    return _save_figure(detection_figure(snippet_scores, n_frames, fps, threshold=threshold, title=title), path)


def detection_figure(snippet_scores: np.ndarray, n_frames: int, fps: float, *, threshold: float,
                     title: str) -> Figure:
    """The figure that :func:`plot_detection` saves (exposed for tests)."""
    scale = 1.0 / fps if fps > 0 else 1.0
    edges = np.arange(len(snippet_scores) + 1) * SNIPPET_FRAMES
    edges[-1] = max(edges[-1], n_frames)
    fig = Figure(figsize=VIDEO_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.stairs(np.asarray(snippet_scores, dtype=np.float64), edges * scale, color=SCORE_COLOR, label="score",
              linewidth=SCORE_LINEWIDTH)
    ax.axhline(threshold, color=CHANCE_COLOR, linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set(xlim=(0, edges[-1] * scale), ylim=Y_LIMITS, ylabel="anomaly score",
           xlabel="time (s)" if fps > 0 else "frame", title=title)
    ax.legend(**SCORE_LEGEND)
    return fig


def plot_all_videos(videos: Sequence[VideoScores], folder: str | os.PathLike, *,
                    fps_by_name: Mapping[str, float] | None = None) -> list[Path]:
    """One score plot per video in ``folder``, in the given order; x in seconds for names in ``fps_by_name``."""
    videos = list(videos)
    folder = Path(folder)
    fps_by_name = fps_by_name or {}
    return [plot_video_scores(v, folder / fname, fps=fps_by_name.get(v.name))
            for v, fname in zip(videos, video_plot_names(videos))]


# -- CSV -----------------------------------------------------------------------------------------------------
def _write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: f.write(frame.to_csv(index=False).encode("utf-8")))


def scores_table(videos: Sequence[VideoScores]) -> pd.DataFrame:
    """One row per snippet (``sum(T)`` rows): columns ``SCORES_COLUMNS``; ``frame_end`` is exclusive."""
    parts = []
    for v in videos:
        check_video(v)
        t = v.n_snippets
        starts = np.arange(t) * SNIPPET_FRAMES
        gt = np.asarray(v.gt, dtype=np.float64).reshape(t, SNIPPET_FRAMES)
        parts.append(pd.DataFrame({
            "video": [v.name] * t,
            "label": np.full(t, int(v.label)),
            "class": [v.class_name] * t,
            "snippet": np.arange(t),
            "frame_start": starts,
            "frame_end": starts + SNIPPET_FRAMES,
            "score": np.asarray(v.snippet_scores, dtype=np.float64),
            "gt_fraction": gt.mean(axis=1),
        }))
    if not parts:
        return pd.DataFrame(columns=SCORES_COLUMNS)
    return pd.concat(parts, ignore_index=True)[SCORES_COLUMNS]


def write_scores_csv(videos: Sequence[VideoScores], path: str | os.PathLike) -> Path:
    """Long-format CSV, one row per snippet: video,label,class,snippet,frame_start,frame_end (exclusive),score,
    gt_fraction (fraction of the snippet's 16 frames with gt 1)."""
    return _write_csv(scores_table(videos), path)


def summary_table(videos: Sequence[VideoScores]) -> pd.DataFrame:
    """One row per video: columns ``SUMMARY_COLUMNS``; ``auc`` (within the video) is None when undefined."""
    rows = []
    for v in videos:
        auc = video_auc(v)  # checks the video first
        scores = np.asarray(v.snippet_scores, dtype=np.float64)
        rows.append({"video": v.name, "label": int(v.label), "class": v.class_name, "n_snippets": v.n_snippets,
                     "max_score": float(scores.max()), "mean_score": float(scores.mean()), "auc": auc})
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    # keep None (an empty CSV cell) rather than the NaN pandas would put in a float column
    frame["auc"] = pd.Series([r["auc"] for r in rows], index=frame.index, dtype=object)
    return frame


def write_video_summary_csv(videos: Sequence[VideoScores], path: str | os.PathLike) -> Path:
    """CSV, one row per video: video,label,class,n_snippets,max_score,mean_score,auc (empty when undefined)."""
    return _write_csv(summary_table(videos), path)
