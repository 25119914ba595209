"""Where, not only when: localisation metrics of per-snippet anomaly maps against pixel masks.

A model's map of one snippet is a grid of cell scores ``[rows, cols]`` laid evenly over the whole frame (the cells of
a backbone's last feature map in the full view). A snippet's ground truth is the union of its 16 frames' pixel masks
``[H, W]`` (:mod:`data.pixel_masks`); the snippets of a video are frames ``[16 t, 16 t + 16)``, as everywhere in the
project, and frames past the last whole snippet are left out. Both metrics use the snippets with an anomalous pixel
unless said otherwise.

- :func:`pointing_game`: the share of anomalous snippets whose highest-scoring cell covers an anomalous pixel, and
  its chance level, the mean share of cells that do (a map pointing at random). On UCSD Ped1's six spatially
  annotated clips of the weak split's test half, 7 x 11 cells (I3D's Mixed_5c in the full view): 51 snippets,
  chance 0.071.
- :func:`pixel_auc`: ROC AUC of every pixel of every snippet (normal snippets included: a map must stay low there
  too), the cell maps upsampled bilinearly to the frame (``align_corners=False``, as torch's ``interpolate``).
- RBDC and TBDC (:mod:`pipeline.evaluate.detection_criteria`): objects found as regions, frame by frame, against
  false positives per frame; each frame is compared with its snippet's upsampled map.
- :func:`localization_report`: all four over a run's maps, as a JSON-able dict (:data:`REPORT_KEYS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from data.decode import SNIPPET_FRAMES
from pipeline.evaluate.detection_criteria import (DETECTION_THRESHOLDS, MAX_FP_PER_FRAME, RBDC_BETA, TBDC_ALPHA,
                                                  DetectionCounter, detection_thresholds)


def snippet_masks(frame_masks: np.ndarray, snippet_frames: int = SNIPPET_FRAMES) -> np.ndarray:
    """bool ``[T, H, W]`` -> bool ``[T // snippet_frames, H, W]``: each snippet's union of its frames' masks."""
    n = frame_masks.shape[0] // snippet_frames
    return frame_masks[:n * snippet_frames].reshape(n, snippet_frames, *frame_masks.shape[1:]).any(axis=1)


def cell_edges(size: int, cells: int) -> np.ndarray:
    """The pixel boundaries of ``cells`` even cells over ``size`` pixels: ``[cells + 1]`` (rounded)."""
    return np.linspace(0, size, cells + 1).round().astype(int)


def cells_on_anomaly(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """bool ``[H, W]`` -> bool ``[rows, cols]``: the cells holding at least one anomalous pixel."""
    ys, xs = cell_edges(mask.shape[0], grid[0]), cell_edges(mask.shape[1], grid[1])
    return np.array([[mask[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].any() for j in range(grid[1])]
                     for i in range(grid[0])])


@dataclass(frozen=True)
class PointingGame:
    """``hits`` of ``n`` anomalous snippets (``rate`` = hits / n) and ``chance``, the rate of a random cell."""

    hits: float
    n: int
    chance: float

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else float("nan")


def pointing_game(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> PointingGame:
    """``maps``: per video ``[S, rows, cols]`` cell scores; ``masks``: per video bool ``[S, H, W]`` snippet masks
    (:func:`snippet_masks`), the same S. A tie for the highest cell counts the share of the tied cells that cover
    an anomalous pixel (what a random pick among them hits on average), so a flat map scores exactly the chance
    level instead of hitting wherever the first cell happens to lie."""
    hits, n, chances = 0.0, 0, []
    for video_maps, video_masks in zip(maps, masks, strict=True):
        if len(video_maps) != len(video_masks):
            raise ValueError(f"{len(video_maps)} maps for {len(video_masks)} snippet masks")
        for cell_map, mask in zip(video_maps, video_masks):
            if not mask.any():
                continue
            on = cells_on_anomaly(mask, cell_map.shape)
            hits += float(on[cell_map == cell_map.max()].mean())
            n += 1
            chances.append(on.mean())
    return PointingGame(hits, n, float(np.mean(chances)) if chances else float("nan"))


def upsample(cell_maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[S, rows, cols]`` -> ``[S, H, W]``, bilinear (``align_corners=False``)."""
    x = torch.as_tensor(np.asarray(cell_maps, dtype=np.float32))[:, None]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def pixel_auc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """ROC AUC over every pixel of every snippet: ``maps`` per video ``[S, rows, cols]``, ``masks`` per video bool
    ``[S, H, W]``. NaN when the pixels are all of one class."""
    scores, labels = [], []
    for video_maps, video_masks in zip(maps, masks, strict=True):
        if len(video_maps) != len(video_masks):
            raise ValueError(f"{len(video_maps)} maps for {len(video_masks)} snippet masks")
        scores.append(upsample(video_maps, video_masks.shape[1:]).ravel())
        labels.append(np.asarray(video_masks, dtype=bool).ravel())
    y = np.concatenate(labels)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.concatenate(scores)))


# The keys of :func:`localization_report`'s dict (JSON-able; an undefined metric is None, never NaN).
REPORT_KEYS = {
    "videos": "names of the videos used, in the order given",
    "masked_videos": "how many of them have a pixel mask",
    "normal_videos": "how many are normal videos without a mask, taken whole as normal (frame labels all 0)",
    "left_out": "name -> why, for each video of the maps not used",
    "grid": "[rows, cols] of the cell maps",
    "snippet_frames": "frames per snippet (each snippet map covers frames [s t, s t + s))",
    "snippets": "snippets used (pixel AUC)",
    "anomalous_snippets": "snippets with an anomalous pixel (the pointing game)",
    "frames": "frames used (RBDC, TBDC: false positives per frame over all of them)",
    "anomalous_frames": "frames with an anomalous pixel",
    "pixel_auc": "ROC AUC of every pixel of every snippet, maps upsampled bilinearly",
    "pointing_game": "share of anomalous snippets whose top cell covers an anomalous pixel",
    "pointing_game_hits": "its hits (a tie for the top cell counts the share of the tied cells that hit)",
    "pointing_game_chance": "the rate of a cell picked at random",
    "rbdc": "region-based detection criterion: area under region detection rate vs false positives per frame",
    "tbdc": "track-based detection criterion: area under track detection rate vs false positives per frame",
    "regions": "ground-truth regions (connected components of each frame's mask)",
    "tracks": "ground-truth tracks (regions linked through consecutive frames by a shared pixel)",
    "beta": "IoU at which a predicted region detects a ground-truth region",
    "alpha": "share of a track's regions that must be detected",
    "max_fp_per_frame": "the curves' area is over false positives per frame in [0, this], divided by it",
    "curves": "per threshold (ascending): thresholds, fp_per_frame, region_rate, track_rate",
}


def localization_report(maps: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                        frame_labels: dict[str, np.ndarray] | None = None, *,
                        frame_size: tuple[int, int] | None = None, snippet_frames: int = SNIPPET_FRAMES,
                        thresholds: int = DETECTION_THRESHOLDS, beta: float = RBDC_BETA,
                        alpha: float = TBDC_ALPHA, max_fp_per_frame: float = MAX_FP_PER_FRAME) -> dict:
    """Every localisation metric of a run's cell maps, as a JSON-able dict (keys: :data:`REPORT_KEYS`).

    ``maps``: video name -> float ``[S, rows, cols]`` snippet maps (cells row-major over the whole frame, one grid
    for all); ``masks``: name -> bool ``[T, H, W]`` frame masks (:func:`data.pixel_masks.load_pixel_masks`; masks of
    videos without maps are ignored); ``frame_labels``: name -> ``[T]`` 0/1 frame labels, optional.

    The videos used are those of ``maps`` with a mask and, given ``frame_labels``, the normal ones (no anomalous
    frame) without a mask, whose every pixel is normal, at ``frame_size`` (default: the masks' size when they share
    one); they add false positives, normal pixels and frames. Snippet s covers frames ``[16 s, 16 s + 16)``: a
    video's ``16 S`` frames are used and the frames past them (past the last whole snippet, or past the features'
    end) are left out, as the evaluation cuts its ground truth; a mask shorter than ``16 S`` frames leaves its video
    out (named in ``left_out``). Pixel AUC and the pointing game compare each snippet's map with the union of its
    frames' masks (:func:`pixel_auc`, :func:`pointing_game`); RBDC and TBDC compare each frame's mask with its
    snippet's map upsampled to the frame (:mod:`pipeline.evaluate.detection_criteria`), ``thresholds`` thresholds
    evenly spaced over the upsampled maps' values. Raises ValueError for maps or masks of the wrong rank, or maps of
    several grids."""
    used, left_out = _report_videos(maps, masks, frame_labels, frame_size, snippet_frames)
    grids = {m.shape[1:] for _, m, _ in used}
    if len(grids) > 1:
        raise ValueError(f"the maps have several grids ({sorted(grids)}); a report compares maps of one grid")
    cell_maps = [m for _, m, _ in used]
    snippets = [snippet_masks(mask, snippet_frames) for _, _, mask in used]
    game = pointing_game(cell_maps, snippets)
    counter = None
    if used:
        # over the upsampled maps, whose values may round past the cells' by a float32 ulp
        ranges = [(float(up.min()), float(up.max())) for up in (upsample(m, mask.shape[1:]) for _, m, mask in used)]
        sweep = detection_thresholds(min(low for low, _ in ranges), max(high for _, high in ranges), thresholds)
        counter = DetectionCounter(sweep, beta=beta, alpha=alpha)
        for name, m, mask in used:
            counter.add(_frame_maps(m, mask.shape[1:], snippet_frames), mask, name)
    curves = counter.curves(max_fp_per_frame) if counter else None
    return {
        "videos": [name for name, _, _ in used],
        "masked_videos": sum(1 for name, _, _ in used if name in masks),
        "normal_videos": sum(1 for name, _, _ in used if name not in masks),
        "left_out": left_out,
        "grid": list(next(iter(grids))) if grids else None,
        "snippet_frames": snippet_frames,
        "snippets": sum(len(s) for s in snippets),
        "anomalous_snippets": game.n,
        "frames": sum(len(mask) for _, _, mask in used),
        "anomalous_frames": sum(int(mask.any(axis=(1, 2)).sum()) for _, _, mask in used),
        "pixel_auc": _finite(pixel_auc(cell_maps, snippets)) if used else None,
        "pointing_game": _finite(game.rate),
        "pointing_game_hits": game.hits,
        "pointing_game_chance": _finite(game.chance),
        "rbdc": _finite(curves.rbdc) if curves else None,
        "tbdc": _finite(curves.tbdc) if curves else None,
        "regions": curves.regions if curves else 0,
        "tracks": curves.tracks if curves else 0,
        "beta": beta,
        "alpha": alpha,
        "max_fp_per_frame": max_fp_per_frame,
        "curves": {key: [_finite(v) for v in getattr(curves, key)] if curves else []
                   for key in ("thresholds", "fp_per_frame", "region_rate", "track_rate")},
    }


def _report_videos(maps: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                   frame_labels: dict[str, np.ndarray] | None, frame_size: tuple[int, int] | None,
                   snippet_frames: int) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], dict[str, str]]:
    """The videos a report uses, as (name, float32 ``[S, rows, cols]`` maps, bool ``[16 S, H, W]`` frame masks),
    and name -> why for the others."""
    sizes = {np.shape(m)[1:] for m in masks.values()}
    normal_size = tuple(frame_size) if frame_size else (next(iter(sizes)) if len(sizes) == 1 else None)
    used, left_out = [], {}
    for name, video_maps in maps.items():
        video_maps = np.asarray(video_maps, np.float32)
        if video_maps.ndim != 3:
            raise ValueError(f"{name}: maps must be [snippets, rows, cols], got shape {video_maps.shape}")
        frames = len(video_maps) * snippet_frames
        if not frames:
            left_out[name] = "no snippet map"
        elif name in masks:
            mask = np.asarray(masks[name], bool)
            if mask.ndim != 3:
                raise ValueError(f"{name}: a pixel mask must be [frames, H, W], got shape {mask.shape}")
            if len(mask) < frames:
                left_out[name] = (f"its pixel mask holds {len(mask)} frames, fewer than the {frames} its "
                                  f"{len(video_maps)} snippet maps cover: the mask belongs to another video or decode")
            else:
                used.append((name, video_maps, mask[:frames]))
        elif frame_labels is None or name not in frame_labels:
            left_out[name] = "no pixel mask"
        elif np.any(frame_labels[name]):
            left_out[name] = "anomalous frames but no pixel mask: where the anomaly is is unknown"
        elif normal_size is None:
            left_out[name] = "a normal video, but no frame size to compare its maps at: pass frame_size"
        else:
            used.append((name, video_maps, np.zeros((frames, *normal_size), bool)))
    return used, left_out


def _frame_maps(cell_maps: np.ndarray, size: tuple[int, int], snippet_frames: int) -> np.ndarray:
    """``[S, rows, cols]`` -> ``[snippet_frames S, H, W]``: each snippet's map upsampled, repeated over its frames."""
    return np.repeat(upsample(cell_maps, size), snippet_frames, axis=0)


def _finite(value: float) -> float | None:
    """A float for JSON: None for NaN or an infinity."""
    return float(value) if np.isfinite(value) else None
