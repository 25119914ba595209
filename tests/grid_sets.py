"""Grid feature sets with a planted anomaly cell, written into a store as an extraction with a grid writes them
(``FeatureStore.put_feature(..., grid=(rows, cols))``), for the spatial MIL tests.

Each video's features per backbone are ``[T, rows * cols, D]``: a per-video, per-cell scene offset plus unit
noise per snippet and cell; inside an anomalous video's interval one cell, drawn per video (its *planted* cell),
also carries a fixed anomaly direction scaled by ``signal``. The cells' mean, what a global model sees, holds that
signal divided by the cell count, so a global run sees it much weaker than a spatial one can.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.decode import SNIPPET_FRAMES
from pipeline.keys import feature_key, hash_json
from pipeline.store import FeatureStore

SCENE_SCALE = 0.5  # std of a cell's per-video offset, relative to the unit snippet noise


@dataclass
class GridVideo:
    name: str
    label: int
    split: str
    interval: tuple[int, int] | None  # snippets [start, end) of the anomaly
    planted: int | None  # the anomaly's cell (row-major), None for a normal video


def grid_store(root: Path, *, grid: tuple[int, int] = (3, 4), dims: dict[str, int] | None = None,
               global_backbones: tuple[str, ...] = (), signal: float = 3.0, n_train=(12, 12), n_test=(6, 6),
               snippets=(12, 20), seed: int = 0) -> tuple[Path, Path, list[GridVideo]]:
    """Write the set into ``root / "store"`` and its labels CSV. ``dims``: backbone -> D (default one 16-wide
    ``i3d``), each stored with ``grid`` (a ``(1, 1)`` grid is recorded as one), except ``global_backbones``, stored
    as global features (no grid: the cells' mean). Returns (store, labels CSV, videos in canonical order)."""
    dims = dims or {"i3d": 16}
    rng = np.random.default_rng(seed)
    cells = grid[0] * grid[1]
    directions = {b: rng.standard_normal(d).astype(np.float32) for b, d in dims.items()}  # per-dim scale about 1
    store_path = root / "store"
    store = FeatureStore(store_path)
    fingerprints = {}
    for b in dims:
        params = {"backbone": b, "test": "grid_sets",
                  **({} if b in global_backbones else {"grid": "x".join(map(str, grid))})}
        fingerprints[b] = hash_json(params)
        store.register_extractor(fingerprints[b], b, params)
    videos = []
    try:
        for split, (n_anomalous, n_normal) in (("train", n_train), ("test", n_test)):
            for i in range(n_anomalous + n_normal):
                label = int(i < n_anomalous)
                t = int(rng.integers(snippets[0], snippets[1] + 1))
                interval = planted = None
                if label:
                    length = max(2, t // 3)
                    start = int(rng.integers(0, t - length + 1))
                    interval, planted = (start, start + length), int(rng.integers(0, cells))
                name = f"{split}_{'anomaly' if label else 'normal'}_{i:03d}"
                video = GridVideo(name, label, split, interval, planted)
                video_key = hash_json({"grid_test_video": video.name, "seed": seed})
                store.record_name(video.name, video_key, source="tests/grid_sets.py")
                for b, d in dims.items():
                    scene = SCENE_SCALE * rng.standard_normal((1, cells, d))  # per video and cell
                    x = (rng.standard_normal((t, cells, d)) + scene).astype(np.float32)
                    if label:
                        x[interval[0]:interval[1], planted] += signal * directions[b]
                    if b in global_backbones:
                        stored, stored_grid = x.mean(axis=1, keepdims=True), None
                    else:
                        stored, stored_grid = x, grid
                    store.put_feature(feature_key(video_key, fingerprints[b]), video_key, b, fingerprints[b], stored,
                                      grid=stored_grid)
                videos.append(video)
    finally:
        store.close()
    labels = root / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "label", "split", "class", "intervals"])
        for v in videos:
            frames = f"{v.interval[0] * SNIPPET_FRAMES}-{v.interval[1] * SNIPPET_FRAMES}" if v.interval else ""
            writer.writerow([v.name, v.label, v.split, "Anomaly" if v.label else "Normal", frames])
    return store_path, labels, videos
