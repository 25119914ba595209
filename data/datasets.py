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
``ucsd-ped1``     UCSD Ped1 (34 Train + 36 Test clips, 200 frames each) and ``ucsd-ped2`` (16 Train + 12 Test
``ucsd-ped2``     clips, 120-180 frames): every Test clip holds anomalies, every Train clip is normal. Frame ranges
                  from ``gt_frame.txt``, the ``gt_frame`` lists of the official ``UCSDped1.m`` / ``UCSDped2.m``
                  (1-based inclusive MATLAB ranges ``[a:b]``, read as ``[a - 1, b)``); frame counts in
                  ``frames.txt``. One weak split each, ``train.txt`` / ``test.txt`` (anomalous first): Ped1 train =
                  Test001-018 + Train001-020, test = Test019-036 + Train021-034; Ped2 train = Test001-006 +
                  Train001-008, test = Test007-012 + Train009-016. Entries are named as the official frame
                  folders (``Train001``) with the aliases ``train_01`` (a converted ``videos/train_01.mp4``) and
                  ``training/frames/01`` (the frame layout of MNAD and its successors).
``avenue``        CUHK Avenue (16 training + 21 testing videos; every testing video holds anomalies): entries
                  ``train_01`` .. ``train_16`` and ``test_01`` .. ``test_21``, with the aliases
                  ``training_videos/01`` / ``testing_videos/01`` (the official ``.avi`` files, whose names repeat
                  across the two folders) and ``training/frames/01`` / ``testing/frames/01``. Intervals
                  (0-based, end exclusive) from ``intervals.txt``, test frame counts in ``frames.txt``. Weak
                  split: train = test_01-11 + train_01-08, test = test_12-21 + train_09-16 (anomalous first).

Annotated intervals are frame ranges ``[start, end)`` (end exclusive), the rule of method.md §7
(``gt[s:e] = 1``), applied to the official files as written.

A labels CSV (``load_dataset(path)``; a folder means ``<folder>/labels.csv``) has a header with the columns
``name,label,split`` and optionally ``class,intervals``:

    name,label,split,class,intervals
    videos/cam1_0001.mp4,anomalous,test,Fight,120-200;340-400
    cam1_0002,0,train,,

``label`` is one of 0, 1, normal, anomalous, abnormal (any case); ``split`` is train or test; ``intervals`` are
frame ranges ``start-end`` (end exclusive) separated by ``;``; ``name`` may be a file name or path (folder and
video extension are dropped, as :func:`data.layout.video_name` does).

A frame-label folder (``load_dataset(folder)`` for a folder with ``videos/`` and no ``labels.csv``) holds
``videos/`` (video files or frame folders, searched recursively) and optionally ``labels/<name>.npy``: a 1-D 0/1
array (bool or integer dtype), one value per frame. A video whose labels hold a 1 is anomalous, and its test
frame labels are that file; a video without labels, or with all-zero ones, is normal. The split is
``split.csv`` (columns ``name,split``, every video once) when present, else per class in natural name order
train, test, train, test, ... (UCSD Ped2 in this layout, 16 normal + 12 anomalous videos, gives 8 + 6 train and
8 + 6 test). Each split lists its anomalous videos first, each class in natural name order.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from data import ground_truth
from data.decode import _natural_key, _probe, frame_folder_files
from data.layout import DATASETS, list_videos, split_file, video_name
from data.errors import VideoError

__all__ = ["VideoEntry", "DatasetSpec", "DATASETS", "DatasetError", "load_dataset", "load_labels_csv",
           "load_frame_label_folder", "matlab_ranges", "official_intervals", "NORMAL_CLASS", "ANOMALY_CLASS", "SPLITS",
           "LABELS_CSV",
           "XD_CLASSES"]

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

