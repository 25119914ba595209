"""The community's pre-extracted feature files and the lists that name them (RTFM, UR-DMU, XDVioDet, VadCLIP).

List formats handled:

- one ``.npy`` path per line (RTFM ``ucf-i3d.list``, ``shanghai-i3d-test-10crop.list``; XDVioDet ``rgb.list``;
  UR-DMU ``UCF_Train.list``). Paths are the authors' (absolute, Windows ``G:\\...`` or relative);
- a CSV with the header ``path,label`` (VadCLIP ``ucf_CLIP_rgb.csv``): the first column is the path.

File layouts: one file per video, ``[T, crops, D]`` (RTFM ten-crop, ``Name_i3d.npy``) or ``[T, D]``; or one file
per crop, ``Name__0.npy`` ... ``Name__9.npy`` (XDVioDet, UR-DMU, VadCLIP), which are grouped into one feature in
crop-index order wherever they appear in the list. A video's name is the file name without ``.npy``, the crop
suffix ``__<n>`` and a backbone suffix (:data:`BACKBONE_SUFFIXES`), so it matches the dataset lists' names.

With ``root``, each file is looked up by its file name anywhere below ``root`` (the lists' paths are from the
authors' machines); without it, a relative path is taken relative to the list's folder, then to the current
folder. Files that cannot be found are kept (so the list order is kept) and reported, with their list line, by
:func:`load_community_feature`.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

__all__ = ["CommunityFeature", "FeatureFileError", "BACKBONE_SUFFIXES", "FEATURE_EXTENSION", "feature_name",
           "read_feature_list", "load_community_feature"]

FEATURE_EXTENSION = ".npy"
# Backbone tags that feature files append to the video name (RTFM: ``01_0015_i3d.npy``).
BACKBONE_SUFFIXES = ("_i3d", "_c3d", "_s3d", "_x3d", "_clip", "_vit", "_swin", "_videomae")
CROP_SUFFIX = re.compile(r"__(\d+)$")  # per-crop files: Name__<crop index>
CSV_HEADER_FIRST_FIELD = "path"  # VadCLIP lists: 'path,label' header, the path in the first column
CSV_SEP = ","
COMMENT_PREFIX = "#"


class FeatureFileError(ValueError):
    """A feature file or list that cannot be used. ``path``: the file at fault; ``where``: ``list:line`` (or the
    path); ``reason`` and ``fix`` for the user. The message is ``where: reason; fix``."""

    def __init__(self, path: str | Path, reason: str, fix: str = "", *, where: str | None = None):
        self.path = str(path)
        self.where = where or self.path
        self.reason = reason
        self.fix = fix
        super().__init__(f"{self.where}: {reason}" + (f"; {fix}" if fix else ""))


@dataclass(frozen=True)
class CommunityFeature:
    """One video's features in a community list: ``name`` (as the dataset lists spell it) and ``files``, either
    one file (``[T, crops, D]`` or ``[T, D]``) or the per-crop files ``[T, D]`` in crop order. ``list_file``
    and ``lines`` (1-based, parallel to ``files``) say where the files were listed, for error messages."""

    name: str
    files: tuple[Path, ...]
    list_file: Path | None = None
    lines: tuple[int, ...] = ()

    def where(self, index: int = 0) -> str:
        """``list:line`` of file ``index`` (or just the name when the feature was not read from a list)."""
        if self.list_file is None or index >= len(self.lines):
            return self.name
        return f"{self.list_file}:{self.lines[index]}"


def _file_name(path: str | Path) -> str:
    """The last component of a path written on any system (``G:\\x\\a.npy`` and ``/x/a.npy`` give ``a.npy``)."""
    text = str(path)
    return PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name


def _split_name(path: str | Path) -> tuple[str, int | None]:
    stem = _file_name(path)
    if stem.lower().endswith(FEATURE_EXTENSION):
        stem = stem[:-len(FEATURE_EXTENSION)]
    crop = None
    m = CROP_SUFFIX.search(stem)
    if m:
        crop = int(m.group(1))
        stem = stem[:m.start()]
    for suffix in BACKBONE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[:-len(suffix)]
            break
    return stem, crop


def feature_name(path: str | Path) -> str:
    """Video name of a feature file: the file name without ``.npy``, a per-crop suffix ``__<n>`` and a backbone
    suffix from :data:`BACKBONE_SUFFIXES` (``G:\\UCF\\Abuse001_x264_i3d.npy`` -> ``Abuse001_x264``;
    ``.../v=abc__#1_label_A__3.npy`` -> ``v=abc__#1_label_A``)."""
    return _split_name(path)[0]


def _list_paths(list_file: Path) -> list[tuple[int, str]]:
    """``(line number, path)`` of every entry of a list file (plain or VadCLIP CSV)."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FeatureFileError(list_file, f"cannot read the feature list ({exc})",
                               f"pass a text file with one {FEATURE_EXTENSION} path per line") from None
    out: list[tuple[int, str]] = []
    csv_mode = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(COMMENT_PREFIX):
            continue
        if not out and not csv_mode and line.split(CSV_SEP)[0].strip().lower() == CSV_HEADER_FIRST_FIELD:
            csv_mode = True  # header of a VadCLIP list
            continue
        if csv_mode:
            line = line.rsplit(CSV_SEP, 1)[0].strip() if CSV_SEP in line else line
        if not line.lower().endswith(FEATURE_EXTENSION):
            raise FeatureFileError(list_file, f"{line!r} is not a {FEATURE_EXTENSION} file",
                                   f"a feature list has one {FEATURE_EXTENSION} path per line",
                                   where=f"{list_file}:{lineno}")
        out.append((lineno, line))
    return out


def _index_root(root: Path) -> dict[str, list[Path]]:
    """Every ``.npy`` file below ``root`` by file name."""
    index: dict[str, list[Path]] = {}
    for folder, _, files in os.walk(root, followlinks=True):
        for f in files:
            if f.lower().endswith(FEATURE_EXTENSION):
                index.setdefault(f, []).append(Path(folder) / f)
    return index


def _parts(path: str) -> list[str]:
    return list((PureWindowsPath(path) if "\\" in path else PurePosixPath(path)).parts)


def _pick(listed: str, candidates: list[Path], where: str) -> Path:
    """The candidate whose folders agree with the listed path for the most trailing components."""
    if len(candidates) == 1:
        return candidates[0]
    want = _parts(listed)[::-1]

    def agreement(p: Path) -> int:
        n = 0
        for a, b in zip(p.parts[::-1], want):
            if a != b:
                break
            n += 1
        return n

    scores = sorted(((agreement(p), str(p)) for p in candidates), reverse=True)
    if scores[0][0] == scores[1][0]:
        raise FeatureFileError(listed, f"{_file_name(listed)} is found more than once below the root "
                               f"({scores[0][1]}, {scores[1][1]})", "pass a root that holds only one of them",
                               where=where)
    return Path(scores[0][1])


def _resolve(listed: str, list_file: Path, index: dict[str, list[Path]] | None, where: str) -> Path:
    if index is not None:
        candidates = index.get(_file_name(listed))
        return _pick(listed, candidates, where) if candidates else Path(listed)
    path = Path(listed)
    if path.is_absolute():
        return path
    beside = list_file.parent / path
    return beside if beside.exists() else path


def read_feature_list(list_file: str | Path, *, root: Path | None = None) -> list[CommunityFeature]:
    """The features named by a community list, one :class:`CommunityFeature` per video in list order (a video's
    position is that of its first file). Per-crop files ``Name__<n>.npy`` are grouped in crop order wherever
    they appear. With ``root``, files are looked up by file name anywhere below ``root``.

    Raises :class:`FeatureFileError` (naming ``list:line``) for a malformed list: a line that is not a ``.npy``
    path, a crop listed twice, crops that are not ``0..n-1``, or a video listed both whole and per crop.
    Missing files are not an error here; :func:`load_community_feature` reports them with their list line.
    """
    list_file = Path(list_file)
    if root is not None and not Path(root).is_dir():
        raise FeatureFileError(root, "the feature root is not a folder",
                               f"pass the folder that holds the {FEATURE_EXTENSION} files")
    index = _index_root(Path(root)) if root is not None else None
    groups: dict[str, dict] = {}  # name -> {"whole": (line, path) | None, "crops": {crop: (line, path)}}
    for lineno, listed in _list_paths(list_file):
        where = f"{list_file}:{lineno}"
        name, crop = _split_name(listed)
        if not name:
            raise FeatureFileError(list_file, f"no video name in {listed!r}", "fix the list line", where=where)
        path = _resolve(listed, list_file, index, where)
        group = groups.setdefault(name, {"whole": None, "crops": {}})
        if crop is None:
            if group["whole"] is not None and group["whole"][1] != path:
                raise FeatureFileError(list_file, f"{name} is already listed on line {group['whole'][0]}",
                                       "list each video once", where=where)
            group["whole"] = group["whole"] or (lineno, path)
        else:
            if crop in group["crops"] and group["crops"][crop][1] != path:
                raise FeatureFileError(list_file, f"crop {crop} of {name} is already listed on line "
                                       f"{group['crops'][crop][0]}", "list each crop file once", where=where)
            group["crops"].setdefault(crop, (lineno, path))
        if group["whole"] is not None and group["crops"]:
            raise FeatureFileError(list_file, f"{name} is listed both as one file and as per-crop files",
                                   "keep one layout per video", where=where)
    features = []
    for name, group in groups.items():
        if group["whole"] is not None:
            entries = [group["whole"]]
        else:
            crops = sorted(group["crops"])
            if crops != list(range(len(crops))):
                first_line = min(line for line, _ in group["crops"].values())
                raise FeatureFileError(list_file, f"{name} has crops {crops}",
                                       f"number per-crop files __0 .. __{len(crops) - 1} (is a crop file missing "
                                       f"from the list?)", where=f"{list_file}:{first_line}")
            entries = [group["crops"][c] for c in crops]
        features.append(CommunityFeature(name, tuple(p for _, p in entries), list_file,
                                         tuple(line for line, _ in entries)))
    return features


def _load_array(path: Path, where: str) -> np.ndarray:
    if not path.is_file():
        raise FeatureFileError(path, f"feature file {path} not found",
                               "pass --root with the folder that holds the downloaded feature files (they are "
                               "looked up below it by file name)", where=where)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FeatureFileError(path, f"{path} is not a readable {FEATURE_EXTENSION} array ({exc})",
                               "download the file again", where=where) from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise FeatureFileError(path, f"{path} does not hold a numeric array", "download the file again",
                               where=where)
    return array


def load_community_feature(feature: CommunityFeature) -> np.ndarray:
    """The feature as float32 ``[T, crops, D]``: a single ``[T, crops, D]`` file as is, ``[T, D]`` as
    ``[T, 1, D]``; per-crop files ``[T, D]`` stacked on axis 1 in crop order (all must share ``T`` and ``D``).
    Raises :class:`FeatureFileError` naming the file, its list line and the fix (missing, unreadable, wrong
    shape, empty, non-finite values)."""
    if not feature.files:
        raise FeatureFileError(feature.name, "no feature files", "list at least one file per video")
    arrays = []
    for i, path in enumerate(feature.files):
        where = feature.where(i)
        array = _load_array(Path(path), where)
        per_crop = len(feature.files) > 1
        if array.ndim == 3 and per_crop and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim == 2:
            array = array[:, None, :]
        if array.ndim != 3 or (per_crop and array.shape[1] != 1):
            expected = "[T, D]" if per_crop else "[T, crops, D] or [T, D]"
            raise FeatureFileError(path, f"{path} has shape {array.shape}, expected {expected}",
                                   "check that the list names feature files of this layout", where=where)
        arrays.append(array)
    shapes = {(a.shape[0], a.shape[2]) for a in arrays}
    if len(shapes) > 1:
        detail = ", ".join(f"{Path(p).name} {a.shape[0]}x{a.shape[2]}" for p, a in zip(feature.files, arrays))
        raise FeatureFileError(feature.files[0], f"the crop files of {feature.name} differ in T x D ({detail})",
                               "they must come from one extraction: download them again", where=feature.where())
    out = np.concatenate(arrays, axis=1) if len(arrays) > 1 else arrays[0]
    out = np.ascontiguousarray(out, dtype=np.float32)
    if out.shape[0] == 0 or out.shape[2] == 0:
        raise FeatureFileError(feature.files[0], f"{feature.name} has shape {out.shape} (no snippets or no "
                               f"channels)", "download the file again", where=feature.where())
    if not np.isfinite(out).all():
        raise FeatureFileError(feature.files[0], f"{feature.name} contains NaN or infinite values",
                               "download the file again", where=feature.where())
    return out
