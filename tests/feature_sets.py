"""Synthetic feature sets imported into a store through the community-feature import path."""

from __future__ import annotations

from pathlib import Path

from data.synthetic_features import make_feature_dataset, write_feature_dataset
from pipeline.cli import import_features

# A tiny configuration of the real architecture: the same modules and equations, narrower.
TINY_MODEL = ["--set", "model.d_model=32", "--set", "model.n_heads=4", "--set", "model.projection_hidden=32",
              "--set", "model.ffn_dim=64", "--set", "model.classifier_hidden=32", "--set", "model.k=8",
              "--set", "distill.head_hidden=32", "--set", "distill.head_dim=16"]


def feature_store(root: Path, *, dims: dict[str, int], signal: dict[str, float], n_train=(24, 24), n_test=(8, 8),
                  snippets=(24, 64), crops: int = 1, seed: int = 0) -> tuple[Path, Path]:
    """Write a synthetic feature set below ``root`` and import it. Returns (store, labels CSV)."""
    videos = make_feature_dataset(dims=dims, signal=signal, n_train=n_train, n_test=n_test, snippets=snippets,
                                  crops=crops, seed=seed)
    files = write_feature_dataset(root / "features", videos)
    store = root / "store"
    for backbone in dims:
        assert import_features.main([str(files[backbone]), "--backbone", backbone, "--store", str(store),
                                     "--quiet"]) == 0
    return store, files["labels"]
