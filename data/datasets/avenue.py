"""CUHK Avenue (Lu et al. 2013), ``avenue``: 16 training + 21 testing videos of a campus avenue, frame annotated;
every testing video holds anomalies.

Entries ``train_01`` .. ``train_16`` and ``test_01`` .. ``test_21``, with the aliases ``training_videos/01`` /
``testing_videos/01`` (the official ``.avi`` files, whose names repeat across the two folders) and
``training/frames/01`` / ``testing/frames/01``. Intervals (0-based, end exclusive) from ``intervals.txt``, test
frame counts in ``frames.txt``. Weak split (:mod:`data.datasets.weak_split`): train = test_01-11 + train_01-08,
test = test_12-21 + train_09-16 (anomalous first).
"""

from __future__ import annotations

from data.datasets.base import DatasetSpec
from data.datasets.weak_split import FRAMES_FILE, read_frames, read_intervals, weak_split, weak_split_files

NAME = "avenue"
AVENUE_DIR = "avenue"
SPLIT_FILES = weak_split_files(AVENUE_DIR)
AVENUE_INTERVALS = "intervals.txt"  # 'test_01 77-120 391-422 ...': 0-based, end exclusive
AVENUE_TEST_PREFIX = "test_"  # Avenue entries are train_01 .. train_16 and test_01 .. test_21
AVENUE_ALIASES = ("{split}ing_videos/{n:02d}", "{split}ing/frames/{n:02d}")  # training_videos/01.avi, frames


def _aliases(name: str) -> tuple[str, ...]:
    split, _, n = name.partition("_")
    return tuple(a.format(split=split, n=int(n)) for a in AVENUE_ALIASES)


def load() -> DatasetSpec:
    """Avenue's weak split."""
    lines: dict[str, int] = {}
    return weak_split(NAME, AVENUE_DIR, AVENUE_INTERVALS, read_intervals(f"{AVENUE_DIR}/{AVENUE_INTERVALS}", lines),
                      read_frames(f"{AVENUE_DIR}/{FRAMES_FILE}"), AVENUE_TEST_PREFIX, _aliases, lines)


def intervals() -> dict[str, tuple[tuple[int, int], ...]]:
    """Every clip's annotated frame intervals ``[start, end)``, the weak split's training clips included."""
    return read_intervals(f"{AVENUE_DIR}/{AVENUE_INTERVALS}")
