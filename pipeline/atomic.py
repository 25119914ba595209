"""Atomic file writes: temp file in the destination's folder, fsync, rename, fsync the folder.

A process killed mid-write leaves at most a temp file (named after its pid, so it can be cleaned up later),
never a half-written destination.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable, IO


def atomic_write(dest: str | Path, write: Callable[[IO[bytes]], None], *, tmp_dir: str | Path | None = None) -> Path:
    """Call ``write(file)`` on a temp file, then move it to ``dest`` in one step."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tmp_dir) if tmp_dir is not None else dest.parent
    tmp = folder / f"{dest.stem}.{os.getpid()}.{threading.get_ident()}{dest.suffix}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return dest


def atomic_write_text(dest: str | Path, text: str) -> Path:
    return atomic_write(dest, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(dest: str | Path, obj) -> Path:
    return atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=True) + "\n")
