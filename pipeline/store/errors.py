"""The store's named errors, and the mapping of an SQLite error on the manifest to one of them (damaged,
read-only, locked, full disk...), so that no stage ever shows a raw ``sqlite3`` traceback. A full disk is judged by
the free space of the store's filesystem (``os.statvfs``) whatever SQLite reported: SQLite reports a write-ahead log
or its index that cannot grow as a "disk I/O error", not SQLITE_FULL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.atomic import NoSpaceError, is_out_of_space
from pipeline.errors import UserError
from pipeline.store.layout import SQLITE_BUSY_TIMEOUT_S


class StoreError(UserError):
    """The store as a whole cannot be used as asked (not a folder, absent, damaged manifest, read-only, locked)."""


class ManifestDamaged(StoreError):
    """The manifest cannot be read as a database; the message names it and the fix (``--repair``)."""

    def __init__(self, manifest: Path, why: str):
        self.manifest = Path(manifest)
        super().__init__(f"the store's manifest {manifest} is damaged ({why}); run dakd store "
                         f"{manifest.parent} --repair (it moves the damaged file aside and rebuilds the manifest from "
                         "the store's files)")


class StoreReadOnly(StoreError):
    """A write was asked of a store that cannot be written."""

    def __init__(self, root: Path, what: str):
        super().__init__(f"the store {root} is read-only: {what}; make it writable, or work on a writable copy "
                         f"(cp -r {root} COPY, then use `store` COPY)")


class DamagedFeature(UserError):
    """A stored feature failed its check at load; the message names the video, backbone, file and the fix."""


class NonFiniteFeature(ValueError):
    """``put_feature`` refused an array holding NaN or inf; ``reason`` and ``fix`` as a failure records them."""

    def __init__(self, reason: str, fix: str):
        self.reason, self.fix = reason, fix
        super().__init__(f"{reason} ({fix})")


def _sqlite_fault(exc: sqlite3.Error, manifest: Path) -> UserError:
    """The named error for an SQLite error on ``manifest`` (the issue's cases: malformed or not a database, read-only
    or unopenable, full disk, locked)."""
    text = str(exc).lower()
    if "disk is full" in text:
        return NoSpaceError(manifest, store=manifest.parent)
    if "malformed" in text or "not a database" in text or "file is encrypted" in text:
        return ManifestDamaged(manifest, str(exc))
    if "readonly" in text or "read-only" in text:
        return StoreReadOnly(manifest.parent, f"SQLite cannot write {manifest} ({exc})")
    if is_out_of_space(exc, manifest.parent):  # a disk I/O error, unable to open (the -wal, -shm)... on a full disk
        return NoSpaceError(manifest, store=manifest.parent)
    if "unable to open" in text:
        return StoreError(f"cannot open the store's manifest {manifest} ({exc}): check that its folder exists and "
                          "that you may read (and, to add to it, write) the folder and the file")
    if "locked" in text or "busy" in text:
        return StoreError(f"the store's manifest {manifest} stayed locked by another process for "
                          f"{SQLITE_BUSY_TIMEOUT_S:g} s ({exc}); wait for the other stage to finish, then run again")
    if "i/o error" in text:
        return StoreError(f"disk I/O error on the store's manifest {manifest} ({exc}): check the disk; if the file "
                          f"is damaged, run dakd store {manifest.parent} --repair")
    return StoreError(f"the store's manifest {manifest}: {type(exc).__name__}: {exc}")


def _named_sql_errors(method):
    """Wrap a FeatureStore method so that an SQLite error leaves it as one named error (:func:`_sqlite_fault`), and a
    full disk under any of its files names the store."""

    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _sqlite_fault(exc, self.manifest) from None
        except NoSpaceError as exc:
            raise exc.in_store(self.manifest.parent) from exc.__cause__

    wrapper.__name__, wrapper.__doc__, wrapper.__qualname__ = method.__name__, method.__doc__, method.__qualname__
    wrapper.__wrapped__ = method
    return wrapper
