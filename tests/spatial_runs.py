"""Spatial runs on real videos, shared by the tests of a spatial run's outputs (detect, export, watch) and of its
calibration: synthetic surveillance videos (``data.synthetic``, real files) extracted with EfficientNet-Lite0 (its
real weights) on its native grid (``dakd extract --grid native``), a spatial teacher trained on the cells and a
spatial student distilled from it. ``tests/conftest.py``'s session fixture ``spatial_runs`` builds them once."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from feature_sets import TINY_MODEL

from data.synthetic import SyntheticDataset, generate_dataset
from pipeline.cli import extract, train
from pipeline.runs import load_run
from pipeline.store import FeatureStore

TRAIN = ["--quiet", "--set", "train.batch_anomalous=4", "--set", "train.batch_normal=4",
         "--set", "train.lr_other=1e-2", "--set", "train.lr_temporal=1e-3", "--set", "spatial.hidden=8",
         "--set", "spatial.reduce_dim=16", *TINY_MODEL]


class SpatialRuns(NamedTuple):
    store: Path
    dataset: SyntheticDataset
    keys: dict[str, str]  # stage (teacher, student) -> run key
    grids: dict[str, tuple[int, int]]  # stage -> the run's grid


def build_spatial_runs(root: Path) -> SpatialRuns:
    """12 synthetic videos (320 x 240, 160 frames, 6 normal and 6 anomalous), their effnet_lite0 cells on its
    native grid, a spatial teacher (20 epochs) and a spatial student distilled from it (2 epochs), under ``root``."""
    dataset = generate_dataset(root / "synthetic", n_normal=6, n_anomalous=6, seed=3, n_frames=160, n_scenes=2,
                               figure_height=0.25)
    store = root / "store"
    assert extract.main([str(dataset.root / "videos"), "--store", str(store), "--backbones", "effnet_lite0",
                         "--grid", "native", "--quiet"]) == 0
    common = ["--store", str(store), "--dataset", str(dataset.root), "--set", "train.val_fraction=0",
              "--backbones", "effnet_lite0"]
    assert train.main(["teacher", *common, "--epochs", "20", *TRAIN]) == 0
    runs = FeatureStore(store).runs
    teacher = runs("teacher")[0]["key"]
    assert train.main(["student", *common, "--teacher", teacher[:12], "--epochs", "2", *TRAIN]) == 0
    keys = {stage: runs(stage)[0]["key"] for stage in ("teacher", "student")}
    fs = FeatureStore(store)
    try:
        grids = {stage: load_run(fs, key).grid for stage, key in keys.items()}
    finally:
        fs.close()
    return SpatialRuns(store, dataset, keys, grids)
