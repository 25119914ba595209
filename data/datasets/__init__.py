"""Dataset adapters: video names, weak labels, splits and frame annotations of the benchmarks and of a user's own
labels, each dataset in its canonical list order (the order in which test scores are concatenated).

:func:`load_dataset` takes a registered name, a labels CSV, a folder holding ``labels.csv`` or a frame-label
folder. One module per kind of dataset documents its own files:

- :mod:`~data.datasets.ucf_crime`, :mod:`~data.datasets.shanghaitech`, :mod:`~data.datasets.xd_violence`,
  :mod:`~data.datasets.ucsd` (Ped1 and Ped2) and :mod:`~data.datasets.avenue`: the official datasets, read from the
  split and annotation files shipped in ``data/splits`` (see its PROVENANCE.md); the UCSD and Avenue weak split
  is :mod:`~data.datasets.weak_split`;
- :mod:`~data.datasets.labels_csv`: a user's labels CSV; :mod:`~data.datasets.frame_labels`: a frame-label folder
  (``videos/`` + ``labels/<name>.npy``);
- :mod:`~data.datasets.base`: the shared types (:class:`VideoEntry`, :class:`DatasetSpec`), :class:`DatasetError`,
  the interval rule (``[start, end)``, end exclusive, method.md §7) and the shipped files;
- :mod:`~data.datasets.registry`: one row per dataset known by name, which load_dataset, discovery and the command
  line read; adding a dataset is one module and one row there (or :func:`register` at run time).

Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from data.datasets.base import (ANOMALY_CLASS, NORMAL_CLASS, SPLITS, DatasetError, DatasetSpec, VideoEntry,
                                load_mask, split_file)
from data.datasets.frame_labels import (FRAME_LABELS_DIR, FRAME_LABELS_SUFFIX, VIDEOS_DIR,
                                        load_frame_label_folder)
from data.datasets.labels_csv import CSV_OPTIONAL, CSV_REQUIRED, LABELS_CSV, load_labels_csv
from data.datasets.registry import (DATASETS, REGISTRY, DatasetRow, dataset_entries, official_intervals, register,
                                    unregister)
from data.datasets.ucf_crime import read_ucf_annotation
from data.datasets.ucsd import matlab_ranges
from data.datasets.xd_violence import XD_CLASSES, xd_class

__all__ = ["VideoEntry", "DatasetSpec", "DATASETS", "DatasetError", "load_dataset", "load_labels_csv",
           "load_frame_label_folder", "matlab_ranges", "official_intervals", "NORMAL_CLASS", "ANOMALY_CLASS", "SPLITS",
           "LABELS_CSV", "XD_CLASSES", "xd_class", "read_ucf_annotation", "load_mask", "split_file",
           "dataset_entries", "REGISTRY", "DatasetRow", "register", "unregister"]


def load_dataset(spec: str | Path) -> DatasetSpec:
    """The dataset named by ``spec``: one of :data:`DATASETS` (the registry's; the official splits ship in
    ``data/splits``), a labels CSV, a folder containing ``labels.csv`` (e.g. one written by ``data.synthetic``), or
    a frame-label folder (``videos/`` and optionally ``labels/<name>.npy``, no ``labels.csv``). A registered name
    is also taken in any case with ``_`` for ``-`` (``UCSD_Ped2``) when no such path exists."""
    if isinstance(spec, str) and spec in REGISTRY:
        return REGISTRY[spec].load()
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
    if alias in REGISTRY:
        return REGISTRY[alias].load()
    raise ValueError(f"unknown dataset {str(spec)!r}: choose one of {', '.join(DATASETS)}, or pass a labels CSV "
                     f"(columns {','.join(CSV_REQUIRED + CSV_OPTIONAL)}) or a folder containing {LABELS_CSV}")
