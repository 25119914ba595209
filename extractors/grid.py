"""Feature grids: a backbone's last feature map kept as cells instead of averaged (the "where" of an anomaly).

A grid choice (``--grid``) is ``native`` (the backbone's own map: 7 x 11 for I3D on a 224 x 337 ``full`` view) or
``RxC`` (the map average-pooled to R rows x C columns, to bound storage). Stored features of a grid extraction are
``[T, R * C, D]``, the cells row-major; their mean over cells is the global feature (exactly for ``native``; for
``RxC`` when R and C divide the native map, else within the overlap of adaptive pooling's bins).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from extractors.views import GRID_NATIVE as NATIVE
from extractors.views import check_grid


def pool_map(feature_map: torch.Tensor, choice: str) -> torch.Tensor:
    """``[M, D, h, w]`` feature map -> ``[M, R * C, D]`` cells row-major: the map itself for ``native``, else
    average-pooled to R x C (``adaptive_avg_pool2d``; a map smaller than the grid is refused, not upsampled)."""
    choice = check_grid(choice)
    if choice != NATIVE:
        rows, cols = (int(v) for v in choice.split("x"))
        h, w = feature_map.shape[-2:]
        if rows > h or cols > w:
            raise ValueError(f"a {rows}x{cols} grid is finer than the backbone's {h}x{w} feature map: "
                             f"use --grid native or at most {h}x{w}")
        feature_map = F.adaptive_avg_pool2d(feature_map, (rows, cols))
    m, d = feature_map.shape[:2]
    return feature_map.reshape(m, d, -1).transpose(1, 2)


def grid_shape(feature_map_hw: tuple[int, int], choice: str) -> tuple[int, int]:
    """The (rows, cols) :func:`pool_map` gives for a ``[h, w]`` feature map."""
    choice = check_grid(choice)
    if choice == NATIVE:
        return int(feature_map_hw[0]), int(feature_map_hw[1])
    rows, cols = choice.split("x")
    return int(rows), int(cols)
