"""Pool a video's per-snippet features into a fixed number of training segments (method.md §2)."""

from __future__ import annotations

import numpy as np

N_SEGMENTS = 32


def segment_bounds(n_snippets: int, n_segments: int = N_SEGMENTS) -> np.ndarray:
    """int [n_segments + 1]: ``linspace(0, T, n_segments + 1)`` rounded down."""
    if n_snippets < 1:
        raise ValueError("a video needs at least one snippet to be pooled into segments")
    return np.floor(np.linspace(0, n_snippets, n_segments + 1)).astype(np.int64)


def pool_segments(features: np.ndarray, n_segments: int = N_SEGMENTS) -> np.ndarray:
    """``[T, crops, D]`` -> ``[crops, n_segments, D]`` float32.

    Segment ``i`` is the mean of snippets ``[b_i, b_{i+1})``; an empty range (``T < n_segments``) takes snippet
    ``b_i``, the nearest one (``b_i <= T - 1`` always holds for ``i < n_segments``).
    """
    if features.ndim != 3:
        raise ValueError(f"features must be [T, crops, D], got shape {features.shape}")
    bounds = segment_bounds(features.shape[0], n_segments)
    x = features.astype(np.float32, copy=False)
    # Prefix sums turn every segment mean into one subtraction: O(T + n_segments) instead of a Python loop of means.
    cumulative = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0, dtype=np.float64)], axis=0)
    starts, ends = bounds[:-1], bounds[1:]
    counts = (ends - starts)[:, None, None]
    sums = cumulative[ends] - cumulative[starts]
    pooled = np.where(counts > 0, sums / np.maximum(counts, 1), x[np.minimum(starts, features.shape[0] - 1)])
    return pooled.astype(np.float32).transpose(1, 0, 2).copy()
