"""The user cache folder (weights, fetched footage) and the file hash used everywhere in the project."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

CACHE_ENV = "DAKD_CACHE_DIR"  # set it to move the cache (weights, assets) elsewhere
APP_NAME = "dakd-vad"
HASH_CHUNK = 1 << 20


def cache_dir() -> Path:
    """``$DAKD_CACHE_DIR``, else the platform's user cache dir for this app (``~/.cache/dakd-vad`` on Linux)."""
    root = os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir(APP_NAME)
    return Path(root).expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()
