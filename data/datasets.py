"""Dataset adapters: video names, weak labels, splits and frame annotations of the three benchmarks and of a
user's own labels CSV, in each dataset's canonical list order.

Official datasets read the split and annotation files shipped in ``data/splits`` (see its PROVENANCE.md):

``ucf-crime``     train ``Anomaly_Train.txt`` (1610: 810 anomalous, then 800 normal), test ``Anomaly_Test.txt``
                  (290: 140 anomalous, then 150 normal); the files are alphabetical by class folder, the canonical
                  order (RTFM's and VadCLIP's lists) takes each file's anomalous videos in file order, then its
                  normal ones; intervals from ``Temporal_Anomaly_Annotation.txt``; class from the list's folder.
``shanghaitech``  Zhong et al.'s weakly-supervised split, ``train_order.txt`` (238, 63 anomalous first) and
                  ``test_order.txt`` (199, 44 anomalous first). A video is anomalous iff the official per-frame
                  mask ``test_frame_mask/<name>.npy`` exists: the 107 masks are those of all anomalous videos of
                  the original ShanghaiTech test set, which Zhong et al. split into 63 train + 44 test videos
                  (they are also exactly the ``XX_XXXX`` ids; the normal ones are ``XX_XXX``). Test anomalous
                  entries carry the mask as ``mask_file``.
``xd-violence``   ``train.txt`` (3954, 1905 violent first) and ``test.txt`` (800, 500 violent first); normal iff
                  the name contains ``label_A``; class from the first label code; intervals from
                  ``annotations.txt``.

Annotated intervals are frame ranges ``[start, end)`` (end exclusive), the rule of method.md §7
(``gt[s:e] = 1``), applied to the official files as written.

A labels CSV (``load_dataset(path)``; a folder means ``<folder>/labels.csv``) has a header with the columns
``name,label,split`` and optionally ``class,intervals``:

    name,label,split,class,intervals
    videos/cam1_0001.mp4,anomalous,test,Fight,120-200;340-400
    cam1_0002,0,train,,

``label`` is one of 0, 1, normal, anomalous, abnormal (any case); ``split`` is train or test; ``intervals`` are
frame ranges ``start-end`` (end exclusive) separated by ``;``; ``name`` may be a file name or path (folder and
video extension are dropped, as :func:`data.discover.video_name` does).
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from data import ground_truth
from data.discover import DATASETS, split_file, video_name

__all__ = ["VideoEntry", "DatasetSpec", "DATASETS", "DatasetError", "load_dataset", "load_labels_csv",
           "NORMAL_CLASS", "ANOMALY_CLASS", "SPLITS", "LABELS_CSV", "XD_CLASSES"]

NORMAL_CLASS = "Normal"
ANOMALY_CLASS = "Anomaly"  # class of an anomalous video whose labels give no class (ShanghaiTech, CSV)
SPLITS = ("train", "test")
SPLITS_PACKAGE = "data"  # package holding the shipped split files ...
SPLITS_FOLDER = "splits"  # ... in this folder

# UCF-Crime
UCF_DIR = "ucf_crime"
UCF_TRAIN = f"{UCF_DIR}/Anomaly_Train.txt"
UCF_TEST = f"{UCF_DIR}/Anomaly_Test.txt"
UCF_ANNOTATION = f"{UCF_DIR}/Temporal_Anomaly_Annotation.txt"
UCF_NORMAL_FOLDER_PREFIXES = ("Training_Normal", "Testing_Normal")
UCF_NORMAL_NAME_PREFIX = "Normal_Videos"
UCF_ANNOTATION_FIELDS = 6  # Name.mp4  Class  s1  e1  s2  e2
UCF_UNUSED = -1  # marks an unused interval in the UCF-Crime annotation

# ShanghaiTech (Zhong et al. 2019 weakly-supervised split)
SH_DIR = "shanghaitech"
SH_TRAIN = f"{SH_DIR}/train_order.txt"
SH_TEST = f"{SH_DIR}/test_order.txt"
SH_MASK_DIR = f"{SH_DIR}/test_frame_mask"
SH_MASK_SUFFIX = ".npy"

# XD-Violence
XD_DIR = "xd_violence"
XD_TRAIN = f"{XD_DIR}/train.txt"
XD_TEST = f"{XD_DIR}/test.txt"
XD_ANNOTATION = f"{XD_DIR}/annotations.txt"
XD_LABEL_MARK = "label_"  # the label codes follow the last occurrence, joined by "-" (e.g. label_B2-G-0)
XD_CODE_SEP = "-"
XD_NORMAL_CODE = "A"
XD_CLASSES = {"A": NORMAL_CLASS, "B1": "Fighting", "B2": "Shooting", "B4": "Riot", "B5": "Abuse",
              "B6": "Car accident", "G": "Explosion"}

# Labels CSV
LABELS_CSV = "labels.csv"  # the file load_dataset reads inside a folder
CSV_REQUIRED = ("name", "label", "split")
CSV_OPTIONAL = ("class", "intervals")
CSV_LABELS = {"0": 0, "1": 1, "normal": 0, "anomalous": 1, "abnormal": 1}
CSV_INTERVAL_SEP = ";"
CSV_RANGE_SEP = "-"


class DatasetError(ValueError):
    """Bad labels: the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class VideoEntry:
    """One video of a dataset.

    ``name``: the list's name without folder or extension (as :func:`data.discover.video_name` gives), the key
    under which its features are found in the store; ``label`` 1 anomalous, 0 normal; ``class_name``
    (``"Normal"`` for normal videos); ``split`` ``"train"`` or ``"test"``; ``intervals``: annotated frame
    intervals ``[start, end)``; ``mask_file``: a per-frame 0/1 mask (ShanghaiTech), a path or a path relative to
    ``data/splits``.
    """

    name: str
    label: int
    class_name: str
    split: str
    intervals: tuple[tuple[int, int], ...] = ()
    mask_file: str | None = None

    def __post_init__(self):
        if self.label not in (0, 1):
            raise ValueError(f"{self.name}: label must be 0 (normal) or 1 (anomalous), got {self.label!r}")
        if self.split not in SPLITS:
            raise ValueError(f"{self.name}: split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.label == 0 and (self.intervals or self.mask_file):
            raise ValueError(f"{self.name}: a normal video cannot have anomalous frames (intervals or a mask)")


@dataclass
class DatasetSpec:
    """A dataset: ``entries`` are the train entries then the test entries, each in the dataset's canonical list
    order (the order in which test scores are concatenated); ``source`` says where the labels came from."""

    name: str
    entries: list[VideoEntry]
    source: str

    def split(self, which: str) -> list[VideoEntry]:
        """The entries of ``which`` (``"train"`` or ``"test"``) in canonical order."""
        if which not in SPLITS:
            raise ValueError(f"unknown split {which!r}: choose one of {', '.join(SPLITS)}")
        return [e for e in self.entries if e.split == which]

    def frame_labels(self, entry: VideoEntry, n_snippets: int) -> np.ndarray:
        """uint8 ``[16 * n_snippets]`` frame labels of ``entry`` (:func:`data.ground_truth.frame_labels` of its
        intervals and mask). Raises ValueError for an anomalous video without any frame annotation (training
        videos of the benchmarks carry only the video-level label), since all-zero labels would be wrong."""
        mask = load_mask(entry.mask_file) if entry.mask_file else None
        if entry.label == 1 and not entry.intervals and mask is None:
            raise ValueError(f"{entry.name} ({entry.split}, {self.source}): an anomalous video without frame-level "
                             f"annotation has no frame labels; give its anomalous frames (the 'intervals' column "
                             f"of a labels CSV) or evaluate on annotated test videos only")
        return ground_truth.frame_labels(n_snippets, entry.intervals, mask)

    def fingerprint(self) -> dict:
        """JSON-able identity of the labels that training depends on: the dataset name and every entry's
        ``(name, label, split)`` in order."""
        return {"name": self.name, "entries": [[e.name, e.label, e.split] for e in self.entries]}


# ================================================================================================================
# Shipped files


def _splits_resource(relative: str):
    return resources.files(SPLITS_PACKAGE).joinpath(SPLITS_FOLDER, *relative.split("/"))


def _lines(relative: str) -> list[tuple[int, str]]:
    """Non-empty stripped lines of a shipped split file, with their 1-based line numbers."""
    return [(n, line.strip()) for n, line in enumerate(split_file(relative).splitlines(), 1) if line.strip()]


def _where(relative: str, lineno: int | None = None) -> str:
    return f"{SPLITS_FOLDER}/{relative}" + (f":{lineno}" if lineno is not None else "")


@functools.lru_cache(maxsize=None)
def _load_mask_cached(mask_file: str) -> np.ndarray:
    path = Path(mask_file)
    res = None if path.is_absolute() else _splits_resource(path.as_posix())
    if res is not None and res.is_file():
        with res.open("rb") as fh:
            mask = np.load(fh, allow_pickle=False)
    elif path.is_file():
        mask = np.load(path, allow_pickle=False)
    else:
        raise FileNotFoundError(f"frame mask {mask_file} is neither a file nor a resource in data/splits "
                                f"(restore the file or reinstall the package, or fix the entry's mask_file)")
    mask = np.asarray(mask)
    if mask.ndim != 1:
        raise ValueError(f"frame mask {mask_file}: expected a 1-D 0/1 array (one value per frame), got shape "
                         f"{mask.shape}")
    mask.setflags(write=False)
    return mask


def load_mask(mask_file: str) -> np.ndarray:
    """The per-frame 0/1 mask ``[n_frames]`` at ``mask_file`` (a path, or a path relative to ``data/splits``).
    Cached; the returned array is read-only."""
    return _load_mask_cached(str(mask_file))


def _check_unique(entries: list[VideoEntry], source: str) -> None:
    seen: set[str] = set()
    for e in entries:
        if e.name in seen:
            raise DatasetError(f"{source}: video {e.name!r} is listed twice (each video may appear once, in one "
                               f"split)")
        seen.add(e.name)


def read_ucf_annotation(text: str, where: str) -> dict[str, tuple[str, tuple[tuple[int, int], ...]]]:
    """Parse UCF-Crime's ``Temporal_Anomaly_Annotation.txt``: ``{name: (class, ((s, e), ...))}``.

    Lines are ``Name.mp4  Class  s1  e1  s2  e2`` with ``-1 -1`` for an unused interval; names lose their
    extension. Intervals are taken as ``[s, e)`` (method.md §7). ``where`` names the file in errors.
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
    return out


def _load_ucf_crime() -> DatasetSpec:
    annotation = read_ucf_annotation(split_file(UCF_ANNOTATION), _where(UCF_ANNOTATION))
    entries: list[VideoEntry] = []
    for split, rel in (("train", UCF_TRAIN), ("test", UCF_TEST)):
        for lineno, line in _lines(rel):
            folder, _, file_name = line.replace("\\", "/").rpartition("/")
            name = video_name(file_name)
            normal = folder.startswith(UCF_NORMAL_FOLDER_PREFIXES) or name.startswith(UCF_NORMAL_NAME_PREFIX)
            if not normal and not folder:
                raise DatasetError(f"{_where(rel, lineno)}: {line!r} has no class folder ('Class/Name.mp4')")
            class_name = NORMAL_CLASS if normal else folder.rsplit("/", 1)[-1]
            intervals: tuple[tuple[int, int], ...] = ()
            if split == "test":
                if name not in annotation:
                    raise DatasetError(f"{_where(rel, lineno)}: {name} has no line in {_where(UCF_ANNOTATION)}")
                ann_class, intervals = annotation[name]
                if normal != (ann_class == NORMAL_CLASS) or normal == bool(intervals):
                    raise DatasetError(f"{_where(rel, lineno)}: {name} is {'normal' if normal else class_name} "
                                       f"but {_where(UCF_ANNOTATION)} says {ann_class} with intervals "
                                       f"{list(intervals)}")
            entries.append(VideoEntry(name, 0 if normal else 1, class_name, split, intervals))
    # Canonical order (RTFM's ucf-i3d(-test).list, VadCLIP's ucf_CLIP_rgb(test).csv): per split, the anomalous
    # videos in file order, then the normal ones in file order. The official files are alphabetical by folder,
    # which puts the Vandalism folder behind the Training_Normal / Testing_Normal one.
    entries.sort(key=lambda e: (SPLITS.index(e.split), 1 - e.label))  # stable: file order within each group
    _check_unique(entries, _where(UCF_DIR))
    return DatasetSpec("ucf-crime", entries, _where(UCF_DIR))


def _shanghaitech_masks() -> set[str]:
    folder = _splits_resource(SH_MASK_DIR)
    return {p.name[:-len(SH_MASK_SUFFIX)] for p in folder.iterdir() if p.name.endswith(SH_MASK_SUFFIX)}


def _load_shanghaitech() -> DatasetSpec:
    masks = _shanghaitech_masks()
    entries: list[VideoEntry] = []
    for split, rel in (("train", SH_TRAIN), ("test", SH_TEST)):
        for _, line in _lines(rel):
            name = video_name(line)
            if name in masks:
                mask = f"{SH_MASK_DIR}/{name}{SH_MASK_SUFFIX}" if split == "test" else None
                entries.append(VideoEntry(name, 1, ANOMALY_CLASS, split, mask_file=mask))
            else:
                entries.append(VideoEntry(name, 0, NORMAL_CLASS, split))
    _check_unique(entries, _where(SH_DIR))
    return DatasetSpec("shanghaitech", entries, _where(SH_DIR))


def xd_class(name: str) -> str:
    """XD-Violence class of a video name: its first label code after ``label_`` (``..._label_B2-G-0`` ->
    ``Shooting``; ``label_A`` -> ``Normal``). Raises ValueError for a name without known codes."""
    if XD_LABEL_MARK not in name:
        raise ValueError(f"{name}: an XD-Violence name carries its labels after {XD_LABEL_MARK!r}")
    code = name.rsplit(XD_LABEL_MARK, 1)[1].split(XD_CODE_SEP)[0]
    if code not in XD_CLASSES:
        raise ValueError(f"{name}: unknown XD-Violence label code {code!r} (known: {', '.join(XD_CLASSES)})")
    return XD_CLASSES[code]


def _read_xd_annotation(rel: str) -> dict[str, tuple[tuple[int, int], ...]]:
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for lineno, line in _lines(rel):
        fields = line.split()
        try:
            nums = [int(v) for v in fields[1:]]
        except ValueError:
            raise DatasetError(f"{_where(rel, lineno)}: frame numbers must be integers, got {line!r}") from None
        if not nums or len(nums) % 2:
            raise DatasetError(f"{_where(rel, lineno)}: expected 'name s1 e1 [s2 e2 ...]', got {line!r}")
        pairs = tuple(zip(nums[0::2], nums[1::2]))
        if any(s < 0 or e <= s for s, e in pairs):
            raise DatasetError(f"{_where(rel, lineno)}: bad interval in {line!r}; need 0 <= start < end")
        out[video_name(fields[0])] = pairs
    return out


def _load_xd_violence() -> DatasetSpec:
    annotation = _read_xd_annotation(XD_ANNOTATION)
    entries: list[VideoEntry] = []
    for split, rel in (("train", XD_TRAIN), ("test", XD_TEST)):
        for lineno, line in _lines(rel):
            name = video_name(line)
            normal = f"{XD_LABEL_MARK}{XD_NORMAL_CODE}" in name
            try:
                class_name = NORMAL_CLASS if normal else xd_class(name)
            except ValueError as exc:
                raise DatasetError(f"{_where(rel, lineno)}: {exc}") from None
            intervals: tuple[tuple[int, int], ...] = ()
            if split == "test":
                intervals = annotation.pop(name, ())
                if normal == bool(intervals):
                    raise DatasetError(f"{_where(rel, lineno)}: {name} is {'normal' if normal else 'violent'} but "
                                       f"{_where(XD_ANNOTATION)} gives it {len(intervals)} intervals")
            entries.append(VideoEntry(name, 0 if normal else 1, class_name, split, intervals))
    if annotation:
        raise DatasetError(f"{_where(XD_ANNOTATION)}: {len(annotation)} annotated videos are not in "
                           f"{_where(XD_TEST)}, e.g. {next(iter(annotation))}")
    _check_unique(entries, _where(XD_DIR))
    return DatasetSpec("xd-violence", entries, _where(XD_DIR))


_OFFICIAL = {"ucf-crime": _load_ucf_crime, "shanghaitech": _load_shanghaitech, "xd-violence": _load_xd_violence}


# ================================================================================================================
# Labels CSV


def _parse_label(value: str, where: str) -> int:
    key = value.strip().lower()
    if key not in CSV_LABELS:
        raise DatasetError(f"{where}: label {value!r} is not one of {', '.join(CSV_LABELS)} (write 1 or "
                           f"'anomalous' for anomalous videos, 0 or 'normal' for normal ones)")
    return CSV_LABELS[key]


def _parse_intervals(value: str, where: str) -> tuple[tuple[int, int], ...]:
    intervals = []
    for part in value.split(CSV_INTERVAL_SEP):
        part = part.strip()
        if not part:
            continue
        start, sep, end = part.partition(CSV_RANGE_SEP)
        try:
            if not sep:
                raise ValueError
            s, e = int(start), int(end)
        except ValueError:
            raise DatasetError(f"{where}: interval {part!r} is not 'start-end' (frame numbers, end exclusive, "
                               f"several separated by ';', e.g. 120-200;340-400)") from None
        if s < 0 or e <= s:
            raise DatasetError(f"{where}: interval {part!r} needs 0 <= start < end (end exclusive)")
        intervals.append((s, e))
    return tuple(sorted(intervals))


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
        intervals = _parse_intervals(cells.get("intervals", ""), where)
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
        by_split[split].append(VideoEntry(video, label, class_name, split, intervals))
    if header is None:
        raise DatasetError(f"{path}:1: empty labels CSV; write a header {','.join(CSV_REQUIRED + CSV_OPTIONAL)} "
                           f"and one line per video")
    if name is None:
        name = path.resolve().parent.name if path.name == LABELS_CSV else path.stem
    return DatasetSpec(name, by_split["train"] + by_split["test"], str(path))


# ================================================================================================================
# Entry point


def load_dataset(spec: str | Path) -> DatasetSpec:
    """The dataset named by ``spec``: one of :data:`DATASETS` (official splits shipped in ``data/splits``), a
    labels CSV, or a folder containing ``labels.csv`` (e.g. one written by ``data.synthetic``)."""
    if isinstance(spec, str) and spec in _OFFICIAL:
        return _OFFICIAL[spec]()
    path = Path(spec)
    if path.is_dir():
        csv_path = path / LABELS_CSV
        if not csv_path.is_file():
            raise FileNotFoundError(f"{path}: no {LABELS_CSV} in this folder; write one (columns "
                                    f"{','.join(CSV_REQUIRED + CSV_OPTIONAL)}) or pass the labels CSV itself")
        return load_labels_csv(csv_path)
    if path.is_file():
        return load_labels_csv(path)
    alias = str(spec).strip().lower().replace("_", "-")
    if alias in _OFFICIAL:
        return _OFFICIAL[alias]()
    raise ValueError(f"unknown dataset {str(spec)!r}: choose one of {', '.join(DATASETS)}, or pass a labels CSV "
                     f"(columns {','.join(CSV_REQUIRED + CSV_OPTIONAL)}) or a folder containing {LABELS_CSV}")
