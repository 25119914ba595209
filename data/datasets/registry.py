"""Every dataset known by name, one row each (:data:`REGISTRY`): its name, split lists, the official folder that
discovery keeps apart (if any), a one-line description for the command line's help, and its loader.

Whatever lists datasets reads this table: :func:`data.datasets.load_dataset`, discovery (:func:`dataset_entries`
and the official folders in :func:`data.discover.find_videos`), the command line's ``--dataset`` choices and help
(``pipeline.cli``) and the errors that name the datasets (``pipeline.api.train``). :data:`DATASETS` is a live
view of its names. Adding a dataset is one module (a zero-argument loader returning a
:class:`~data.datasets.base.DatasetSpec`) and one row in :data:`_BUILT_IN`, or, at run time (a site's own
benchmark, a test), :func:`register` with a row whose split files may be absolute paths; :func:`unregister`
takes it out again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

# Submodules imported by their full name, not from the package: the package imports this module.
import data.datasets.avenue as avenue
import data.datasets.shanghaitech as shanghaitech
import data.datasets.ucf_crime as ucf_crime
import data.datasets.ucsd as ucsd
import data.datasets.xd_violence as xd_violence
from data.datasets.base import DatasetSpec, split_file
from data.layout import video_name

Intervals = dict[str, tuple[tuple[int, int], ...]]
# What load_dataset takes besides a registered name (data.datasets.labels_csv, data.datasets.frame_labels), in the
# words of the command line's help.
OTHER_FORMS = ("a labels CSV", "a folder with labels.csv", "a frame-label folder (videos/ + labels/)")


@dataclass(frozen=True)
class DatasetRow:
    """One dataset known by name.

    ``name``: what ``--dataset`` takes, lower case with ``-`` (``load_dataset`` also accepts it in any case with
    ``_``: ``UCSD_Ped2``); ``split_files``: its split lists, the train list first, each relative to ``data/splits``
    or an absolute path, whose lines name the videos (folder and video extension dropped) that discovery looks for;
    ``description``: one line for the help; ``load``: returns the :class:`DatasetSpec` (train then test entries,
    canonical order) named ``name``; ``folder``: the lower-case name of the dataset's official folder, given when
    another dataset reuses its video names (UCSD Ped1 and Ped2), so that discovery never takes a video below this
    folder for another dataset; ``intervals``: every video's annotated frame intervals ``[start, end)``, training
    videos included, for references allowed frame labels (:func:`official_intervals`), where they ship.
    """

    name: str
    split_files: tuple[str, ...]
    description: str
    load: Callable[[], DatasetSpec]
    folder: str | None = None
    intervals: Callable[[], Intervals] | None = None

    def __post_init__(self):
        canonical = re.sub(r"[\s_]+", "-", self.name.strip().lower())
        if not canonical or self.name != canonical:
            raise ValueError(f"dataset name {self.name!r}: write it in lower case with '-' between words "
                             f"({canonical or 'my-set'!r})")
        if not self.split_files:
            raise ValueError(f"dataset {self.name}: give its split files (train list first)")


_BUILT_IN = (
    DatasetRow(ucf_crime.NAME, ucf_crime.SPLIT_FILES, "UCF-Crime: 1900 surveillance videos, 13 anomaly classes",
               ucf_crime.load),
    DatasetRow(shanghaitech.NAME, shanghaitech.SPLIT_FILES,
               "ShanghaiTech Campus in Zhong et al.'s weak split: 437 videos", shanghaitech.load),
    DatasetRow(xd_violence.NAME, xd_violence.SPLIT_FILES, "XD-Violence: 4754 films and online videos, 6 classes",
               xd_violence.load),
    *(DatasetRow(name, ucsd.SPLIT_FILES[name], description, functools.partial(ucsd.load, name),
                 folder=ucsd.OFFICIAL_FOLDERS[name], intervals=functools.partial(ucsd.intervals, name))
      for name, description in (("ucsd-ped1", "UCSD Ped1: 70 walkway clips, frame annotated, weak split"),
                                ("ucsd-ped2", "UCSD Ped2: 28 walkway clips, frame annotated, weak split"))),
    DatasetRow(avenue.NAME, avenue.SPLIT_FILES, "CUHK Avenue: 37 campus videos, frame annotated, weak split",
               avenue.load, intervals=avenue.intervals),
)
REGISTRY: dict[str, DatasetRow] = {row.name: row for row in _BUILT_IN}  # in the order of the help


DATASETS = REGISTRY.keys()  # the names, in order: a live view, so a registered one shows


def register(row: DatasetRow) -> DatasetRow:
    """Add ``row`` to :data:`REGISTRY` (after the others); ValueError if its name is taken."""
    if row.name in REGISTRY:
        raise ValueError(f"dataset {row.name!r} is already registered ({REGISTRY[row.name].description}); "
                         f"unregister it first or choose another name")
    REGISTRY[row.name] = row
    return row


def unregister(name: str) -> DatasetRow:
    """Take the dataset ``name`` out of :data:`REGISTRY` and return its row."""
    return REGISTRY.pop(get(name).name)


def get(name: str) -> DatasetRow:
    """The row of ``name``; ValueError naming the registered datasets if there is none."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return REGISTRY[name]


def spec_forms(sep: str = " | ") -> str:
    """Every form ``load_dataset`` takes, the registered names first, joined by ``sep``: the ``--dataset`` help of
    the command line and the errors that ask for a dataset."""
    return sep.join((*DATASETS, *OTHER_FORMS))


def describe() -> str:
    """``name (description); ...`` of every registered dataset, for the command line's help."""
    return "; ".join(f"{row.name} ({row.description})" for row in REGISTRY.values())


def dataset_entries(dataset: str) -> list[str]:
    """The dataset's video names (no folder, no extension) as its split files list them, train then test, each
    list in file order, each name once: what discovery matches (:func:`data.discover.find_videos`)."""
    names = [video_name(line.strip()) for rel in get(dataset).split_files
             for line in split_file(rel).splitlines() if line.strip()]
    return list(dict.fromkeys(names))  # keep order, drop duplicates


def official_intervals(dataset: str) -> Intervals:
    """Every clip's annotated frame intervals ``[start, end)`` of a dataset whose row ships them (``ucsd-ped1``,
    ``ucsd-ped2``, ``avenue``), those of the weak split's training clips included (which ``load_dataset`` keeps
    out: weak training sees video labels only). For references that are allowed frame labels, such as a fully
    supervised ceiling."""
    row = get(dataset)
    if row.intervals is None:
        shipping = ", ".join(r.name for r in REGISTRY.values() if r.intervals is not None)
        raise ValueError(f"{dataset}: official intervals ship for {shipping} only")
    return row.intervals()
