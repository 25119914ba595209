"""Small drawing helpers shared by the background, the figures and the scene: colours, smooth noise, alpha
blending, and the anti-aliased alpha masks of capsules, rectangles and ellipses on a pixel patch."""

from __future__ import annotations

import math

import numpy as np

def _color(c) -> np.ndarray:
    return np.asarray(c, np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """float32 ``[h, w]`` smooth value noise (about unit std at the grid nodes), grid spacing ``cell`` pixels."""
    cell = max(float(cell), 1.0)
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    fy, fx = np.arange(h) / cell, np.arange(w) / cell
    iy, ix = fy.astype(np.int64), fx.astype(np.int64)
    ty, tx = (fy - iy).astype(np.float32), (fx - ix).astype(np.float32)
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)  # smoothstep
    top = grid[np.ix_(iy, ix)] * (1 - tx) + grid[np.ix_(iy, ix + 1)] * tx
    bottom = grid[np.ix_(iy + 1, ix)] * (1 - tx) + grid[np.ix_(iy + 1, ix + 1)] * tx
    return top * (1 - ty)[:, None] + bottom * ty[:, None]


def _blend(patch: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    """In place: ``patch = patch * (1 - alpha) + color * alpha``; patch float32 [h, w, 3], alpha [h, w]."""
    patch += alpha[..., None] * (color - patch)


def _capsule_alpha(X, Y, ax, ay, bx, by, radius):
    """Anti-aliased coverage [h, w] of the capsule (segment a-b thickened by ``radius``) at pixel centres X, Y."""
    dx, dy = bx - ax, by - ay
    px, py = X - ax, Y - ay
    l2 = dx * dx + dy * dy
    if l2 > 1e-9:
        t = np.clip((px * dx + py * dy) * (1.0 / l2), 0.0, 1.0)
        px = px - t * dx
        py = py - t * dy
    return np.clip(radius + 0.5 - np.sqrt(px * px + py * py), 0.0, 1.0)


def _rect_alpha(X, Y, x0, y0, x1, y1):
    """Anti-aliased coverage of the axis-aligned box [x0, x1] x [y0, y1]."""
    ax = np.clip(np.minimum(X - x0, x1 - X) + 0.5, 0.0, 1.0)
    ay = np.clip(np.minimum(Y - y0, y1 - Y) + 0.5, 0.0, 1.0)
    return ax * ay


def _ellipse_alpha(X, Y, cx, cy, rx, ry):
    """Soft-edged coverage of an ellipse (about one pixel of edge softness)."""
    d = np.sqrt(((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2)
    return np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0)


def _patch_grid(x0, y0, x1, y1, width, height):
    """Integer pixel window covering [x0, x1] x [y0, y1] clipped to the frame, and its X [1, w] / Y [h, 1]
    coordinate grids; None when the window is empty."""
    ix0, iy0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    ix1, iy1 = min(int(math.ceil(x1)) + 1, width), min(int(math.ceil(y1)) + 1, height)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    X = np.arange(ix0, ix1, dtype=np.float32)[None, :]
    Y = np.arange(iy0, iy1, dtype=np.float32)[:, None]
    return (slice(iy0, iy1), slice(ix0, ix1)), X, Y
