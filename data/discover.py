"""Find the videos a user points at: files, folders (recursive), folders of frames, or a dataset root.

A dataset root is matched against the official split lists shipped in ``data/splits``: every listed video is
looked up by its name (without extension) anywhere below the root, since users lay the datasets out in many
ways, then by its aliases (``VideoEntry.aliases``: other names of the same video, e.g. ``train_01`` for UCSD's
``Train001``). An alias may name the folders right above the video too, ``testing_videos/01``, for datasets
whose train and test folders reuse file names (CUHK Avenue's ``training_videos/01.avi`` and
``testing_videos/01.avi``). Listed videos that are not found are reported, not silently skipped, and videos or
frame folders that no entry names are never taken (UCSD's pixel-mask folders ``Test003_gt/`` beside
``Test003/``, its ``UCSDped1.m``). UCSD Ped1 and Ped2 reuse their clip names, so below a root holding both, a
clip inside the other set's official folder (``UCSDped2/`` for ``ucsd-ped1``) is not taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from data.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_frame_folder

DATASETS = ("ucf-crime", "shanghaitech", "xd-violence", "ucsd-ped1", "ucsd-ped2", "avenue")
# Split lists (inside data/splits) whose entries make up each dataset, train list first, canonical order kept.
_SPLIT_FILES = {
    "ucf-crime": ("ucf_crime/Anomaly_Train.txt", "ucf_crime/Anomaly_Test.txt"),
    "shanghaitech": ("shanghaitech/train_order.txt", "shanghaitech/test_order.txt"),
    "xd-violence": ("xd_violence/train.txt", "xd_violence/test.txt"),
    "ucsd-ped1": ("ucsd_ped1/train.txt", "ucsd_ped1/test.txt"),
    "ucsd-ped2": ("ucsd_ped2/train.txt", "ucsd_ped2/test.txt"),
    "avenue": ("avenue/train.txt", "avenue/test.txt"),
}
ALIAS_SEP = "/"  # in a name, separates the folders right above the video from its video name
# The official folder of each dataset whose clip names another dataset reuses (UCSD Ped1 and Ped2 both have
# Train001 ...): a video below another dataset's folder is never taken for this one.
_DATASET_FOLDERS = {"ucsd-ped1": "ucsdped1", "ucsd-ped2": "ucsdped2"}


@dataclass
class Discovery:
    """videos: paths (files or frame folders) in a stable order; missing: dataset entries not found."""

    videos: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def split_file(relative: str) -> str:
    """Text of a split/annotation file shipped in ``data/splits``."""
    return resources.files("data").joinpath("splits", relative).read_text(encoding="utf-8")


def dataset_entries(dataset: str) -> list[str]:
    """The dataset's video names (no folder, no extension), train then test, each list in canonical order."""
    if dataset not in _SPLIT_FILES:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    names: list[str] = []
    for rel in _SPLIT_FILES[dataset]:
        for line in split_file(rel).splitlines():
            line = line.strip()
            if line:
                names.append(video_name(line))
    return list(dict.fromkeys(names))  # keep order, drop duplicates


def video_name(path: str | Path) -> str:
    """A video's name: the file name without a video extension (XD-Violence names contain dots)."""
    p = Path(path)
    return p.stem if p.suffix.lower() in VIDEO_EXTENSIONS else p.name


def name_matches(path: str | Path, name: str) -> bool:
    """Whether the video at ``path`` is called ``name``: its :func:`video_name` equals ``name``, or, for a name
    with folders (``testing_videos/01``), its video name equals the last part and the folders right above the
    video are the others."""
    *folders, base = name.split(ALIAS_SEP)
    p = Path(path)
    return video_name(p) == base and (not folders or list(p.parent.parts[-len(folders):]) == folders)


def _walk(root: Path) -> list[Path]:
    """Video files and frame folders below root, sorted; a frame folder is not descended into."""
    found: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            if is_frame_folder(entry):
                found.append(entry)
            else:
                found.extend(_walk(entry))
        elif entry.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(entry)
    return found


def find_videos(paths: list[str | Path], *, dataset: str | None = None) -> Discovery:
    """Expand user paths into videos.

    Explicit files are kept whatever their extension (a non-video then fails with a clear reason); folders are
    searched recursively for video files and frame folders. With ``dataset``, each path is a dataset root and
    the result follows the dataset's canonical order (train entries, then test entries), each entry found by its
    name, else by its first alias that names a video below the roots (:func:`name_matches`); entries not found
    are listed in ``missing``.
    """
    result = Discovery()
    if dataset is None:
        for raw in paths:
            p = Path(raw)
            if p.is_dir():
                result.videos.extend([p] if is_frame_folder(p) and not _has_subvideos(p) else _walk(p))
            else:
                result.videos.append(p)  # missing or not a video: reported as that video's failure
        result.videos = list(dict.fromkeys(result.videos))
        return result

    from data.datasets import load_dataset  # here, not at the top: data.datasets imports this module

    entries = load_dataset(dataset).entries
    by_stem: dict[str, list[Path]] = {}
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            raise NotADirectoryError(f"{root}: a dataset root must be a folder (pass the folder that holds the "
                                     f"{dataset} videos)")
        for video in _walk(root):
            if not _in_other_dataset(video, dataset):
                by_stem.setdefault(video_name(video), []).append(video)
    for entry in entries:
        found = next((video for name in (entry.name, *entry.aliases)
                      for video in by_stem.get(name.rsplit(ALIAS_SEP, 1)[-1], []) if name_matches(video, name)), None)
        if found is None:
            result.missing.append(entry.name)
        else:
            result.videos.append(found)
    return result


def _in_other_dataset(video: Path, dataset: str) -> bool:
    folders = {part.lower() for part in video.parts}
    return any(folder in folders for other, folder in _DATASET_FOLDERS.items() if other != dataset)


def _has_subvideos(folder: Path) -> bool:
    return any(p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS for p in folder.iterdir()
               if p.suffix.lower() not in IMAGE_EXTENSIONS)
