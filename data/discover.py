"""Find the videos a user points at: files, folders (recursive), folders of frames, or a dataset root.

A dataset root is matched against the split lists of a registered dataset (``data.datasets.registry``; the
official lists ship in ``data/splits``): every listed video is
looked up by its name (without extension) anywhere below the root, since users lay the datasets out in many
ways, then by its aliases (``VideoEntry.aliases``: other names of the same video, e.g. ``train_01`` for UCSD's
``Train001``). An alias may name the folders right above the video too, ``testing_videos/01``, for datasets
whose train and test folders reuse file names (CUHK Avenue's ``training_videos/01.avi`` and
``testing_videos/01.avi``). Listed videos that are not found are reported, not silently skipped, and videos or
frame folders that no entry names are never taken (UCSD's pixel-mask folders ``Test003_gt/`` beside
``Test003/``, its ``UCSDped1.m``). UCSD Ped1 and Ped2 reuse their clip names, so below a root holding both, a
clip inside another dataset's official folder (its row's ``folder``: ``UCSDped2/`` for ``ucsd-ped1``) is not
taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The registry's names and split lists, and data.layout's names of videos, are re-exported here, where callers
# look for them.
from data.datasets import DATASETS, REGISTRY, dataset_entries, load_dataset, split_file  # noqa: F401
from data.layout import ALIAS_SEP, list_videos, name_matches, video_name, walk  # noqa: F401


@dataclass
class Discovery:
    """videos: paths (files or frame folders) in a stable order; missing: dataset entries not found."""

    videos: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


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
        result.videos = list_videos(paths)
        return result

    entries = load_dataset(dataset).entries
    by_stem: dict[str, list[Path]] = {}
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            raise NotADirectoryError(f"{root}: a dataset root must be a folder (pass the folder that holds the "
                                     f"{dataset} videos)")
        for video in walk(root):
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
    """Whether ``video`` lies below the official folder of another registered dataset (``DatasetRow.folder``:
    UCSD Ped1 and Ped2 both have Train001 ...), so it is never taken for ``dataset``."""
    folders = {part.lower() for part in video.parts}
    return any(row.folder in folders for row in REGISTRY.values() if row.folder and row.name != dataset)
