"""Atomic file writes: temp file in the destination's folder, fsync, rename, fsync the folder.

A process killed mid-write leaves at most a temp file, never a half-written destination. The temp file is named
after its writer (``<stem>.<pid>@<host>.<thread><suffix>.tmp``) so a later process can tell whether the writer is
gone: the host matters when several machines share a folder (Ray workers writing one store on a network disk),
where a pid means nothing on another machine.

A full disk is one named error, :class:`NoSpaceError` ("no space left on DEVICE (N bytes free) while writing PATH";
for the store's own files "no space left on the filesystem holding the store STORE (DEVICE, N bytes free)"), whatever
layer noticed it (a plain ``write``, numpy, torch's zip writer, which reports it as a ``RuntimeError``, or SQLite,
which reports a write-ahead log that cannot grow as a "disk I/O error"): any failed write while the filesystem has
less than ``FULL_DISK_MARGIN_BYTES`` free counts (``os.statvfs``). The destination is untouched and the temp file
removed, so nothing already written is lost.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from pathlib import Path
from typing import Callable, IO

from pipeline.errors import UserError

# A write that fails while the disk has less free space than this is taken for a full disk even when the layer that
# failed lost the errno (torch's zip writer raises "RuntimeError: [enforce fail at inline_container.cc]").
FULL_DISK_MARGIN_BYTES = 1 << 20
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
MOUNTINFO = "/proc/self/mountinfo"  # Linux: which device and mount point hold a path (for the message)


class NoSpaceError(UserError):
    """The disk filled up during a write: names the device, its free bytes and the file (and the store, when the file
    is one of a store's: ``store``, its folder); what was written before is kept."""

    def __init__(self, path: str | Path, device: str | None = None, *, store: str | Path | None = None):
        self.path = Path(path)
        self.device = device or device_of(self.path)
        self.store = Path(store) if store is not None else None
        self.free = free_bytes(self.path)
        free = f"{self.free} bytes free" if self.free is not None else "free space unknown"
        if self.store is not None:
            super().__init__(f"no space left on the filesystem holding the store {self.store} ({self.device}, {free}) "
                             f"while writing {self.path}; free some space there, or use another `store` (on a larger "
                             "disk), and run the command again: everything written before is kept")
        else:
            super().__init__(f"no space left on {self.device} ({free}) while writing {self.path}; free some space "
                             "there (or move the store to a larger disk) and run the command again: everything "
                             "written before is kept")

    def in_store(self, store: str | Path) -> NoSpaceError:
        """The same error, named as a write of the store in folder ``store``."""
        return self if self.store is not None else NoSpaceError(self.path, self.device, store=store)


def device_of(path: str | Path) -> str:
    """The device and mount point of the filesystem holding ``path`` (its nearest existing folder), as in
    ``/dev/sda1 (mounted at /data)``; the folder itself when the mount table cannot be read."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        dev = os.stat(p).st_dev
        best: tuple[str, str] | None = None
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if " - " not in line or len(fields) < 5:
                    continue
                major, _, minor = fields[2].partition(":")
                if not (major.isdigit() and minor.isdigit()) or os.makedev(int(major), int(minor)) != dev:
                    continue
                mount = fields[4].replace("\\040", " ")
                source = line.split(" - ", 1)[1].split()[1:2] or ["?"]
                if best is None or len(mount) > len(best[1]):
                    best = (source[0], mount)
        if best:
            return f"{best[0]} (mounted at {best[1]})"
    except OSError:
        pass
    return f"the disk holding {p}"


def free_bytes(path: str | Path) -> int | None:
    """Bytes an unprivileged process may still write on the filesystem holding ``path`` (its nearest existing folder),
    from ``os.statvfs``; None when it cannot be asked."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_out_of_space(exc: BaseException, folder: str | Path | None = None) -> bool:
    """Whether ``exc`` (or an exception it chains) is a full disk: errno ENOSPC / EDQUOT, or any failure while the
    disk holding ``folder`` has less than ``FULL_DISK_MARGIN_BYTES`` free."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _NO_SPACE_ERRNOS:
            return True
        if "no space left on device" in str(e).lower() or "database or disk is full" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    if folder is None:
        return False
    free = free_bytes(folder)
    return free is not None and free < FULL_DISK_MARGIN_BYTES


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


def temp_path(dest: str | Path, folder: str | Path) -> Path:
    """The temp file a write to ``dest`` goes through, in ``folder``, named after its writer (module docstring)."""
    dest = Path(dest)
    return Path(folder) / f"{dest.stem}.{os.getpid()}@{host_name()}.{threading.get_ident()}{dest.suffix}.tmp"


def _open_temp(path: Path) -> IO[bytes]:
    """The temp file's handle (a function of its own so that tests can hand out a full disk: ``/dev/full``)."""
    return open(path, "wb")


def atomic_write(dest: str | Path, write: Callable[[IO[bytes]], None], *, tmp_dir: str | Path | None = None) -> Path:
    """Call ``write(file)`` on a temp file, then move it to ``dest`` in one step. Raises NoSpaceError when the disk
    is full (``dest`` then keeps its previous content, if any)."""
    dest = Path(dest)
    folder = Path(tmp_dir) if tmp_dir is not None else dest.parent
    tmp = temp_path(dest, folder)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _open_temp(tmp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except Exception as exc:
        if is_out_of_space(exc, folder if folder.is_dir() else None):
            raise NoSpaceError(dest) from exc
        raise
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
