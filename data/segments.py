"""Pool a video's per-snippet features into training segments (method.md §2).

A video of ``T >= n_segments`` snippets becomes ``n_segments`` segments, each the mean of its snippets. A shorter
video either keeps its ``T`` snippets as ``T`` segments (``stretch=False``, the project's default: training then
sees the sequence that evaluation scores, at the same relative distances) or is stretched to ``n_segments`` by
repeating snippets (``stretch=True``, method.md §2's rule read literally: 7 snippets become 32 segments).
"""

from __future__ import annotations

import numpy as np

N_SEGMENTS = 32


def segment_bounds(n_snippets: int, n_segments: int = N_SEGMENTS) -> np.ndarray:
    """int [n_segments + 1]: ``linspace(0, T, n_segments + 1)`` rounded down."""
    if n_snippets < 1:
        raise ValueError("a video needs at least one snippet to be pooled into segments")
    return np.floor(np.linspace(0, n_snippets, n_segments + 1)).astype(np.int64)


def segment_count(n_snippets: int, n_segments: int = N_SEGMENTS, *, stretch: bool = False) -> int:
    """Segments a video of ``n_snippets`` snippets is pooled into: ``n_segments``, or fewer for a short video
    that is not stretched."""
    return n_segments if stretch else min(n_segments, n_snippets)


def pool_segments(features: np.ndarray, n_segments: int = N_SEGMENTS, *, stretch: bool = True) -> np.ndarray:
    """``[T, crops, D]`` -> ``[crops, L, D]`` float32 with ``L = segment_count(T, n_segments, stretch=stretch)``.

    Segment ``i`` is the mean of snippets ``[b_i, b_{i+1})``; an empty range (``T < n_segments``, stretched) takes
    snippet ``b_i``, the nearest one (``b_i <= T - 1`` always holds for ``i < n_segments``). A short video that is
    not stretched keeps its snippets: segment ``i`` is snippet ``i``.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be [T, crops, D], got shape {features.shape}")
    if features.shape[0] < 1:
        raise ValueError("a video needs at least one snippet to be pooled into segments")
    n_segments = segment_count(features.shape[0], n_segments, stretch=stretch)
    bounds = segment_bounds(features.shape[0], n_segments)
    x = features.astype(np.float32, copy=False)
    # Prefix sums turn every segment mean into one subtraction: O(T + n_segments) instead of a Python loop of means.
    cumulative = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0, dtype=np.float64)], axis=0)
    starts, ends = bounds[:-1], bounds[1:]
    counts = (ends - starts)[:, None, None]
    sums = cumulative[ends] - cumulative[starts]
    pooled = np.where(counts > 0, sums / np.maximum(counts, 1), x[np.minimum(starts, features.shape[0] - 1)])
    return pooled.astype(np.float32).transpose(1, 0, 2).copy()
