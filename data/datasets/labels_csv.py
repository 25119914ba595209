"""A user's labels CSV (``load_dataset(path)``; a folder means ``<folder>/labels.csv``).

A header with the columns ``name,label,split`` and optionally ``class,intervals``:

    name,label,split,class,intervals
    videos/cam1_0001.mp4,anomalous,test,Fight,120-200;340-400
    cam1_0002,0,train,,

``label`` is one of 0, 1, normal, anomalous, abnormal (any case); ``split`` is train or test; ``intervals`` are
frame ranges ``start-end`` (end exclusive) separated by ``;``; ``name`` may be a file name or path (folder and
video extension are dropped, as :func:`data.layout.video_name` does).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from data.datasets.base import (ANOMALY_CLASS, INTERVAL_SEP, NORMAL_CLASS, RANGE_SEP, SPLITS, DatasetError,
                                DatasetSpec, VideoEntry, parse_intervals)
from data.layout import video_name

LABELS_CSV = "labels.csv"  # the file load_dataset reads inside a folder
CSV_REQUIRED = ("name", "label", "split")
CSV_OPTIONAL = ("class", "intervals")
CSV_LABELS = {"0": 0, "1": 1, "normal": 0, "anomalous": 1, "abnormal": 1}
CSV_INTERVAL_SEP = INTERVAL_SEP
CSV_RANGE_SEP = RANGE_SEP


def _parse_label(value: str, where: str) -> int:
    key = value.strip().lower()
    if key not in CSV_LABELS:
        raise DatasetError(f"{where}: label {value!r} is not one of {', '.join(CSV_LABELS)} (write 1 or "
                           f"'anomalous' for anomalous videos, 0 or 'normal' for normal ones)")
    return CSV_LABELS[key]


def load_labels_csv(path: str | Path, name: str | None = None) -> DatasetSpec:
    """A :class:`DatasetSpec` from a labels CSV (format in the module docstring). Train entries then test
    entries, each in file order. ``name`` defaults to the CSV's folder name for ``labels.csv``, else its stem.
    Raises :class:`DatasetError` naming ``file:line`` and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the labels CSV ({exc}); pass a UTF-8 text file") from None
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    by_split: dict[str, list[VideoEntry]] = {s: [] for s in SPLITS}
    lines: dict[str, int] = {}
    for row in reader:
        lineno = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{lineno}"
        if header is None:
            header = [cell.strip().lower() for cell in row]
            missing = [c for c in CSV_REQUIRED if c not in header]
            unknown = [c for c in header if c not in CSV_REQUIRED + CSV_OPTIONAL]
            if missing or unknown or len(set(header)) != len(header):
                problem = (f"missing column(s) {', '.join(missing)}" if missing else
                           f"unknown column(s) {', '.join(unknown)}" if unknown else "a column appears twice")
                raise DatasetError(f"{where}: {problem}; the header must name the columns "
                                   f"{','.join(CSV_REQUIRED)} and optionally {','.join(CSV_OPTIONAL)}")
            continue
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} fields, the header has {len(header)} ({','.join(header)}); "
                               f"quote fields that contain commas")
        cells = {col: cell.strip() for col, cell in zip(header, row)}
        video = video_name(cells["name"]) if cells["name"] else ""
        if not video:
            raise DatasetError(f"{where}: empty name; give the video's file name or name")
        label = _parse_label(cells["label"], where)
        split = cells["split"].lower()
        if split not in SPLITS:
            raise DatasetError(f"{where}: split {cells['split']!r} is not one of {', '.join(SPLITS)}")
        intervals = parse_intervals(cells.get("intervals", ""), where)
        class_name = cells.get("class", "")
        if label == 0:
            if class_name and class_name.lower() != NORMAL_CLASS.lower():
                raise DatasetError(f"{where}: normal video {video} has class {class_name!r}; leave the class "
                                   f"empty or write {NORMAL_CLASS} (or mark the video anomalous)")
            if intervals:
                raise DatasetError(f"{where}: normal video {video} has anomalous intervals; mark it anomalous "
                                   f"or remove the intervals")
            class_name = NORMAL_CLASS
        else:
            if class_name.lower() == NORMAL_CLASS.lower():
                raise DatasetError(f"{where}: anomalous video {video} has class {class_name!r}; give its anomaly "
                                   f"class or leave it empty")
            class_name = class_name or ANOMALY_CLASS
        if video in lines:
            raise DatasetError(f"{where}: video {video} is already listed on line {lines[video]}; list each "
                               f"video once")
        lines[video] = lineno
        by_split[split].append(VideoEntry(video, label, class_name, split, intervals, where=where))
    if header is None:
        raise DatasetError(f"{path}:1: empty labels CSV; write a header {','.join(CSV_REQUIRED + CSV_OPTIONAL)} "
                           f"and one line per video")
    if name is None:
        name = path.resolve().parent.name if path.name == LABELS_CSV else path.stem
    return DatasetSpec(name, by_split["train"] + by_split["test"], str(path))
