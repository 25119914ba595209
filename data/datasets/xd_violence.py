"""XD-Violence (Wu et al. 2020), ``xd-violence``: 4754 movie and online videos, 6 violence classes.

``train.txt`` (3954, 1905 violent first) and ``test.txt`` (800, 500 violent first); normal iff the name contains
``label_A``; class from the first label code (:data:`XD_CLASSES`); intervals from ``annotations.txt``.
"""

from __future__ import annotations

from data.datasets.base import (NORMAL_CLASS, SPLITS, DatasetError, DatasetSpec, VideoEntry, check_unique,
                                split_lines, split_where)
from data.layout import video_name

NAME = "xd-violence"
XD_DIR = "xd_violence"
XD_TRAIN = f"{XD_DIR}/train.txt"
XD_TEST = f"{XD_DIR}/test.txt"
SPLIT_FILES = (XD_TRAIN, XD_TEST)
XD_ANNOTATION = f"{XD_DIR}/annotations.txt"
XD_LABEL_MARK = "label_"  # the label codes follow the last occurrence, joined by "-" (e.g. label_B2-G-0)
XD_CODE_SEP = "-"
XD_NORMAL_CODE = "A"
XD_CLASSES = {"A": NORMAL_CLASS, "B1": "Fighting", "B2": "Shooting", "B4": "Riot", "B5": "Abuse",
              "B6": "Car accident", "G": "Explosion"}


def xd_class(name: str) -> str:
    """XD-Violence class of a video name: its first label code after ``label_`` (``..._label_B2-G-0`` ->
    ``Shooting``; ``label_A`` -> ``Normal``). Raises ValueError for a name without known codes."""
    if XD_LABEL_MARK not in name:
        raise ValueError(f"{name}: an XD-Violence name carries its labels after {XD_LABEL_MARK!r}")
    code = name.rsplit(XD_LABEL_MARK, 1)[1].split(XD_CODE_SEP)[0]
    if code not in XD_CLASSES:
        raise ValueError(f"{name}: unknown XD-Violence label code {code!r} (known: {', '.join(XD_CLASSES)})")
    return XD_CLASSES[code]


def _read_annotation(rel: str, lines: dict[str, int]) -> dict[str, tuple[tuple[int, int], ...]]:
    """``{name: ((s, e), ...)}`` of XD-Violence's ``annotations.txt``; ``lines`` receives each name's line."""
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for lineno, line in split_lines(rel):
        fields = line.split()
        try:
            nums = [int(v) for v in fields[1:]]
        except ValueError:
            raise DatasetError(f"{split_where(rel, lineno)}: frame numbers must be integers, got {line!r}") from None
        if not nums or len(nums) % 2:
            raise DatasetError(f"{split_where(rel, lineno)}: expected 'name s1 e1 [s2 e2 ...]', got {line!r}")
        pairs = tuple(zip(nums[0::2], nums[1::2]))
        if any(s < 0 or e <= s for s, e in pairs):
            raise DatasetError(f"{split_where(rel, lineno)}: bad interval in {line!r}; need 0 <= start < end")
        out[video_name(fields[0])] = pairs
        lines[video_name(fields[0])] = lineno
    return out


def load() -> DatasetSpec:
    """The XD-Violence split in list order, test entries with their annotated intervals."""
    lines: dict[str, int] = {}
    annotation = _read_annotation(XD_ANNOTATION, lines)
    entries: list[VideoEntry] = []
    for split, rel in zip(SPLITS, SPLIT_FILES):
        for lineno, line in split_lines(rel):
            name = video_name(line)
            normal = f"{XD_LABEL_MARK}{XD_NORMAL_CODE}" in name
            try:
                class_name = NORMAL_CLASS if normal else xd_class(name)
            except ValueError as exc:
                raise DatasetError(f"{split_where(rel, lineno)}: {exc}") from None
            intervals: tuple[tuple[int, int], ...] = ()
            if split == "test":
                intervals = annotation.pop(name, ())
                if normal == bool(intervals):
                    raise DatasetError(f"{split_where(rel, lineno)}: {name} is {'normal' if normal else 'violent'} "
                                       f"but {split_where(XD_ANNOTATION)} gives it {len(intervals)} intervals")
            entries.append(VideoEntry(name, 0 if normal else 1, class_name, split, intervals,
                                      where=split_where(XD_ANNOTATION, lines[name]) if intervals else ""))
    if annotation:
        raise DatasetError(f"{split_where(XD_ANNOTATION)}: {len(annotation)} annotated videos are not in "
                           f"{split_where(XD_TEST)}, e.g. {next(iter(annotation))}")
    check_unique(entries, split_where(XD_DIR))
    return DatasetSpec(NAME, entries, split_where(XD_DIR))
