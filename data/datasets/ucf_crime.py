"""UCF-Crime (Sultani et al. 2018), ``ucf-crime``: 1900 surveillance videos, 13 anomaly classes.

Train ``Anomaly_Train.txt`` (1610: 810 anomalous, then 800 normal), test ``Anomaly_Test.txt`` (290: 140
anomalous, then 150 normal); the files are alphabetical by class folder, the canonical order (RTFM's and VadCLIP's
lists) takes each file's anomalous videos in file order, then its normal ones; intervals from
``Temporal_Anomaly_Annotation.txt``; class from the list's folder.
"""

from __future__ import annotations

from data.datasets.base import (NORMAL_CLASS, SPLITS, DatasetError, DatasetSpec, VideoEntry, check_unique,
                                split_file, split_lines, split_where)
from data.layout import video_name

NAME = "ucf-crime"
UCF_DIR = "ucf_crime"
UCF_TRAIN = f"{UCF_DIR}/Anomaly_Train.txt"
UCF_TEST = f"{UCF_DIR}/Anomaly_Test.txt"
SPLIT_FILES = (UCF_TRAIN, UCF_TEST)
UCF_ANNOTATION = f"{UCF_DIR}/Temporal_Anomaly_Annotation.txt"
UCF_NORMAL_FOLDER_PREFIXES = ("Training_Normal", "Testing_Normal")
UCF_NORMAL_NAME_PREFIX = "Normal_Videos"
UCF_ANNOTATION_FIELDS = 6  # Name.mp4  Class  s1  e1  s2  e2
UCF_UNUSED = -1  # marks an unused interval in the UCF-Crime annotation


def read_ucf_annotation(text: str, where: str, lines: dict[str, int] | None = None
                        ) -> dict[str, tuple[str, tuple[tuple[int, int], ...]]]:
    """Parse UCF-Crime's ``Temporal_Anomaly_Annotation.txt``: ``{name: (class, ((s, e), ...))}``.

    Lines are ``Name.mp4  Class  s1  e1  s2  e2`` with ``-1 -1`` for an unused interval; names lose their
    extension. Intervals are taken as ``[s, e)`` (method.md §7). ``where`` names the file in errors; ``lines``,
    when given, receives each name's 1-based line number.
    """
    out: dict[str, tuple[str, tuple[tuple[int, int], ...]]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != UCF_ANNOTATION_FIELDS:
            raise DatasetError(f"{where}:{lineno}: expected 'Name.mp4  Class  s1  e1  s2  e2', got {line!r}")
        try:
            nums = [int(v) for v in fields[2:]]
        except ValueError:
            raise DatasetError(f"{where}:{lineno}: frame numbers must be integers, got {line!r}") from None
        intervals = []
        for s, e in zip(nums[0::2], nums[1::2]):
            if s == UCF_UNUSED and e == UCF_UNUSED:
                continue
            if s < 0 or e <= s:
                raise DatasetError(f"{where}:{lineno}: bad interval ({s}, {e}); need 0 <= start < end, or -1 -1")
            intervals.append((s, e))
        out[video_name(fields[0])] = (fields[1], tuple(intervals))
        if lines is not None:
            lines[video_name(fields[0])] = lineno
    return out


def load() -> DatasetSpec:
    """The UCF-Crime split in canonical order, test entries with their annotated intervals."""
    lines: dict[str, int] = {}
    annotation = read_ucf_annotation(split_file(UCF_ANNOTATION), split_where(UCF_ANNOTATION), lines)
    entries: list[VideoEntry] = []
    for split, rel in zip(SPLITS, SPLIT_FILES):
        for lineno, line in split_lines(rel):
            folder, _, file_name = line.replace("\\", "/").rpartition("/")
            name = video_name(file_name)
            normal = folder.startswith(UCF_NORMAL_FOLDER_PREFIXES) or name.startswith(UCF_NORMAL_NAME_PREFIX)
            if not normal and not folder:
                raise DatasetError(f"{split_where(rel, lineno)}: {line!r} has no class folder ('Class/Name.mp4')")
            class_name = NORMAL_CLASS if normal else folder.rsplit("/", 1)[-1]
            intervals: tuple[tuple[int, int], ...] = ()
            if split == "test":
                if name not in annotation:
                    raise DatasetError(f"{split_where(rel, lineno)}: {name} has no line in "
                                       f"{split_where(UCF_ANNOTATION)}")
                ann_class, intervals = annotation[name]
                if normal != (ann_class == NORMAL_CLASS) or normal == bool(intervals):
                    raise DatasetError(f"{split_where(rel, lineno)}: {name} is {'normal' if normal else class_name} "
                                       f"but {split_where(UCF_ANNOTATION)} says {ann_class} with intervals "
                                       f"{list(intervals)}")
            entries.append(VideoEntry(name, 0 if normal else 1, class_name, split, intervals,
                                      where=split_where(UCF_ANNOTATION, lines[name]) if intervals else ""))
    # Canonical order (RTFM's ucf-i3d(-test).list, VadCLIP's ucf_CLIP_rgb(test).csv): per split, the anomalous
    # videos in file order, then the normal ones in file order. The official files are alphabetical by folder,
    # which puts the Vandalism folder behind the Training_Normal / Testing_Normal one.
    entries.sort(key=lambda e: (SPLITS.index(e.split), 1 - e.label))  # stable: file order within each group
    check_unique(entries, split_where(UCF_DIR))
    return DatasetSpec(NAME, entries, split_where(UCF_DIR))
