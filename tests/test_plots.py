"""Plots and CSV files of the evaluation stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from PIL import Image

from pipeline.metrics import VideoScores
from pipeline.plots import (DPI, VIDEO_FIGSIZE, gt_intervals, plot_all_videos, plot_pr, plot_roc,
                            video_scores_figure, write_scores_csv, write_video_summary_csv)

XD_NAME = "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0"


def _videos():
    gt = np.zeros(64, dtype=np.uint8)
    gt[20:40] = 1
    return [VideoScores(XD_NAME, 1, "Shooting", np.array([0.1, 0.8, 0.9, 0.2]), gt),
            VideoScores("normal one", 0, "Normal", np.array([0.3, 0.1]), np.zeros(32, dtype=np.uint8))]


def test_gt_intervals_are_the_runs_of_ones():
    assert gt_intervals(np.array([1, 1, 0, 0, 1, 0, 1])) == [(0, 2), (4, 5), (6, 7)]
    assert gt_intervals(np.zeros(5)) == []


def test_video_figure_shades_each_gt_run(tmp_path):
    video = _videos()[0]
    fig = video_scores_figure(video, fps=16.0)
    spans = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]  # axvspan's patches
    assert [(p.get_x(), p.get_x() + p.get_width()) for p in spans] == [(20 / 16, 40 / 16)]  # frames [20, 40) at 16 fps


def test_one_png_per_video_with_safe_names(tmp_path):
    paths = plot_all_videos(_videos(), tmp_path / "videos")
    assert [p.name for p in paths] == ["Bad_Boys_1995___00-26-51_00-27-53_label_B2-0-0.png", "normal_one.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size == (VIDEO_FIGSIZE[0] * DPI, VIDEO_FIGSIZE[1] * DPI)


def test_curves_are_written(tmp_path):
    for plot, name in ((plot_roc, "roc.png"), (plot_pr, "pr.png")):
        path = plot(_videos(), tmp_path / name, title="t")
        with Image.open(path) as im:
            assert im.format == "PNG"


def test_csvs_have_a_row_per_snippet_and_per_video(tmp_path):
    scores = pd.read_csv(write_scores_csv(_videos(), tmp_path / "scores.csv"))
    assert len(scores) == 6
    first = scores[scores.video == XD_NAME]
    assert first.gt_fraction.tolist() == [0.0, 12 / 16, 8 / 16, 0.0]  # frames 20-39 of 16-frame snippets
    assert first.frame_end.tolist() == [16, 32, 48, 64]
    summary = pd.read_csv(write_video_summary_csv(_videos(), tmp_path / "videos.csv"))
    assert summary.n_snippets.tolist() == [4, 2] and summary.max_score.tolist() == [0.9, 0.3]
    assert np.isnan(summary.auc[1])  # undefined within a normal video: an empty cell
