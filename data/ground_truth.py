"""Frame-level ground truth for the community's evaluation protocol (method.md §7).

Per test video: zeros of length ``16 * T`` (``T`` = the number of snippets in the video's feature file, never a
separate frame count), ``gt[s:e] = 1`` for every annotated interval ``[s, e)`` (0-based start, end exclusive),
truncated to ``16 * T``. ShanghaiTech ships per-frame 0/1 masks instead of intervals: ``gt[:m] = mask[:m]`` with
``m = min(len(mask), 16 * T)``; when the mask is shorter than ``16 * T``, the frames past its end take the mask's
LAST label (``gt[len(mask):16 * T] = mask[-1]``), the rule of RTFM's ``list/make_gt_sh.py``, which pads each
mask with ``ground_annotation[-1]`` up to ``16 * T``. The community's ShanghaiTech features have
``T = ceil(N / 16)`` snippets for ``N`` frames, so up to 15 frames per video lie past the mask; padding them
with 0 instead gave a ground truth that differs from RTFM's ``gt-sh.npy`` in 66 of its 142,912 frames (test
videos whose anomaly lasts to the last frame). The test videos are concatenated in the dataset's canonical
test-list order, which is the order in which the frame scores must be concatenated too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from data.decode import SNIPPET_FRAMES

__all__ = ["SNIPPET_FRAMES", "frame_labels", "concatenate_labels"]

MISSING_NAMES_SHOWN = 5  # names listed in the error about test videos without a snippet count


def frame_labels(n_snippets: int, intervals: Sequence[tuple[int, int]] = (), mask: np.ndarray | None = None,
                 snippet_frames: int = SNIPPET_FRAMES) -> np.ndarray:
    """Per-frame labels of one video: uint8 ``[snippet_frames * n_snippets]``.

    ``intervals``: ``(start, end)`` frame pairs, 0-based start, end exclusive; parts beyond the length are cut
    off (an interval starting past the end adds nothing). ``mask``: a per-frame 0/1 array ``[n_frames]``
    (ShanghaiTech); ``gt[:m] = mask[:m]`` with ``m = min(len(mask), length)``, and the frames past a shorter
    mask take its last label, ``gt[len(mask):length] = mask[-1]`` (RTFM's rule, see the module docstring). Both
    may be given (their union is returned).
    """
    if int(n_snippets) != n_snippets or n_snippets < 0:
        raise ValueError(f"n_snippets must be a non-negative integer, got {n_snippets!r}")
    if int(snippet_frames) != snippet_frames or snippet_frames < 1:
        raise ValueError(f"snippet_frames must be a positive integer, got {snippet_frames!r}")
    length = int(snippet_frames) * int(n_snippets)
    gt = np.zeros(length, dtype=np.uint8)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim != 1:
            raise ValueError(f"a frame mask must be 1-D (one 0/1 value per frame), got shape {mask.shape}")
        m = min(len(mask), length)
        gt[:m] = mask[:m] != 0
        if 0 < len(mask) < length:
            gt[len(mask):] = mask[-1] != 0  # RTFM's make_gt_sh.py: pad with the last frame's label
    for interval in intervals:
        if len(interval) != 2:
            raise ValueError(f"an interval is a (start, end) pair of frame indices, got {interval!r}")
        start, end = (int(v) for v in interval)
        if start < 0 or end < start:
            raise ValueError(f"interval ({start}, {end}): need 0 <= start <= end (frames, end exclusive)")
        gt[start:min(end, length)] = 1
    return gt


class NamedVideo(Protocol):
    """A test video as :func:`concatenate_labels` needs it (a ``data.datasets.VideoEntry``)."""

    name: str


class LabelledDataset(Protocol):
    """What :func:`concatenate_labels` needs of a dataset: ``data.datasets.DatasetSpec`` has it. A protocol, not
    an import, so that this module stays below ``data.datasets`` (which imports it) without an import cycle."""

    name: str
    source: str

    def split(self, which: str) -> Sequence[NamedVideo]: ...

    def frame_labels(self, entry, n_snippets: int) -> np.ndarray: ...


def concatenate_labels(spec: LabelledDataset, n_snippets: Mapping[str, int]) -> np.ndarray:
    """Ground truth of the whole test set: uint8 ``[sum over test videos of 16 * T]``.

    The test entries of ``spec`` in canonical order, each ``spec.frame_labels(entry, T)`` with
    ``T = n_snippets[entry.name]`` (the snippet count of the video's features). Raises KeyError naming the test
    videos that have no ``T``: pooled metrics over a partial test set are not comparable to published ones.
    """
    tests = spec.split("test")
    missing = [e.name for e in tests if e.name not in n_snippets]
    if missing:
        shown = ", ".join(missing[:MISSING_NAMES_SHOWN]) + (" ..." if len(missing) > MISSING_NAMES_SHOWN else "")
        raise KeyError(f"{spec.name}: {len(missing)} of {len(tests)} test videos have no snippet count "
                       f"(no features): {shown}. Extract or import features for every test video "
                       f"(labels from {spec.source})")
    if not tests:
        return np.zeros(0, dtype=np.uint8)
    return np.concatenate([spec.frame_labels(e, n_snippets[e.name]) for e in tests])
