"""How videos are named and found on disk: the layer below both ``data.datasets`` (whose entries carry these names)
and ``data.discover`` (which matches a dataset's entries to the videos under a root), so neither imports the other's
internals and there is no import cycle. The datasets known by name and their split lists are the registry's
(``data.datasets.registry``).

A video's name is its file name without a video extension, or a frame folder's name (:func:`video_name`); a name
may carry the folders right above the video (``testing_videos/01``, :func:`name_matches`). :func:`list_videos`
expands user paths into video files and frame folders (recursively, a frame folder is not descended into).
"""

from __future__ import annotations

from pathlib import Path

from data.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_frame_folder

ALIAS_SEP = "/"  # in a name, separates the folders right above the video from its video name


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
