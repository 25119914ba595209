"""Segment pooling of method.md §2 against explicit loops."""

import numpy as np
import pytest

from data.segments import pool_segments, segment_bounds


def _loop_pool(x: np.ndarray, n: int) -> np.ndarray:
    t = x.shape[0]
    bounds = [int(np.floor(i * t / n)) for i in range(n + 1)]
    out = []
    for i in range(n):
        s, e = bounds[i], bounds[i + 1]
        out.append(x[s:e].mean(axis=0) if e > s else x[s])  # empty range: the nearest snippet
    return np.stack(out, axis=1)  # [crops, n, D]


@pytest.mark.parametrize("t", [1, 5, 31, 32, 33, 100, 1001])
def test_pooling_matches_the_loop_definition(t):
    rng = np.random.default_rng(t)
    x = rng.standard_normal((t, 3, 4)).astype(np.float32)
    pooled = pool_segments(x, 32)
    assert pooled.shape == (3, 32, 4) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, _loop_pool(x, 32), rtol=1e-5, atol=1e-6)


def test_bounds_are_linspace_rounded_down():
    np.testing.assert_array_equal(segment_bounds(10, 4), [0, 2, 5, 7, 10])
    assert segment_bounds(5, 32)[:-1].max() == 4  # never points past the last snippet


def test_fewer_snippets_than_segments_repeats_the_nearest_snippet():
    x = np.arange(3, dtype=np.float32).reshape(3, 1, 1)
    pooled = pool_segments(x, 6)[0, :, 0]
    np.testing.assert_array_equal(pooled, [0, 0, 1, 1, 2, 2])


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[T, crops, D\]"):
        pool_segments(np.zeros((4, 8)))