# UCSD Ped1 / Ped2 (Mahadevan et al. 2010) and CUHK Avenue (Lu et al. 2013): shipped ranges, counts, weak split
UCSD_DIRS = {"ucsd-ped1": "ucsd_ped1", "ucsd-ped2": "ucsd_ped2"}
AVENUE_DIR = "avenue"
WEAK_TRAIN = "train.txt"  # the weak split's train names (anomalous first) ...
WEAK_TEST = "test.txt"  # ... and test names, in the canonical order
FRAMES_FILE = "frames.txt"  # 'name n_frames' per clip
UCSD_GT_FRAME = "gt_frame.txt"  # 'Test001 [60:152]': the gt_frame lists of UCSDpedN.m, 1-based inclusive
AVENUE_INTERVALS = "intervals.txt"  # 'test_01 77-120 391-422 ...': 0-based, end exclusive
UCSD_TEST = "Test"  # official clip names: Train001 .., Test001 ..; the Test clips are the anomalous ones
UCSD_SPLIT_WORDS = {"Train": "train", "Test": "test"}  # clip name prefix -> the word of its aliases
UCSD_ALIASES = ("{split}_{n:02d}", "{split}ing/frames/{n:02d}")  # Train001 -> train_01, training/frames/01
AVENUE_TEST_PREFIX = "test_"  # Avenue entries are train_01 .. train_16 and test_01 .. test_21
AVENUE_ALIASES = ("{split}ing_videos/{n:02d}", "{split}ing/frames/{n:02d}")  # training_videos/01.avi, frames
MATLAB_RANGE_SEP = ","
MATLAB_RANGE = ":"

