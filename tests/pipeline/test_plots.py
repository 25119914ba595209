"""Plots and CSV files of the evaluation stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import pytest
from matplotlib.patches import StepPatch
from PIL import Image

from pipeline.evaluate.metrics import VideoScores
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pipeline.evaluate.plots import (CURVE_FIGSIZE, DPI, SCORE_LINEWIDTH, VIDEO_FIGSIZE, detection_figure, gt_intervals,
                            plot_all_videos, plot_pr, plot_roc, pr_figure, prevalence, roc_figure, safe_filename,
                            video_plot_names, video_scores_figure, write_scores_csv, write_video_summary_csv)

XD_NAME = "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0"


def _videos():
    gt = np.zeros(64, dtype=np.uint8)
    gt[20:40] = 1
    return [VideoScores(XD_NAME, 1, "Shooting", np.array([0.1, 0.8, 0.9, 0.2]), gt),
            VideoScores("normal one", 0, "Normal", np.array([0.3, 0.1]), np.zeros(32, dtype=np.uint8))]


def test_gt_intervals_are_the_runs_of_ones():
    assert gt_intervals(np.array([1, 1, 0, 0, 1, 0, 1])) == [(0, 2), (4, 5), (6, 7)]
    assert gt_intervals(np.zeros(5)) == []


def _span_extents(ax) -> list[tuple[float, float]]:
    """x extents of the axvspan patches (a Rectangle in matplotlib >= 3.9, a Polygon before); the score steps
    are a StepPatch and are skipped."""
    out = []
    for p in ax.patches:
        if isinstance(p, StepPatch):
            continue
        x = p.get_patch_transform().transform(p.get_path().vertices)[:, 0]
        out.append((float(x.min()), float(x.max())))
    return sorted(out)


def test_video_figure_shades_each_gt_run():
    video = _videos()[0]
    fig = video_scores_figure(video, fps=16.0)
    assert _span_extents(fig.axes[0]) == [(20 / 16, 40 / 16)]  # frames [20, 40) at 16 fps, in seconds


def test_video_figure_in_frames_with_threshold_and_unit_score_axis():
    gt = np.zeros(48, dtype=np.uint8)
    gt[0:5] = 1
    gt[30:48] = 1
    video = VideoScores("two runs", 1, "Fight", np.array([0.2, 0.6, 0.9]), gt)
    ax = video_scores_figure(video).axes[0]
    assert _span_extents(ax) == [(0.0, 5.0), (30.0, 48.0)] == [tuple(map(float, r)) for r in gt_intervals(gt)]
    low, high = ax.get_ylim()
    assert -0.05 < low < 0.0 and 1.0 < high < 1.05 and ax.get_xlim() == (0.0, 48.0)  # a margin around [0, 1]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and set(dashed[0].get_ydata()) == {0.5}
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    np.testing.assert_array_equal(steps[0].get_data().values, [0.2, 0.6, 0.9])
    np.testing.assert_array_equal(steps[0].get_data().edges, [0, 16, 32, 48])


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
            assert im.format == "PNG" and im.size == (CURVE_FIGSIZE[0] * DPI, CURVE_FIGSIZE[1] * DPI)


def test_csvs_have_a_row_per_snippet_and_per_video(tmp_path):
    scores = pd.read_csv(write_scores_csv(_videos(), tmp_path / "scores.csv"))
    assert len(scores) == 6
    first = scores[scores.video == XD_NAME]
    assert first.gt_fraction.tolist() == [0.0, 12 / 16, 8 / 16, 0.0]  # frames 20-39 of 16-frame snippets
    assert first.frame_end.tolist() == [16, 32, 48, 64]
    summary = pd.read_csv(write_video_summary_csv(_videos(), tmp_path / "videos.csv"))
    assert summary.n_snippets.tolist() == [4, 2] and summary.max_score.tolist() == [0.9, 0.3]
    assert np.isnan(summary.auc[1])  # undefined within a normal video: an empty cell
    # within the XD video: 20 positive frames (12 at 0.8, 8 at 0.9) against 44 negative ones (16 at 0.1, 4 at
    # 0.8, 8 at 0.9, 16 at 0.2), ties one half: (12 * (32 + 4 / 2) + 8 * (36 + 8 / 2)) / (20 * 44)
    assert summary.auc[0] == pytest.approx((12 * 34 + 8 * 40) / 880)


def test_colliding_and_duplicate_names(tmp_path):
    videos = [VideoScores(n, 0, "Normal", np.array([0.1]), np.zeros(16, dtype=np.uint8))
              for n in ("a b", "a#b", "A.B")]
    names = video_plot_names(videos)
    assert names[0] == "a_b.png" and len({n.lower() for n in names}) == 3  # distinct even case-insensitively
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    assert all(set(n.removesuffix(".png")) <= allowed for n in names)
    assert [p.name for p in plot_all_videos(videos, tmp_path / "v")] == names
    assert len(list((tmp_path / "v").iterdir())) == 3  # no temp file left behind either
    assert safe_filename("###") == "video"
    with pytest.raises(ValueError, match="duplicate video names"):
        video_plot_names(videos + videos[:1])


def test_undefined_curves_still_plot_and_pyplot_is_untouched(tmp_path):
    normal_only = [_videos()[1]]
    for plot, name in ((plot_roc, "roc.png"), (plot_pr, "pr.png")):
        with Image.open(plot(normal_only, tmp_path / name, title="no anomalies")) as im:
            assert im.format == "PNG"
    plot_all_videos(_videos(), tmp_path / "videos", fps_by_name={XD_NAME: 25.0})
    assert plt.get_fignums() == []  # figures are built without pyplot, so none is left registered there




def assert_legend_outside_axes(fig) -> None:
    """The figure is drawn; its one legend (axes or figure legend) overlaps no axes it could hide a curve in."""
    FigureCanvasAgg(fig)
    fig.set_dpi(DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *[ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]]
    assert len(legends) == 1
    legend = legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        area = ax.get_window_extent(renderer)
        assert not legend.overlaps(area), (legend, area)
        # and the figure shows all of it
        assert legend.x0 >= 0 and legend.y0 >= 0 and legend.x1 <= fig.bbox.x1 and legend.y1 <= fig.bbox.y1


def test_pr_plot_has_the_prevalence_as_its_chance_line():
    videos = _videos()  # 20 anomalous frames of 64 + 32
    assert prevalence(videos) == pytest.approx(20 / 96)
    ax = pr_figure(videos, title="t").axes[0]
    chance = [ln for ln in ax.get_lines() if ln.get_label().startswith("chance")]
    assert len(chance) == 1 and chance[0].get_linestyle() == "--"
    assert chance[0].get_label() == "chance (prevalence 20.8%)"
    np.testing.assert_allclose(chance[0].get_ydata(), 20 / 96)


def test_legends_never_cover_the_axes():
    videos = _videos()
    for fig in (roc_figure(videos, title="t"), pr_figure(videos, title="t"), video_scores_figure(videos[0]),
                detection_figure(np.array([0.0, 0.9, 0.01]), 50, 25.0, threshold=0.5, title="t")):
        assert_legend_outside_axes(fig)


def test_a_score_of_zero_is_drawn_above_the_axis_line():
    """A zero score lies inside the y-limits (not on the bottom spine) and its line is wide enough to see."""
    for fig in (video_scores_figure(VideoScores("zeros", 0, "Normal", np.zeros(3), np.zeros(48, dtype=np.uint8))),
                detection_figure(np.zeros(3), 48, 25.0, threshold=0.5, title="t")):
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        assert low < 0.0 < 1.0 < high
        steps = [p for p in ax.patches if isinstance(p, StepPatch)]
        assert steps and steps[0].get_linewidth() == SCORE_LINEWIDTH >= 1.5
        FigureCanvasAgg(fig)
        fig.canvas.draw()
        zero_px = ax.transData.transform((0, 0))[1]
        spine_px = ax.transData.transform((0, low))[1]
        assert zero_px - spine_px >= SCORE_LINEWIDTH * DPI / 72 / 2 + 1  # the line clears the axis line
