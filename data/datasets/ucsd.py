"""UCSD Ped1 and Ped2 (Mahadevan et al. 2010), ``ucsd-ped1`` and ``ucsd-ped2``: pedestrian walkways, frame
annotated.

Ped1 has 34 Train + 36 Test clips (200 frames each), Ped2 16 Train + 12 Test clips (120-180 frames): every Test
clip holds anomalies, every Train clip is normal. Frame ranges from ``gt_frame.txt``, the ``gt_frame`` lists of
the official ``UCSDped1.m`` / ``UCSDped2.m`` (1-based inclusive MATLAB ranges ``[a:b]``, read as ``[a - 1, b)``);
frame counts in ``frames.txt``. One weak split each (:mod:`data.datasets.weak_split`), ``train.txt`` /
``test.txt`` (anomalous first): Ped1 train = Test001-018 + Train001-020, test = Test019-036 + Train021-034; Ped2
train = Test001-006 + Train001-008, test = Test007-012 + Train009-016. Entries are named as the official frame
folders (``Train001``) with the aliases ``train_01`` (a converted ``videos/train_01.mp4``) and
``training/frames/01`` (the frame layout of MNAD and its successors). The two sets reuse their clip names, so
each names its official folder (:data:`OFFICIAL_FOLDERS`) for discovery to keep them apart.
"""

from __future__ import annotations

from data.datasets.base import DatasetError, DatasetSpec, int_pair, split_lines, split_where
from data.datasets.weak_split import FRAMES_FILE, read_frames, weak_split, weak_split_files

UCSD_DIRS = {"ucsd-ped1": "ucsd_ped1", "ucsd-ped2": "ucsd_ped2"}  # dataset -> its folder in data/splits
SPLIT_FILES = {dataset: weak_split_files(folder) for dataset, folder in UCSD_DIRS.items()}
OFFICIAL_FOLDERS = {"ucsd-ped1": "ucsdped1", "ucsd-ped2": "ucsdped2"}  # the folders of the official archives
UCSD_GT_FRAME = "gt_frame.txt"  # 'Test001 [60:152]': the gt_frame lists of UCSDpedN.m, 1-based inclusive
UCSD_TEST = "Test"  # official clip names: Train001 .., Test001 ..; the Test clips are the anomalous ones
UCSD_SPLIT_WORDS = {"Train": "train", "Test": "test"}  # clip name prefix -> the word of its aliases
UCSD_ALIASES = ("{split}_{n:02d}", "{split}ing/frames/{n:02d}")  # Train001 -> train_01, training/frames/01
MATLAB_RANGE_SEP = ","
MATLAB_RANGE = ":"


def matlab_ranges(text: str, where: str) -> tuple[tuple[int, int], ...]:
    """Frame intervals ``[start, end)`` (0-based, end exclusive) of a MATLAB range list as UCSD's ``.m`` files
    write it, ``[5:90, 140:200]`` (1-based, inclusive): ``[a:b]`` becomes ``(a - 1, b)``. ``where`` names the
    file and line in errors."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise DatasetError(f"{where}: expected a MATLAB range list such as [60:152] or [5:90, 140:200], got "
                           f"{text!r}")
    intervals = []
    for part in body[1:-1].split(MATLAB_RANGE_SEP):
        pair = int_pair(part.strip(), MATLAB_RANGE)
        if pair is None:
            raise DatasetError(f"{where}: range {part.strip()!r} is not 'first:last' (1-based frame numbers, "
                               f"inclusive)")
        a, b = pair
        if a < 1 or b < a:
            raise DatasetError(f"{where}: range {a}:{b} needs 1 <= first <= last (1-based, inclusive)")
        intervals.append((a - 1, b))
    return tuple(intervals)


def _read_gt(rel: str, lines: dict[str, int] | None = None) -> dict[str, tuple[tuple[int, int], ...]]:
    """``{name: ((s, e), ...)}`` of a shipped ``gt_frame.txt``; ``lines``, when given, receives each name's line."""
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for lineno, line in split_lines(rel):
        name, _, ranges = line.partition(" ")
        out[name] = matlab_ranges(ranges, split_where(rel, lineno))
        if lines is not None:
            lines[name] = lineno
    return out


def _aliases(name: str) -> tuple[str, ...]:
    prefix = name.rstrip("0123456789")  # Train001 -> Train
    return tuple(a.format(split=UCSD_SPLIT_WORDS[prefix], n=int(name[len(prefix):])) for a in UCSD_ALIASES)


def load(dataset: str) -> DatasetSpec:
    """The weak split of ``dataset`` (``ucsd-ped1`` or ``ucsd-ped2``)."""
    folder, lines = UCSD_DIRS[dataset], {}
    return weak_split(dataset, folder, UCSD_GT_FRAME, _read_gt(f"{folder}/{UCSD_GT_FRAME}", lines),
                      read_frames(f"{folder}/{FRAMES_FILE}"), UCSD_TEST, _aliases, lines)


def intervals(dataset: str) -> dict[str, tuple[tuple[int, int], ...]]:
    """Every clip's annotated frame intervals ``[start, end)`` of ``dataset``, the weak split's training clips
    included."""
    return _read_gt(f"{UCSD_DIRS[dataset]}/{UCSD_GT_FRAME}")
