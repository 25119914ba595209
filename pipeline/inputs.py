"""The checks of a command's inputs that need neither torch nor weights: the videos it was pointed at, and a
``--store`` path it may create. The commands run them first, so an empty folder, a missing path or a store path
that is a file is named (with the path and the fix, exit code 2) before any weights are loaded or fetched."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from data.discover import Discovery, find_videos
from pipeline.errors import InputError

SHOWN_EXTENSIONS = 6  # video extensions named in the "no videos found" message (the rest as "...")


def _extensions() -> str:
    shown = ", ".join(VIDEO_EXTENSIONS[:SHOWN_EXTENSIONS])
    return shown + (", ..." if len(VIDEO_EXTENSIONS) > SHOWN_EXTENSIONS else "")


def find_inputs(paths: Sequence[str | Path], *, dataset: str | None = None, command: str = "extract") -> Discovery:
    """The videos under ``paths`` (:func:`data.discover.find_videos`). Raises :class:`InputError` naming the paths
    and the fix when none exists, or when they hold no video (nor, with ``dataset``, any listed one). A missing
    path beside existing ones is left to the batch, which reports it as that video's failure (exit code 1)."""
    paths = [str(p) for p in paths]
    absent = [p for p in paths if not Path(p).exists()]
    if absent and len(absent) == len(paths):
        raise InputError(f"{', '.join(absent)}: no such file or folder; check the path "
                         f"(dakd {command} takes video files, folders of videos or folders of frames)")
    try:
        found = find_videos(paths, dataset=dataset)
    except (NotADirectoryError, ValueError) as exc:  # a dataset root that is a file, an unknown dataset
        raise InputError(str(exc)) from exc
    if not found.videos and not found.missing:
        raise InputError(f"no videos found in {', '.join(paths)}: no video files ({_extensions()}) and no folders "
                         f"of frames ({', '.join(IMAGE_EXTENSIONS[:3])}, ...) below it; pass the folder that holds "
                         f"the videos" + (" (or the dataset root with `dataset` NAME)" if command == "extract" else ""))
    if dataset and not found.videos:
        raise InputError(f"none of the {len(found.missing)} videos of the {dataset} split lists is below "
                         f"{', '.join(paths)}; pass the folder that holds the {dataset} videos")
    return found


def check_new_store(store: str | Path) -> None:
    """A ``--store`` that a command will create if missing: it must not be a file, nor lie below one, and an existing
    folder must be a store (:func:`pipeline.store.check_location`, which opening the store runs again). Checked before
    any weights load."""
    from pipeline.store import check_location  # no torch

    check_location(Path(store), create=True)