# Frame-label folder
VIDEOS_DIR = "videos"  # what makes a folder without labels.csv a frame-label folder
FRAME_LABELS_DIR = "labels"  # labels/<name>.npy: one 0/1 value per frame
FRAME_LABELS_SUFFIX = ".npy"
SPLIT_CSV = "split.csv"  # optional: name,split
SPLIT_CSV_COLUMNS = ("name", "split")
FRAME_LABEL_DTYPE_KINDS = "biu"  # bool, signed or unsigned integers
LABEL_VALUES_SHOWN = 5  # distinct values quoted in the error about a labels file that is not 0/1

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

    ``name``: the list's name without folder or extension (as :func:`data.layout.video_name` gives), the key
    under which its features are found in the store; ``label`` 1 anomalous, 0 normal; ``class_name``
    (``"Normal"`` for normal videos); ``split`` ``"train"`` or ``"test"``; ``intervals``: annotated frame
    intervals ``[start, end)``; ``mask_file``: a per-frame 0/1 mask (ShanghaiTech), a path or a path relative to
    ``data/splits``; ``aliases``: other names under which the same video may be found on disk and in the store
    (``train_01`` for UCSD's ``Train001``), tried in order after ``name``; an alias may name the folders right
    above the video too (``testing_videos/01``, see :func:`data.layout.name_matches`); ``where``: the file and
    line its intervals were read from (``labels.csv:3``), for errors only (not compared, not in any key).
    """

    name: str
    label: int
    class_name: str
    split: str
    intervals: tuple[tuple[int, int], ...] = ()
    mask_file: str | None = None
    aliases: tuple[str, ...] = ()
    where: str = field(default="", compare=False)

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

    def frame_labels(self, entry: VideoEntry, n_snippets: int, n_frames: int | None = None) -> np.ndarray:
        """uint8 ``[16 * n_snippets]`` frame labels of ``entry`` (:func:`data.ground_truth.frame_labels` of its
        intervals and mask). Raises ValueError for an anomalous video without any frame annotation (training
        videos of the benchmarks carry only the video-level label), since all-zero labels would be wrong.

        ``n_frames``: the video's frame count when known (the store records it for extracted videos); else the
        video has at most ``16 * n_snippets + 15`` frames (a tail of fewer than 16 frames forms no snippet). An
        interval wholly outside the video (starting at or past its last frame: labels of another video, or
        numbered at another frame rate) is a :class:`DatasetError` naming the file, line and video length, since
        dropping it would silently count the video as normal. An interval partly outside is cut: the labels
        cover the ``16 * n_snippets`` scored frames, so frames past the video's end, and the unscored tail, are
        dropped (method.md §7's ``gt[s:e] = 1`` truncated to ``16 * T``)."""
        mask = load_mask(entry.mask_file) if entry.mask_file else None
        if entry.label == 1 and not entry.intervals and mask is None:
            raise ValueError(f"{entry.name} ({entry.split}, {self.source}): an anomalous video without frame-level "
                             f"annotation has no frame labels; give its anomalous frames (the 'intervals' column "
                             f"of a labels CSV) or evaluate on annotated test videos only")
        self._check_inside(entry, n_snippets, n_frames)
        return ground_truth.frame_labels(n_snippets, entry.intervals, mask)

    def _check_inside(self, entry: VideoEntry, n_snippets: int, n_frames: int | None) -> None:
        """DatasetError for the first interval of ``entry`` that starts at or past the end of its video."""
        scored = ground_truth.SNIPPET_FRAMES * int(n_snippets)
        if n_frames:
            length, told = int(n_frames), f"{int(n_frames)} frames"
        else:
            length = scored + ground_truth.SNIPPET_FRAMES - 1
            told = (f"at most {length} frames: {n_snippets} snippets of {ground_truth.SNIPPET_FRAMES} and a tail of "
                    f"fewer than {ground_truth.SNIPPET_FRAMES}")
        for start, end in entry.intervals:
            if start >= length:
                raise DatasetError(f"{entry.where or self.source}: interval [{start}, {end}) of {entry.name} (0-based "
                                   f"frames, end exclusive) lies wholly past the end of its video ({told}); fix the "
                                   f"interval's frame numbers, or check that the labels name the right video")

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
    names = {e.name for e in entries}
    aliases: dict[str, str] = {}
    for e in entries:
        for alias in e.aliases:
            if alias in names or aliases.setdefault(alias, e.name) != e.name:
                raise DatasetError(f"{source}: alias {alias!r} of {e.name} also names another video; give each "
                                   f"video aliases of its own")


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


def _load_ucf_crime() -> DatasetSpec:
    lines: dict[str, int] = {}
    annotation = read_ucf_annotation(split_file(UCF_ANNOTATION), _where(UCF_ANNOTATION), lines)
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
            entries.append(VideoEntry(name, 0 if normal else 1, class_name, split, intervals,
                                      where=_where(UCF_ANNOTATION, lines[name]) if intervals else ""))
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


def _read_xd_annotation(rel: str, lines: dict[str, int]) -> dict[str, tuple[tuple[int, int], ...]]:
    """``{name: ((s, e), ...)}`` of XD-Violence's ``annotations.txt``; ``lines`` receives each name's line."""
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
        lines[video_name(fields[0])] = lineno
    return out


def _load_xd_violence() -> DatasetSpec:
    lines: dict[str, int] = {}
    annotation = _read_xd_annotation(XD_ANNOTATION, lines)
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
            entries.append(VideoEntry(name, 0 if normal else 1, class_name, split, intervals,
                                      where=_where(XD_ANNOTATION, lines[name]) if intervals else ""))
    if annotation:
        raise DatasetError(f"{_where(XD_ANNOTATION)}: {len(annotation)} annotated videos are not in "
                           f"{_where(XD_TEST)}, e.g. {next(iter(annotation))}")
    _check_unique(entries, _where(XD_DIR))
    return DatasetSpec("xd-violence", entries, _where(XD_DIR))


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
        pair = _int_pair(part.strip(), MATLAB_RANGE)
        if pair is None:
            raise DatasetError(f"{where}: range {part.strip()!r} is not 'first:last' (1-based frame numbers, "
                               f"inclusive)")
        a, b = pair
        if a < 1 or b < a:
            raise DatasetError(f"{where}: range {a}:{b} needs 1 <= first <= last (1-based, inclusive)")
        intervals.append((a - 1, b))
    return tuple(intervals)


def _read_frames(rel: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for lineno, line in _lines(rel):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) < 1:
            raise DatasetError(f"{_where(rel, lineno)}: expected 'name n_frames' (a positive count), got {line!r}")
        out[fields[0]] = int(fields[1])
    return out


def _read_ucsd_gt(rel: str, lines: dict[str, int] | None = None) -> dict[str, tuple[tuple[int, int], ...]]:
    """``{name: ((s, e), ...)}`` of a shipped ``gt_frame.txt``; ``lines``, when given, receives each name's line."""
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for lineno, line in _lines(rel):
        name, _, ranges = line.partition(" ")
        out[name] = matlab_ranges(ranges, _where(rel, lineno))
        if lines is not None:
            lines[name] = lineno
    return out


def _read_intervals(rel: str, lines: dict[str, int] | None = None) -> dict[str, tuple[tuple[int, int], ...]]:
    """``{name: ((s, e), ...)}`` of a shipped ``intervals.txt``; ``lines``, when given, receives each name's line."""
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for lineno, line in _lines(rel):
        name, *parts = line.split()
        out[name] = _parse_intervals(CSV_INTERVAL_SEP.join(parts), _where(rel, lineno))
        if lines is not None:
            lines[name] = lineno
    return out


def _weak_split(dataset: str, folder: str, annotation: str,
                intervals: dict[str, tuple[tuple[int, int], ...]], frames: dict[str, int], anomalous_prefix: str,
                aliases: Callable[[str], tuple[str, ...]], lines: dict[str, int]) -> DatasetSpec:
    """Entries of a weak split: ``train.txt`` then ``test.txt`` of ``folder``. A name starting with
    ``anomalous_prefix`` (the official test clips) is anomalous and must have intervals, every other name normal
    and without; test anomalous entries carry their intervals, which must lie within ``frames`` where listed.
    ``aliases(name)`` gives an entry's aliases; ``lines`` each annotated name's line in ``annotation``."""
    ann = _where(f"{folder}/{annotation}")
    entries: list[VideoEntry] = []
    for split, rel in (("train", f"{folder}/{WEAK_TRAIN}"), ("test", f"{folder}/{WEAK_TEST}")):
        for lineno, name in _lines(rel):
            anomalous = name.startswith(anomalous_prefix)
            if anomalous != bool(intervals.get(name)):
                raise DatasetError(f"{_where(rel, lineno)}: {name} is {'anomalous' if anomalous else 'normal'} "
                                   f"(every {anomalous_prefix}* clip holds anomalies) but {ann} gives it "
                                   f"{len(intervals.get(name, ()))} ranges")
            n_frames = frames.get(name)
            if anomalous and n_frames is not None and max(e for _, e in intervals[name]) > n_frames:
                raise DatasetError(f"{ann}: {name}'s ranges {list(intervals[name])} pass its {n_frames} frames "
                                   f"({_where(f'{folder}/{FRAMES_FILE}')})")
            test_intervals = anomalous and split == "test"
            entries.append(VideoEntry(name, int(anomalous), ANOMALY_CLASS if anomalous else NORMAL_CLASS, split,
                                      intervals[name] if test_intervals else (), aliases=aliases(name),
                                      where=_where(f"{folder}/{annotation}", lines[name]) if test_intervals else ""))
    _check_unique(entries, _where(folder))
    return DatasetSpec(dataset, entries, _where(folder))


def _ucsd_aliases(name: str) -> tuple[str, ...]:
    prefix = name.rstrip("0123456789")  # Train001 -> Train
    return tuple(a.format(split=UCSD_SPLIT_WORDS[prefix], n=int(name[len(prefix):])) for a in UCSD_ALIASES)


def _load_ucsd(dataset: str) -> DatasetSpec:
    folder, lines = UCSD_DIRS[dataset], {}
    return _weak_split(dataset, folder, UCSD_GT_FRAME, _read_ucsd_gt(f"{folder}/{UCSD_GT_FRAME}", lines),
                       _read_frames(f"{folder}/{FRAMES_FILE}"), UCSD_TEST, _ucsd_aliases, lines)


def _avenue_aliases(name: str) -> tuple[str, ...]:
    split, _, n = name.partition("_")
    return tuple(a.format(split=split, n=int(n)) for a in AVENUE_ALIASES)


def _load_avenue() -> DatasetSpec:
    lines: dict[str, int] = {}
    return _weak_split("avenue", AVENUE_DIR, AVENUE_INTERVALS,
                       _read_intervals(f"{AVENUE_DIR}/{AVENUE_INTERVALS}", lines),
                       _read_frames(f"{AVENUE_DIR}/{FRAMES_FILE}"), AVENUE_TEST_PREFIX, _avenue_aliases, lines)


def official_intervals(dataset: str) -> dict[str, tuple[tuple[int, int], ...]]:
    """Every clip's annotated frame intervals ``[start, end)`` of ``ucsd-ped1``, ``ucsd-ped2`` or ``avenue``,
    those of the weak split's training clips included (which :func:`load_dataset` keeps out: weak training sees
    video labels only). For references that are allowed frame labels, such as a fully supervised ceiling."""
    if dataset in UCSD_DIRS:
        return _read_ucsd_gt(f"{UCSD_DIRS[dataset]}/{UCSD_GT_FRAME}")
    if dataset == "avenue":
        return _read_intervals(f"{AVENUE_DIR}/{AVENUE_INTERVALS}")
    raise ValueError(f"{dataset}: official intervals ship for ucsd-ped1, ucsd-ped2 and avenue only")


_OFFICIAL = {"ucf-crime": _load_ucf_crime, "shanghaitech": _load_shanghaitech, "xd-violence": _load_xd_violence,
             "ucsd-ped1": functools.partial(_load_ucsd, "ucsd-ped1"),
             "ucsd-ped2": functools.partial(_load_ucsd, "ucsd-ped2"), "avenue": _load_avenue}


# ================================================================================================================
# Labels CSV


def _parse_label(value: str, where: str) -> int:
    key = value.strip().lower()
    if key not in CSV_LABELS:
        raise DatasetError(f"{where}: label {value!r} is not one of {', '.join(CSV_LABELS)} (write 1 or "
                           f"'anomalous' for anomalous videos, 0 or 'normal' for normal ones)")
    return CSV_LABELS[key]


def _int_pair(text: str, sep: str) -> tuple[int, int] | None:
    """``"12-40"`` with ``sep="-"`` -> (12, 40); None when it is not two integers around ``sep``."""
    first, found, last = text.partition(sep)
    try:
        return (int(first), int(last)) if found else None
    except ValueError:
        return None


def _parse_intervals(value: str, where: str) -> tuple[tuple[int, int], ...]:
    intervals = []
    for part in value.split(CSV_INTERVAL_SEP):
        part = part.strip()
        if not part:
            continue
        pair = _int_pair(part, CSV_RANGE_SEP)
        if pair is None:
            raise DatasetError(f"{where}: interval {part!r} is not 'start-end' (frame numbers, end exclusive, "
                               f"several separated by ';', e.g. 120-200;340-400)")
        s, e = pair
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
        by_split[split].append(VideoEntry(video, label, class_name, split, intervals, where=where))
    if header is None:
        raise DatasetError(f"{path}:1: empty labels CSV; write a header {','.join(CSV_REQUIRED + CSV_OPTIONAL)} "
                           f"and one line per video")
    if name is None:
        name = path.resolve().parent.name if path.name == LABELS_CSV else path.stem
    return DatasetSpec(name, by_split["train"] + by_split["test"], str(path))


# ================================================================================================================
# Frame-label folder


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


# ================================================================================================================
# Entry point


def load_dataset(spec: str | Path) -> DatasetSpec:
    """The dataset named by ``spec``: one of :data:`DATASETS` (official splits shipped in ``data/splits``), a
    labels CSV, a folder containing ``labels.csv`` (e.g. one written by ``data.synthetic``), or a frame-label
    folder (``videos/`` and optionally ``labels/<name>.npy``, no ``labels.csv``)."""
    if isinstance(spec, str) and spec in _OFFICIAL:
        return _OFFICIAL[spec]()
    path = Path(spec)
    if path.is_dir():
        csv_path = path / LABELS_CSV
        if csv_path.is_file():
            return load_labels_csv(csv_path)
        if (path / VIDEOS_DIR).is_dir():
            return load_frame_label_folder(path)
        raise FileNotFoundError(f"{path}: no {LABELS_CSV} and no {VIDEOS_DIR}/ folder here; write a {LABELS_CSV} "
                                f"(columns {','.join(CSV_REQUIRED + CSV_OPTIONAL)}), put the videos in "
                                f"{VIDEOS_DIR}/ with per-frame labels in {FRAME_LABELS_DIR}/<name>"
                                f"{FRAME_LABELS_SUFFIX}, or pass the labels CSV itself")
    if path.is_file():
        return load_labels_csv(path)
    alias = str(spec).strip().lower().replace("_", "-")
    if alias in _OFFICIAL:
        return _OFFICIAL[alias]()
    raise ValueError(f"unknown dataset {str(spec)!r}: choose one of {', '.join(DATASETS)}, or pass a labels CSV "
                     f"(columns {','.join(CSV_REQUIRED + CSV_OPTIONAL)}) or a folder containing {LABELS_CSV}")
