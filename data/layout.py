"""How videos are named and found on disk, and the split lists shipped in ``data/splits``: the layer below both
``data.datasets`` (which reads the lists) and ``data.discover`` (which matches a dataset's entries to the videos
under a root), so neither imports the other's internals and there is no import cycle.

A video's name is its file name without a video extension, or a frame folder's name (:func:`video_name`); a name
may carry the folders right above the video (``testing_videos/01``, :func:`name_matches`). :func:`list_videos`
expands user paths into video files and frame folders (recursively, a frame folder is not descended into).
"""

from __future__ import annotations

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


def walk(root: Path) -> list[Path]:
    """Video files and frame folders below root, sorted; a frame folder is not descended into."""
    found: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            if is_frame_folder(entry):
                found.append(entry)
            else:
                found.extend(walk(entry))
        elif entry.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(entry)
    return found


def list_videos(paths: list[str | Path]) -> list[Path]:
    """User paths -> videos (files or frame folders) in a stable order, each once.

    Explicit files are kept whatever their extension (a non-video then fails with a clear reason); folders are
    searched recursively for video files and frame folders (:func:`walk`); a folder of frames is itself a video
    unless it holds videos of its own.
    """
    videos: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            videos.extend([p] if is_frame_folder(p) and not _has_subvideos(p) else walk(p))
        else:
            videos.append(p)  # missing or not a video: reported as that video's failure
    return list(dict.fromkeys(videos))


def _has_subvideos(folder: Path) -> bool:
    return any(p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS for p in folder.iterdir()
               if p.suffix.lower() not in IMAGE_EXTENSIONS)
