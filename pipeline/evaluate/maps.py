"""A spatial run's per-snippet anomaly maps, as evaluation writes them (method.md §12): ``maps/<video>.npz`` in the
evaluation's folder, array ``maps`` float16 ``[T, rows, cols]`` (snippet ``t`` covers frames ``[16 t, 16 t + 16)``,
cells laid evenly over the whole frame, row-major as the features' cells). File stems are the per-video plots'
(``pipeline.evaluate.plots.unique_stems``: safe, distinct); :func:`read_maps` finds a video's by its name.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_write
from pipeline.evaluate.plots import unique_stems

MAPS_FOLDER = "maps"  # in an evaluation's folder
MAPS_KEY = "maps"  # the array's name inside each .npz
MAPS_DTYPE = np.float16  # scores in (0, 1): float16's 3 significant digits are plenty for a map, at half the bytes


def map_files(folder: str | Path, names: Sequence[str]) -> dict[str, Path]:
    """Video name -> its maps file in the evaluation folder ``folder`` (for the videos ``names``, in that order:
    the stems depend on every name, as the plots' do)."""
    return {name: Path(folder) / MAPS_FOLDER / f"{stem}.npz" for name, stem in zip(names, unique_stems(list(names)))}


def write_maps(path: str | Path, maps: np.ndarray) -> Path:
    """Write one video's maps ``[T, rows, cols]`` (float16, compressed) atomically to ``path``."""
    if maps.ndim != 3:
        raise ValueError(f"maps must be [T, rows, cols], got shape {maps.shape}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{MAPS_KEY: maps.astype(MAPS_DTYPE)})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def read_maps(folder: str | Path, name: str, names: Sequence[str]) -> np.ndarray:
    """The maps ``[T, rows, cols]`` (float32) of video ``name`` of an evaluation of the videos ``names`` (its test
    list's order, as ``scores.csv`` lists them) written in ``folder``. Raises FileNotFoundError when there are none
    (a global run writes none)."""
    with np.load(map_files(folder, names)[name], allow_pickle=False) as data:
        return data[MAPS_KEY].astype(np.float32)
