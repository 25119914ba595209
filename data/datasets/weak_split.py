"""The weak split of the frame-annotated benchmarks (UCSD Ped1 / Ped2, CUHK Avenue): their official train sets
are normal only, so the split shipped in ``data/splits/<folder>`` (``train.txt`` then ``test.txt``, anomalous
first) mixes official test clips into training, where they carry their video label only (weak supervision), and
keeps the frame annotation for the test side. Each folder also ships ``frames.txt`` (``name n_frames`` per clip).
"""

from __future__ import annotations

from collections.abc import Callable

from data.datasets.base import (ANOMALY_CLASS, INTERVAL_SEP, NORMAL_CLASS, SPLITS, DatasetError, DatasetSpec,
                                VideoEntry, check_unique, parse_intervals, split_lines, split_where)

WEAK_TRAIN = "train.txt"  # the weak split's train names (anomalous first) ...
WEAK_TEST = "test.txt"  # ... and test names, in the canonical order
FRAMES_FILE = "frames.txt"  # 'name n_frames' per clip


def weak_split_files(folder: str) -> tuple[str, str]:
    """The weak split's train and test lists of ``folder`` (relative to ``data/splits``)."""
    return f"{folder}/{WEAK_TRAIN}", f"{folder}/{WEAK_TEST}"


def read_frames(rel: str) -> dict[str, int]:
    """``{name: n_frames}`` of a shipped ``frames.txt``."""
    out: dict[str, int] = {}
    for lineno, line in split_lines(rel):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) < 1:
            raise DatasetError(f"{split_where(rel, lineno)}: expected 'name n_frames' (a positive count), got "
                               f"{line!r}")
        out[fields[0]] = int(fields[1])
    return out


def read_intervals(rel: str, lines: dict[str, int] | None = None) -> dict[str, tuple[tuple[int, int], ...]]:
    """``{name: ((s, e), ...)}`` of a shipped ``intervals.txt`` (``name s-e s-e ...``); ``lines``, when given,
    receives each name's line."""
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for lineno, line in split_lines(rel):
        name, *parts = line.split()
        out[name] = parse_intervals(INTERVAL_SEP.join(parts), split_where(rel, lineno))
        if lines is not None:
            lines[name] = lineno
    return out


def weak_split(dataset: str, folder: str, annotation: str,
               intervals: dict[str, tuple[tuple[int, int], ...]], frames: dict[str, int], anomalous_prefix: str,
               aliases: Callable[[str], tuple[str, ...]], lines: dict[str, int]) -> DatasetSpec:
    """Entries of a weak split: ``train.txt`` then ``test.txt`` of ``folder``. A name starting with
    ``anomalous_prefix`` (the official test clips) is anomalous and must have intervals, every other name normal
    and without; test anomalous entries carry their intervals, which must lie within ``frames`` where listed.
    ``aliases(name)`` gives an entry's aliases; ``lines`` each annotated name's line in ``annotation``."""
    ann = split_where(f"{folder}/{annotation}")
    entries: list[VideoEntry] = []
    for split, rel in zip(SPLITS, weak_split_files(folder)):
        for lineno, name in split_lines(rel):
            anomalous = name.startswith(anomalous_prefix)
            if anomalous != bool(intervals.get(name)):
                raise DatasetError(f"{split_where(rel, lineno)}: {name} is {'anomalous' if anomalous else 'normal'} "
                                   f"(every {anomalous_prefix}* clip holds anomalies) but {ann} gives it "
                                   f"{len(intervals.get(name, ()))} ranges")
            n_frames = frames.get(name)
            if anomalous and n_frames is not None and max(e for _, e in intervals[name]) > n_frames:
                raise DatasetError(f"{ann}: {name}'s ranges {list(intervals[name])} pass its {n_frames} frames "
                                   f"({split_where(f'{folder}/{FRAMES_FILE}')})")
            test_intervals = anomalous and split == "test"
            entries.append(VideoEntry(name, int(anomalous), ANOMALY_CLASS if anomalous else NORMAL_CLASS, split,
                                      intervals[name] if test_intervals else (), aliases=aliases(name),
                                      where=split_where(f"{folder}/{annotation}", lines[name])
                                      if test_intervals else ""))
    check_unique(entries, split_where(folder))
    return DatasetSpec(dataset, entries, split_where(folder))
