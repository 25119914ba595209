"""Atomic file writes: temp file in the destination's folder, fsync, rename, fsync the folder.

A process killed mid-write leaves at most a temp file, never a half-written destination. The temp file is named
after its writer (``<stem>.<pid>@<host>.<thread><suffix>.tmp``) so a later process can tell whether the writer is
gone: the host matters when several machines share a folder (Ray workers writing one store on a network disk),
where a pid means nothing on another machine.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Callable, IO


def host_name() -> str:
    """This machine's name as used in temp file names (dots replaced, since dots separate the name's fields)."""
    return socket.gethostname().replace(".", "-") or "localhost"


def temp_owner(name: str) -> tuple[int, str | None] | None:
    """``(pid, host)`` of the process that wrote the temp file ``name``, or None if it is not one of ours. Host is
    None for temp files named before hosts were recorded (``<stem>.<pid>.<thread>...``)."""
    parts = name.split(".")
    if len(parts) < 4 or not name.endswith(".tmp"):
        return None
    pid, _, host = parts[1].partition("@")
    return (int(pid), host or None) if pid.isdigit() else None


def atomic_write(dest: str | Path, write: Callable[[IO[bytes]], None], *, tmp_dir: str | Path | None = None) -> Path:
    """Call ``write(file)`` on a temp file, then move it to ``dest`` in one step."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tmp_dir) if tmp_dir is not None else dest.parent
    tmp = folder / f"{dest.stem}.{os.getpid()}@{host_name()}.{threading.get_ident()}{dest.suffix}.tmp"
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
