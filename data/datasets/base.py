"""The pieces every dataset module shares: the entry and dataset types (:class:`VideoEntry`, :class:`DatasetSpec`),
:class:`DatasetError`, the class names and splits, the interval syntax, and reading the split and annotation files
shipped in ``data/splits`` (sources in its PROVENANCE.md).

Annotated intervals are frame ranges ``[start, end)`` (0-based, end exclusive), the rule of method.md §7
(``gt[s:e] = 1``), applied to the official files as written. Written out they are ``start-end``, several
separated by ``;`` (``120-200;340-400``): the ``intervals`` column of a labels CSV and Avenue's ``intervals.txt``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from data import ground_truth

NORMAL_CLASS = "Normal"
ANOMALY_CLASS = "Anomaly"  # class of an anomalous video whose labels give no class (ShanghaiTech, CSV)
SPLITS = ("train", "test")
SPLITS_PACKAGE = "data"  # package holding the shipped split files ...
SPLITS_FOLDER = "splits"  # ... in this folder
INTERVAL_SEP = ";"  # between the intervals of a video: 120-200;340-400
RANGE_SEP = "-"  # between an interval's start and end (end exclusive)


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


def splits_resource(relative: str):
    """The shipped file or folder ``data/splits/<relative>`` (an ``importlib.resources`` Traversable)."""
    return resources.files(SPLITS_PACKAGE).joinpath(SPLITS_FOLDER, *relative.split("/"))


def split_file(relative: str) -> str:
    """Text of a split/annotation file shipped in ``data/splits`` (``relative`` to it, ``/``-separated), or of the
    file itself for an absolute path (a registered dataset's own lists outside the package)."""
    if Path(relative).is_absolute():
        return Path(relative).read_text(encoding="utf-8")
    return splits_resource(relative).read_text(encoding="utf-8")


def split_lines(relative: str) -> list[tuple[int, str]]:
    """Non-empty stripped lines of a split file (:func:`split_file`), with their 1-based line numbers."""
    return [(n, line.strip()) for n, line in enumerate(split_file(relative).splitlines(), 1) if line.strip()]


def split_where(relative: str, lineno: int | None = None) -> str:
    """How errors name a split file (``splits/avenue/train.txt:3``; an absolute path as it is)."""
    name = relative if Path(relative).is_absolute() else f"{SPLITS_FOLDER}/{relative}"
    return name + (f":{lineno}" if lineno is not None else "")


@functools.lru_cache(maxsize=None)
def _load_mask_cached(mask_file: str) -> np.ndarray:
    path = Path(mask_file)
    res = None if path.is_absolute() else splits_resource(path.as_posix())
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


# ================================================================================================================
# Checks and syntax shared by several datasets


def check_unique(entries: list[VideoEntry], source: str) -> None:
    """DatasetError naming ``source`` when a video is listed twice or an alias names two videos."""
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


def int_pair(text: str, sep: str) -> tuple[int, int] | None:
    """``"12-40"`` with ``sep="-"`` -> (12, 40); None when it is not two integers around ``sep``."""
    first, found, last = text.partition(sep)
    try:
        return (int(first), int(last)) if found else None
    except ValueError:
        return None


def parse_intervals(value: str, where: str) -> tuple[tuple[int, int], ...]:
    """``"120-200;340-400"`` -> ``((120, 200), (340, 400))``, sorted; ``where`` names the file and line in errors."""
    intervals = []
    for part in value.split(INTERVAL_SEP):
        part = part.strip()
        if not part:
            continue
        pair = int_pair(part, RANGE_SEP)
        if pair is None:
            raise DatasetError(f"{where}: interval {part!r} is not 'start-end' (frame numbers, end exclusive, "
                               f"several separated by ';', e.g. 120-200;340-400)")
        s, e = pair
        if s < 0 or e <= s:
            raise DatasetError(f"{where}: interval {part!r} needs 0 <= start < end (end exclusive)")
        intervals.append((s, e))
    return tuple(sorted(intervals))
