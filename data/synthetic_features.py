"""Synthetic per-snippet feature sets with known anomaly intervals, for tests and benchmarks of the training stages.

Each video's features per backbone are ``scene + noise`` per snippet, where ``scene`` is a per-video offset (so
normal videos differ from each other) and, inside the anomaly interval of an anomalous video, a fixed anomaly
direction scaled by the backbone's ``signal`` is added. A backbone with a small ``signal`` is a weak one: that is
how a "harder" set is made, where a teacher over strong backbones can help a student on a weak one.

The set is written like the community's features (one ``.npy`` per video and backbone, one list file per
backbone, RTFM style) plus a labels CSV, so it enters a store through ``python -m pipeline.import_features``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from data.decode import SNIPPET_FRAMES

DEFAULT_SNIPPETS = (40, 120)  # T drawn uniformly from this range (inclusive)
ANOMALY_FRACTION = (0.1, 0.4)  # share of an anomalous video's snippets inside its interval
SCENE_SCALE = 0.5  # std of the per-video offset, relative to the unit snippet noise


@dataclass
class FeatureVideo:
    name: str
    label: int
    class_name: str
    split: str
    intervals: list[tuple[int, int]]  # frames [start, end)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # backbone -> float32 [T, crops, D]


def make_feature_dataset(*, dims: Mapping[str, int], signal: Mapping[str, float], n_train: tuple[int, int],
                         n_test: tuple[int, int], snippets: tuple[int, int] = DEFAULT_SNIPPETS, crops: int = 1,
                         seed: int = 0) -> list[FeatureVideo]:
    """Videos in canonical order (train then test, anomalous first). ``n_train`` / ``n_test``: (anomalous, normal).
    ``signal[b]``: strength of the anomaly direction for backbone b, in units of the per-snippet noise std."""
    rng = np.random.default_rng(seed)
    directions = {b: _unit(rng.standard_normal(d)) * np.sqrt(d) for b, d in dims.items()}  # per-dim scale 1
    videos = []
    for split, (n_anomalous, n_normal) in (("train", n_train), ("test", n_test)):
        for i in range(n_anomalous + n_normal):
            label = int(i < n_anomalous)
            t = int(rng.integers(snippets[0], snippets[1] + 1))
            intervals, inside = [], np.zeros(t, dtype=bool)
            if label:
                length = max(1, int(round(t * rng.uniform(*ANOMALY_FRACTION))))
                start = int(rng.integers(0, t - length + 1))
                inside[start:start + length] = True
                intervals.append((start * SNIPPET_FRAMES, (start + length) * SNIPPET_FRAMES))
            name = f"{split}_{'anomaly' if label else 'normal'}_{i:04d}"
            video = FeatureVideo(name, label, "Anomaly" if label else "Normal", split, intervals)
            for b, d in dims.items():
                scene = rng.standard_normal(d).astype(np.float32) * SCENE_SCALE
                x = rng.standard_normal((t, crops, d)).astype(np.float32) + scene
                x[inside] += (signal[b] * directions[b]).astype(np.float32)
                video.features[b] = x
            videos.append(video)
    return videos


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def write_feature_dataset(root: str | Path, videos: list[FeatureVideo]) -> dict[str, Path]:
    """Write ``<root>/features/<backbone>/<name>.npy``, ``<root>/<backbone>.list`` and
    ``<root>/labels.csv``. Returns backbone -> list file (plus ``"labels"`` -> the CSV)."""
    root = Path(root)
    lists: dict[str, list[str]] = {}
    for video in videos:
        for b, x in video.features.items():
            path = root / "features" / b / f"{video.name}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, x)
            lists.setdefault(b, []).append(str(path.resolve()))
    out = {}
    for b, lines in lists.items():
        out[b] = root / f"{b}.list"
        out[b].write_text("\n".join(lines) + "\n", encoding="utf-8")
    out["labels"] = root / "labels.csv"
    with open(out["labels"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "label", "split", "class", "intervals"])
        for v in videos:
            writer.writerow([v.name, v.label, v.split, v.class_name, ";".join(f"{s}-{e}" for s, e in v.intervals)])
    return out
