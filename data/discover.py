"""Find the videos a user points at: files, folders (recursive), folders of frames, or a dataset root.

A dataset root is matched against the official split lists shipped in ``data/splits``: every listed video is
looked up by its name (without extension) anywhere below the root, since users lay the datasets out in many
ways. Listed videos that are not found are reported, not silently skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from data.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_frame_folder

DATASETS = ("ucf-crime", "shanghaitech", "xd-violence")
# Split lists (inside data/splits) whose entries make up each dataset, train list first, canonical order kept.
_SPLIT_FILES = {
    "ucf-crime": ("ucf_crime/Anomaly_Train.txt", "ucf_crime/Anomaly_Test.txt"),
    "shanghaitech": ("shanghaitech/train_order.txt", "shanghaitech/test_order.txt"),
    "xd-violence": ("xd_violence/train.txt", "xd_violence/test.txt"),
}


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
    the result follows the dataset's canonical order, with missing entries listed.
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

    by_stem: dict[str, Path] = {}
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            raise NotADirectoryError(f"{root}: a dataset root must be a folder (pass the folder that holds the "
                                     f"{dataset} videos)")
        for video in _walk(root):
            by_stem.setdefault(video_name(video), video)
    for name in dataset_entries(dataset):
        if name in by_stem:
            result.videos.append(by_stem[name])
        else:
            result.missing.append(name)
    return result


def _has_subvideos(folder: Path) -> bool:
    return any(p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS for p in folder.iterdir()
               if p.suffix.lower() not in IMAGE_EXTENSIONS)
