"""Every stage main that opens a ``--store``, called in-process on one store, and a small store that has something
for each of them: EfficientNet-Lite0 features (its real weights) of six real 32-frame videos with a labels CSV, a
teacher trained on them (one epoch) and its evaluation, plus one imported feature list. The store-fault tests run
each stage against a damaged, read-only, missing or non-folder store."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from feature_sets import TINY_MODEL
from videos import encode, pattern_frames

from pipeline.cli import detect, evaluate, export, extract, grid, import_features, train
from pipeline import store as store_cli
from pipeline.cli import store as store_command

BACKBONE = "effnet_lite0"
EXTRACT = ["--backbones", BACKBONE, "--quiet"]
TRAIN_FAST = ["--quiet", "--epochs", "1", "--set", "train.batch_anomalous=2", "--set", "train.batch_normal=2",
              "--set", "train.val_fraction=0", *TINY_MODEL]
# name, label, split, intervals (frames, end exclusive) of the six videos
LABELS = [("v0", 1, "train", "0-16"), ("v1", 1, "train", "16-32"), ("v2", 0, "train", ""), ("v3", 0, "train", ""),
          ("v4", 1, "test", "0-16"), ("v5", 0, "test", "")]
FRAMES, HEIGHT, WIDTH = 32, 48, 64


@dataclass
class SmallStore:
    root: Path
    store: Path
    videos: Path  # the extracted videos' folder
    labels: Path  # their labels CSV
    imported: Path  # a feature list (one i3d feature) imported into the store
    teacher: str  # run key of the teacher trained on the videos' features (and evaluated)


def write_videos(folder: Path, names: list[str], *, frames: int = FRAMES, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [encode(folder / f"{name}.mkv", pattern_frames(frames, HEIGHT, WIDTH, seed=seed + i))
            for i, name in enumerate(names)]


def small_store(root: Path) -> SmallStore:
    videos = root / "in"
    write_videos(videos, [name for name, *_ in LABELS])
    labels = root / "labels.csv"
    labels.write_text("name,label,split,class,intervals\n" + "".join(
        f"{n},{y},{s},{'Anomaly' if y else 'Normal'},{i}\n" for n, y, s, i in LABELS), encoding="utf-8")
    (root / "imp").mkdir()
    np.save(root / "imp" / "x0.npy", np.ones((4, 1, 8), np.float32))
    imported = root / "imp" / "i3d.list"
    imported.write_text(f"{root / 'imp' / 'x0.npy'}\n", encoding="utf-8")
    store = root / "store"
    assert extract.main([str(videos), "--store", str(store), *EXTRACT]) == 0
    assert import_features.main([str(imported), "--backbone", "i3d", "--store", str(store), "--quiet"]) == 0
    assert train.main(["teacher", "--store", str(store), "--dataset", str(labels), "--backbones", BACKBONE,
                       *TRAIN_FAST]) == 0
    s = store_cli.FeatureStore(store, create=False)
    key = s.runs("teacher")[0]["key"]
    s.close()
    assert evaluate.main([key[:12], "--store", str(store), "--quiet", "--no-video-plots"]) == 0
    return SmallStore(root, store, videos, labels, imported, key)


def every_stage(s: SmallStore, store: Path | None = None, *, out: Path | None = None) -> dict:
    """name -> a call of that stage's main on ``store`` (default ``s.store``), returning its exit code; outputs
    that need a folder go below ``out`` (default: the store's parent)."""
    store = str(store or s.store)
    out = Path(out or Path(store).parent)
    return {
        "store": lambda: store_command.main([store]),
        "extract": lambda: extract.main([str(s.videos), "--store", store, *EXTRACT]),
        "import_features": lambda: import_features.main([str(s.imported), "--backbone", "i3d", "--store", store,
                                                         "--quiet"]),
        "train": lambda: train.main(["teacher", "--store", store, "--dataset", str(s.labels), "--backbones",
                                     BACKBONE, *TRAIN_FAST]),
        "evaluate": lambda: evaluate.main([s.teacher[:12], "--store", store, "--quiet", "--no-video-plots"]),
        "detect": lambda: detect.main([str(s.videos), "--store", store, "--model", s.teacher[:12], "--quiet",
                                       "--out", str(out / "detections")]),
        "export": lambda: export.main([s.teacher[:12], "--store", store, "--out", str(out / "export")]),
        "grid": lambda: grid.main(["--store", store, "--dataset", str(s.labels), "--seeds", "1", "--epochs", "1"]),
    }


def copy_store(s: SmallStore, dest: Path) -> SmallStore:
    """A copy of the small store's folder under ``dest`` (each fault test damages its own copy)."""
    shutil.copytree(s.store, dest / "store")
    return dataclasses.replace(s, store=dest / "store")
