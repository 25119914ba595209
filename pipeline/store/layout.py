"""The store folder's layout: the names of its files and folders, and cheap checks of a folder (is it a store,
may it be written, does its manifest look like an SQLite database). Nothing here opens the manifest."""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST = "manifest.sqlite"  # the SQLite manifest in the store root; its presence makes a folder a store
SQLITE_BUSY_TIMEOUT_S = 60.0
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
SQLITE_HEADER_BYTES = 100  # a database file is at least its header
RUN_SIDECAR = "run.json"  # in each run folder: the run's manifest row
RUN_CHECKPOINT = "checkpoint.pt"  # in a finished run's folder: the model and everything to rebuild it
LOCKS = "locks"  # the store's lock files (one per feature being computed, one per run being trained)
RUN_LOCK = "run-{key}.lock"  # in LOCKS: held by the process training run ``key`` (pipeline.train)


def is_store(path: str | Path) -> bool:
    """Whether ``path`` holds a store (its manifest), so a CLI that reads one can say so instead of creating it."""
    return (Path(path) / MANIFEST).is_file()


def writable(path: Path) -> bool:
    """Whether this process may write ``path`` and its permissions allow it: a path without any write permission
    bit counts as read-only even for root (module docstring)."""
    try:
        return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)
    except OSError:
        return False


def _stored_feature_files(root: Path, limit: int | None = None) -> list[Path]:
    files = []
    for f in (root / "features").glob("*/*/*.npy"):
        files.append(f)
        if limit and len(files) >= limit:
            break
    return files


def manifest_problem(manifest: Path) -> str | None:
    """Why ``manifest`` cannot be an SQLite database, from its size and first bytes (None when they look right)."""
    try:
        size = manifest.stat().st_size
        with open(manifest, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if size == 0:
        return "it is empty: zero bytes"
    if head != SQLITE_MAGIC:
        return f"not an SQLite database: it starts with {head[:8]!r}"
    if size < SQLITE_HEADER_BYTES:
        return f"truncated to {size} bytes"
    return None
