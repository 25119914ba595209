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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from data.decode import SNIPPET_FRAMES


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

    hits: int
    n: int
    chance: float

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else float("nan")


def pointing_game(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> PointingGame:
    """``maps``: per video ``[S, rows, cols]`` cell scores; ``masks``: per video bool ``[S, H, W]`` snippet masks
    (:func:`snippet_masks`), the same S. A tie for the highest cell counts the first in row-major order."""
    hits, n, chances = 0, 0, []
    for video_maps, video_masks in zip(maps, masks, strict=True):
        if len(video_maps) != len(video_masks):
            raise ValueError(f"{len(video_maps)} maps for {len(video_masks)} snippet masks")
        for cell_map, mask in zip(video_maps, video_masks):
            if not mask.any():
                continue
            on = cells_on_anomaly(mask, cell_map.shape)
            top = np.unravel_index(int(np.argmax(cell_map)), cell_map.shape)
            hits += bool(on[top])
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
