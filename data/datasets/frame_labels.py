"""A frame-label folder (``load_dataset(folder)`` for a folder with ``videos/`` and no ``labels.csv``).

It holds ``videos/`` (video files or frame folders, searched recursively) and optionally ``labels/<name>.npy``: a
1-D 0/1 array (bool or integer dtype), one value per frame. A video whose labels hold a 1 is anomalous, and its
test frame labels are that file; a video without labels, or with all-zero ones, is normal. The split is
``split.csv`` (columns ``name,split``, every video once) when present, else per class in natural name order
train, test, train, test, ... (UCSD Ped2 in this layout, 16 normal + 12 anomalous videos, gives 8 + 6 train and
8 + 6 test). Each split lists its anomalous videos first, each class in natural name order.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from data.datasets.base import ANOMALY_CLASS, NORMAL_CLASS, SPLITS, DatasetError, DatasetSpec, VideoEntry
from data.decode import _natural_key, _probe, frame_folder_files
from data.errors import VideoError
from data.layout import list_videos, video_name

VIDEOS_DIR = "videos"  # what makes a folder without labels.csv a frame-label folder
FRAME_LABELS_DIR = "labels"  # labels/<name>.npy: one 0/1 value per frame
FRAME_LABELS_SUFFIX = ".npy"
SPLIT_CSV = "split.csv"  # optional: name,split
SPLIT_CSV_COLUMNS = ("name", "split")
FRAME_LABEL_DTYPE_KINDS = "biu"  # bool, signed or unsigned integers
LABEL_VALUES_SHOWN = 5  # distinct values quoted in the error about a labels file that is not 0/1


def _frame_count(video: Path) -> int | None:
    """Frames of a frame folder (its image files) or the count a video file's container declares; None when
    unknown (a container that declares none, or an unreadable file, which extraction reports itself)."""
    if video.is_dir():
        return len(frame_folder_files(video))
    try:
        return _probe(str(video)).declared_frames or None
    except VideoError:
        return None


def _read_frame_labels(path: Path, video: Path) -> np.ndarray:
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read the frame labels ({exc}); save a 1-D 0/1 array with numpy.save "
                           f"(e.g. np.save(path, labels.astype(np.uint8)))") from None
    if labels.ndim != 1:
        raise DatasetError(f"{path}: frame labels must be 1-D (one 0/1 value per frame), got shape {labels.shape}; "
                           f"save one array per video")
    if labels.dtype.kind not in FRAME_LABEL_DTYPE_KINDS or not np.isin(labels, (0, 1)).all():
        shown = np.unique(labels)[:LABEL_VALUES_SHOWN].tolist()
        raise DatasetError(f"{path}: frame labels must be 0 (normal) or 1 (anomalous) in a bool or integer array, "
                           f"got dtype {labels.dtype} with the values {shown}; save them as 0/1 uint8 "
                           f"(np.save(path, (labels > 0).astype(np.uint8)))")
    n_frames = _frame_count(video)
    if n_frames is not None and len(labels) < n_frames:
        raise DatasetError(f"{path}: {len(labels)} frame labels for the {n_frames} frames of {video}; give one "
                           f"label per frame")
    return labels


def _read_split_csv(path: Path, names: set[str]) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the split ({exc}); pass a UTF-8 CSV with the columns "
                           f"{','.join(SPLIT_CSV_COLUMNS)}") from None
    reader = csv.reader(io.StringIO(text))
    splits: dict[str, str] = {}
    lines: dict[str, int] = {}
    header = None
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if header is None:
            header = [c.lower() for c in cells]
            if sorted(header) != sorted(SPLIT_CSV_COLUMNS):
                raise DatasetError(f"{where}: the header must be {','.join(SPLIT_CSV_COLUMNS)}, got {','.join(cells)}")
            continue
        if len(cells) != len(header):
            raise DatasetError(f"{where}: {len(cells)} fields, the header has {len(header)} ({','.join(header)})")
        name, split = (dict(zip(header, cells))[c] for c in SPLIT_CSV_COLUMNS)
        name = video_name(name) if name else name
        if name not in names:
            raise DatasetError(f"{where}: no video {name!r} in {path.parent / VIDEOS_DIR}; fix the name (a file "
                               f"name without extension, or a frame folder's name) or remove the line")
        if split.lower() not in SPLITS:
            raise DatasetError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        if name in lines:
            raise DatasetError(f"{where}: video {name} is already listed on line {lines[name]}; list each video once")
        lines[name] = reader.line_num
        splits[name] = split.lower()
    unlisted = sorted(names - set(splits), key=_natural_key)
    if unlisted:
        raise DatasetError(f"{path}: {len(unlisted)} videos have no line, e.g. {unlisted[0]}; give every video of "
                           f"{path.parent / VIDEOS_DIR} a line 'name,train' or 'name,test' (or move it out)")
    return splits


def load_frame_label_folder(folder: str | Path, name: str | None = None) -> DatasetSpec:
    """A :class:`DatasetSpec` from a frame-label folder (format in the module docstring): ``videos/``, optional
    ``labels/<name>.npy`` (0/1 ``[n_frames]``) and optional ``split.csv``. Entries: train then test, each
    anomalous first, each class in natural name order; test anomalous entries carry their labels file (absolute)
    as ``mask_file``. ``name`` defaults to the folder's name. Raises :class:`DatasetError` naming the file."""
    folder = Path(folder).resolve()
    videos: dict[str, Path] = {}
    for video in list_videos([folder / VIDEOS_DIR]):
        if video_name(video) in videos:
            raise DatasetError(f"{folder / VIDEOS_DIR}: two videos are called {video_name(video)!r} "
                               f"({videos[video_name(video)]} and {video}); rename one (names key the labels)")
        videos[video_name(video)] = video
    if not videos:
        raise DatasetError(f"{folder / VIDEOS_DIR}: no video files or frame folders; put the videos there")
    masks: dict[str, Path] = {}
    labels_dir = folder / FRAME_LABELS_DIR
    for path in sorted(labels_dir.glob(f"*{FRAME_LABELS_SUFFIX}")) if labels_dir.is_dir() else []:
        video = path.name[:-len(FRAME_LABELS_SUFFIX)]
        if video not in videos:
            raise DatasetError(f"{path}: no video {video!r} in {folder / VIDEOS_DIR}; name the labels file after "
                               f"its video (<name>{FRAME_LABELS_SUFFIX}) or remove it")
        if _read_frame_labels(path, videos[video]).any():
            masks[video] = path
    names = sorted(videos, key=_natural_key)
    by_class = ([n for n in names if n in masks], [n for n in names if n not in masks])  # anomalous, normal
    split_csv = folder / SPLIT_CSV
    if split_csv.is_file():
        splits = _read_split_csv(split_csv, set(names))
    else:  # per class, in natural name order: train, test, train, test, ...
        splits = {n: SPLITS[i % len(SPLITS)] for of_class in by_class for i, n in enumerate(of_class)}
    entries = []
    for split in SPLITS:
        for n in by_class[0]:
            if splits[n] == split:
                mask = str(masks[n]) if split == "test" else None  # training keeps the video-level label only
                entries.append(VideoEntry(n, 1, ANOMALY_CLASS, split, mask_file=mask))
        entries.extend(VideoEntry(n, 0, NORMAL_CLASS, split) for n in by_class[1] if splits[n] == split)
    return DatasetSpec(name or folder.name, entries, str(folder))
