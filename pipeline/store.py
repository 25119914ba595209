"""The feature store: content-addressed ``.npy`` files plus a SQLite manifest.

Layout (design.md)::

    <store>/features/<backbone>/<key[:2]>/<key>.npy   float [T, crops, D] (lowres: uint8)
    <store>/features/<backbone>/<key[:2]>/<key>.json  its sidecar: what the manifest records of it (for --repair)
    <store>/manifest.sqlite                            tables: paths, names, videos, extractors, features,
                                                       failures, runs, meta
    <store>/runs/<stage>/<key>/run.json                a run's manifest row (for --repair), beside its files
    <store>/locks/<key>.lock                           one OS file lock per feature being computed
    <store>/tmp/                                       temp files of writes in progress

Every write is atomic (temp file, fsync, rename) and a feature's row is inserted only after its file and sidecar
are in place, so a killed process leaves no half file and the next run resumes. Two processes on one store
coordinate through SQLite transactions (WAL, busy timeout) and per-feature OS file locks, which the kernel releases
when a process dies, so a ``kill -9`` never leaves a stale lock behind. A new manifest is built in ``tmp/`` and
linked into place complete, so a manifest is never seen half-made: a zero-byte manifest is damage, not a new store.

Integrity. At write each feature's shape, dtype, byte size and blake2b content hash are recorded (manifest row and
sidecar); non-finite values are refused (:class:`NonFiniteFeature`, a failure of that one video). Every read checks
the file against its row cheaply: the ``.npy`` header (magic, shape, dtype) and the file size, without hashing the
file. A missing, truncated or garbled file is a miss, named once per process (video, backbone, path) as a warning
and, on a writable store, marked damaged in the manifest with a failure record, so the next extract recomputes it.
Loading for training or scoring (:meth:`FeatureRecord.read`) also checks that the values are finite (the 0xFF bytes
of a damaged float file read as NaN); the memory-mapped open checks float files once, chunk by chunk, at open, and
integer files (``lowres``, uint8) not at all since they cannot hold a non-finite value. Only the hash sees damage
that keeps the values finite: ``python -m pipeline.store DIR --verify`` hashes every file, reports each damaged one
and marks it (exit 1 if any). Rows of schema 1 (before hashes) get their hash recorded by ``--verify``, after their
header, size and values are checked.

Store faults are named (:class:`StoreError`, a UserError): ``--store`` naming a file, a store that does not exist
(only extract and import create one: :func:`open_store` ``create=True``), a damaged manifest (truncated, random
bytes, zero bytes, missing beside stored features; the fix is ``python -m pipeline.store DIR --repair``, which
moves it aside as ``manifest.sqlite.damaged-<time>`` and rebuilds it from the sidecars and run folders), a read-only
store (opened with SQLite's ``immutable=1`` when no write-ahead log is left, else read from a private copy of the
manifest and its log, so that nothing in the store is touched; everything that only reads works, a write names
the store) and a full disk (:class:`pipeline.atomic.NoSpaceError`; the train stage records the run ``failed``, and a
``running`` row whose run lock no process holds is listed as ``interrupted``). A store whose folder or manifest
has no write permission bit is read-only even for root, who could write anyway: the permissions say that it is
to be left alone.

``python -m pipeline.store DIR`` lists what a store holds; ``--verify`` and ``--repair`` as above.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import filelock
import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: a run's lock cannot be probed, its recorded status is shown as is
    fcntl = None

from data.decode import VideoInfo, frame_folder_files
from data.discover import video_name
from pipeline.atomic import NoSpaceError, atomic_write, atomic_write_json, host_name, is_out_of_space, temp_owner
from pipeline.errors import UserError
from pipeline.keys import canonical_json, hash_video

MANIFEST = "manifest.sqlite"  # the SQLite manifest in the store root; its presence makes a folder a store
SQLITE_BUSY_TIMEOUT_S = 60.0
SCHEMA_VERSION = 2  # 2: features carry nbytes, hash, damage (schema 1 stores are migrated on open, when writable)
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
SQLITE_HEADER_BYTES = 100  # a database file is at least its header
HASH_NAME = "blake2b"  # the content hash recorded per feature file (hashlib; fast, in the standard library)
HASH_DIGEST_BYTES = 16  # 128 bits: collisions are not a concern for detecting damage
HASH_CHUNK_BYTES = 1 << 20  # bytes read at a time when hashing a file
FINITE_CHECK_BYTES = 16 << 20  # bytes of a memory-mapped feature checked for non-finite values at a time
SIDECAR_SUFFIX = ".json"  # beside each feature file: what the manifest records of it
SIDECAR_FORMAT = 1
RUN_SIDECAR = "run.json"  # in each run folder: the run's manifest row
DAMAGED_TAG = ".damaged-"  # a damaged manifest moved aside by --repair: manifest.sqlite.damaged-<time>
REPAIR_STAMP = "%Y%m%d-%H%M%S"
FEATURE_FAILURE_STAGE = "store"  # the failures' stage of damaged feature files
RUN_LOCK = "run-{key}.lock"  # in locks/: held by the process training run ``key`` (pipeline.train)

log = logging.getLogger("pipeline.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS paths (
    path TEXT PRIMARY KEY, signature TEXT NOT NULL, video_key TEXT NOT NULL, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    key TEXT PRIMARY KEY, n_frames INTEGER NOT NULL, declared_frames INTEGER NOT NULL, fps REAL NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, codec TEXT NOT NULL, backend TEXT NOT NULL,
    first_path TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names (
    name TEXT NOT NULL, video_key TEXT NOT NULL, source TEXT NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (name, video_key));
CREATE TABLE IF NOT EXISTS extractors (fingerprint TEXT PRIMARY KEY, backbone TEXT NOT NULL, params TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS features (
    key TEXT PRIMARY KEY, video_key TEXT NOT NULL, backbone TEXT NOT NULL, fingerprint TEXT NOT NULL,
    file TEXT NOT NULL, n_snippets INTEGER NOT NULL, crops INTEGER NOT NULL, dim INTEGER NOT NULL,
    dtype TEXT NOT NULL, created_at REAL NOT NULL, nbytes INTEGER, hash TEXT, damage TEXT);
CREATE INDEX IF NOT EXISTS features_by_video ON features (video_key);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY, stage TEXT NOT NULL, dataset TEXT NOT NULL, backbones TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, folder TEXT NOT NULL, summary TEXT NOT NULL,
    created_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, stage TEXT NOT NULL, reason TEXT NOT NULL,
    fix TEXT NOT NULL, created_at REAL NOT NULL);
"""
# Columns schema 2 added to the features table (schema 1 stores get them by ALTER TABLE, NULL in old rows).
_V2_FEATURE_COLUMNS = (("nbytes", "INTEGER"), ("hash", "TEXT"), ("damage", "TEXT"))
_FEATURE_COLUMNS = ("key", "video_key", "backbone", "fingerprint", "file", "n_snippets", "crops", "dim", "dtype",
                    "created_at", "nbytes", "hash", "damage")


# -- errors -----------------------------------------------------------------------------------------------------
class StoreError(UserError):
    """The store as a whole cannot be used as asked (not a folder, absent, damaged manifest, read-only, locked)."""


class ManifestDamaged(StoreError):
    """The manifest cannot be read as a database; the message names it and the fix (``--repair``)."""

    def __init__(self, manifest: Path, why: str):
        self.manifest = Path(manifest)
        super().__init__(f"the store's manifest {manifest} is damaged ({why}); run python -m pipeline.store "
                         f"{manifest.parent} --repair (it moves the damaged file aside and rebuilds the manifest from "
                         "the store's files)")


class StoreReadOnly(StoreError):
    """A write was asked of a store that cannot be written."""

    def __init__(self, root: Path, what: str):
        super().__init__(f"the store {root} is read-only: {what}; make it writable, or work on a writable copy "
                         f"(cp -r {root} COPY, then --store COPY)")


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
        return NoSpaceError(manifest)
    if "malformed" in text or "not a database" in text or "file is encrypted" in text:
        return ManifestDamaged(manifest, str(exc))
    if "readonly" in text or "read-only" in text:
        return StoreReadOnly(manifest.parent, f"SQLite cannot write {manifest} ({exc})")
    if "unable to open" in text:
        return StoreError(f"cannot open the store's manifest {manifest} ({exc}): check that its folder exists and "
                          "that you may read (and, to add to it, write) the folder and the file")
    if "locked" in text or "busy" in text:
        return StoreError(f"the store's manifest {manifest} stayed locked by another process for "
                          f"{SQLITE_BUSY_TIMEOUT_S:g} s ({exc}); wait for the other stage to finish, then run again")
    if "i/o error" in text:
        return StoreError(f"disk I/O error on the store's manifest {manifest} ({exc}): check the disk; if the file "
                          f"is damaged, run python -m pipeline.store {manifest.parent} --repair")
    return StoreError(f"the store's manifest {manifest}: {type(exc).__name__}: {exc}")


def _named_sql_errors(method):
    """Wrap a FeatureStore method so that an SQLite error leaves it as one named error (:func:`_sqlite_fault`)."""

    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _sqlite_fault(exc, self.manifest) from None

    wrapper.__name__, wrapper.__doc__, wrapper.__qualname__ = method.__name__, method.__doc__, method.__qualname__
    wrapper.__wrapped__ = method
    return wrapper


# -- feature files: hash, header check, values --------------------------------------------------------------------
class _HashingWriter:
    """A file wrapper that hashes and counts what goes through ``write`` (numpy writes through it in chunks)."""

    def __init__(self, f):
        self.f = f
        self.hash = hashlib.blake2b(digest_size=HASH_DIGEST_BYTES)
        self.nbytes = 0

    def write(self, data) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.nbytes += view.nbytes
        return self.f.write(view)


def file_hash(path: Path) -> str:
    """``blake2b:<hex>`` of the file's bytes, read in chunks."""
    h = hashlib.blake2b(digest_size=HASH_DIGEST_BYTES)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return f"{HASH_NAME}:{h.hexdigest()}"


def check_npy(path: Path, shape: tuple[int, ...], dtype: str, nbytes: int | None = None) -> str | None:
    """Why the ``.npy`` at ``path`` is not the recorded array (None when it is): missing, another size than recorded,
    a header that is not a plain ``.npy`` of ``shape`` and ``dtype``, or fewer or more bytes than the header needs.
    Reads the header only (cheap)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "the file is missing"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if nbytes is not None and size != nbytes:
        return f"{size} bytes where {nbytes} were written (truncated or overwritten)"
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            header_shape, fortran, header_dtype = read_header(f)
            data_start = f.tell()
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError...
        return f"not a readable .npy header ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
    if header_dtype.hasobject:
        return "its header declares Python objects, which a feature never holds"
    if tuple(header_shape) != tuple(shape) or str(header_dtype) != str(dtype) or fortran:
        return (f"its header says {str(header_dtype)} {tuple(header_shape)}"
                f"{' (Fortran order)' if fortran else ''} where {dtype} {tuple(shape)} was written")
    expected = data_start + int(np.prod(shape, dtype=np.int64)) * header_dtype.itemsize
    if size != expected:
        return f"{size} bytes where its header needs {expected} (truncated or garbled)"
    return None


def count_nonfinite(array: np.ndarray) -> int:
    """NaN and inf values in ``array`` (any shape; 0 for integer arrays), checked a chunk of rows at a time so that
    a memory-mapped file is read once with bounded memory."""
    if array.dtype.kind not in "fc" or array.size == 0:
        return 0
    if array.ndim == 0:
        return int(not np.isfinite(array))
    rows = max(1, FINITE_CHECK_BYTES // max(1, array[0].nbytes))
    return sum(int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
               for chunk in (array[i:i + rows] for i in range(0, len(array), rows)))


@dataclass(frozen=True)
class FeatureRecord:
    key: str
    video_key: str
    backbone: str
    fingerprint: str
    file: Path
    n_snippets: int
    crops: int
    dim: int
    dtype: str
    nbytes: int | None = None  # recorded at write (schema 2; None in older rows)
    hash: str | None = None  # blake2b:<hex> of the file's bytes (schema 2; old rows: recorded by --verify)
    created_at: float = 0.0
    store: FeatureStore | None = field(default=None, compare=False, repr=False)  # who reports damage

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.n_snippets, self.crops, self.dim

    def problem(self) -> str | None:
        """Why the file is not what was written (cheap: header and size; None when it is)."""
        return check_npy(self.file, self.shape, self.dtype, self.nbytes)

    def read(self, *, mmap: bool = False) -> np.ndarray:
        """The stored array ``[T, crops, D]`` in its stored dtype, checked: header and size, then finite values
        (a memory-mapped float file is checked once here, chunk by chunk; integer files need no check). Raises
        DamagedFeature naming the video, backbone and file, after marking the feature damaged so that the next
        extract recomputes it."""
        problem = self.problem()
        if problem is None:
            try:
                array = np.load(self.file, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:  # changed since the check
                problem = f"cannot be read ({exc})"
            else:
                bad = count_nonfinite(array)
                if not bad:
                    return array
                problem = (f"{bad} of its {array.size} values are NaN or inf, which is never written: the file's "
                           "bytes are damaged")
        label = self.store.damage(self, problem) if self.store is not None else f"{self.backbone} feature ({self.file})"
        raise DamagedFeature(f"the {label} is damaged ({problem}); it is not used: "
                             f"{recompute_fix(self.store, self)}")


def recompute_fix(store: FeatureStore | None, record: FeatureRecord, *, then: bool = True) -> str:
    """How to get a damaged feature back: extract recomputes it (it counts as missing now), import re-imports it.
    ``then``: add "then run this command again" (for a stage's error; not for the failure log)."""
    where = f" --store {store.root}" if store is not None else ""
    again = ", then run this command again" if then else ""
    if store is not None and store.extractor_params(record.fingerprint).get("imported"):
        return f"import it again (python -m pipeline.import_features LIST --backbone {record.backbone}{where}){again}"
    return (f"extract it again (python -m pipeline.extract VIDEOS --backbones {record.backbone}{where} recomputes "
            f"what is damaged or missing){again}")


# -- store location and manifest checks ---------------------------------------------------------------------------
def _signature(path: Path) -> str:
    """Cheap stand-in for a file's content (size + mtime), so an unchanged file is not re-hashed."""
    if path.is_dir():
        stats = [f.stat() for f in frame_folder_files(path)]
        return f"dir:{len(stats)}:{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"
    st = path.stat()
    return f"file:{st.st_size}:{st.st_mtime_ns}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_held(path: Path) -> bool:
    """Whether some process holds the OS lock on ``path`` (filelock's flock), probed without creating anything."""
    if fcntl is None:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # never locked
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


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


def _check_location(root: Path, create: bool, *, rebuild: bool = False) -> None:
    """Name a ``--store`` that is a file, or (``create`` False) one that does not exist or holds no manifest; a
    missing manifest beside feature files is damage (unless ``rebuild``: --repair making the new one)."""
    if root.is_file() or (root.exists() and not root.is_dir()):
        hint = f" (that is a store's manifest: pass its folder {root.parent})" if root.name == MANIFEST else ""
        raise StoreError(f"--store {root} is a file, not a store folder{hint}; pass the folder given to "
                         "python -m pipeline.extract --store")
    if not root.exists():
        for parent in root.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise StoreError(f"--store {root}: {parent} is a file, not a folder; choose another store path")
                break
        if not create:
            raise StoreError(f"no store at {root}; create one with python -m pipeline.extract VIDEOS --store {root}")
        return
    if not (root / MANIFEST).exists():
        stored = _stored_feature_files(root, limit=1)
        if stored and not rebuild:
            raise ManifestDamaged(root / MANIFEST, f"it is missing, while {root / 'features'} holds feature files")
        if not create:
            raise StoreError(f"{root} is not a feature store (no {MANIFEST} in it); create one with "
                             f"python -m pipeline.extract VIDEOS --store {root}")


def open_store(path: str | Path, *, create: bool, writes: bool = False) -> FeatureStore:
    """The store every stage main opens. ``create``: a missing store is made (extract, import); else it must exist.
    ``writes``: the stage writes (extract, import, train, grid), so a read-only store is refused now rather than at
    its first write. Raises StoreError (a UserError) naming the store and the fix."""
    store = FeatureStore(path, create=create)
    if writes and store.readonly:
        store.close()
        raise StoreReadOnly(store.root, "this stage writes to it")
    return store


@_named_sql_errors
def _init_connection(store: FeatureStore) -> None:
    """Check the manifest is a sound database (quick_check), create or migrate its tables when writable."""
    conn = store._conn()
    try:
        result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ManifestDamaged(store.manifest, str(exc)) from None
    if result != "ok":
        raise ManifestDamaged(store.manifest, f"SQLite's quick_check: {result}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "features" not in tables or "meta" not in tables:
        raise ManifestDamaged(store.manifest, f"it is an SQLite database without the store's tables "
                              f"(it has: {', '.join(sorted(tables)) or 'none'})")
    version = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    version = int(version[0]) if version and str(version[0]).isdigit() else 1
    if version > SCHEMA_VERSION:
        raise StoreError(f"the store {store.root} has schema {version}, newer than this version's "
                         f"{SCHEMA_VERSION}: use the version of the project that wrote it")
    if version < SCHEMA_VERSION and not store.readonly:
        _migrate(conn)


def _migrate(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the integrity columns (NULL in the old rows: --verify records their hashes). One transaction,
    the columns re-read inside it, so that two processes opening an old store at once migrate it once. Tables the
    store lacks are created first (CREATE IF NOT EXISTS)."""
    conn.executescript(_SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(features)")}
        for name, decl in _V2_FEATURE_COLUMNS:
            if name not in columns:
                conn.execute(f"ALTER TABLE features ADD COLUMN {name} {decl}")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class FeatureStore:
    """A store rooted at a folder. Safe to use from several threads (one SQLite connection per thread) and
    several processes. ``create``: make the store if the folder has none (else StoreError); ``readonly``: None
    decides from the permissions (:func:`writable`)."""

    def __init__(self, root: str | Path, *, create: bool = True, readonly: bool | None = None,
                 _rebuild: bool = False):
        self.root = Path(root)
        self.manifest = self.root / MANIFEST
        self._local = threading.local()
        self._reported: set[str] = set()  # damaged features already named by this process
        self._private_copy: Path | None = None  # a read-only manifest copied aside (see _connect_readonly)
        _check_location(self.root, create, rebuild=_rebuild)
        exists = self.manifest.exists()
        if exists and (problem := manifest_problem(self.manifest)):
            raise ManifestDamaged(self.manifest, problem)
        if readonly is None:
            readonly = self.root.exists() and not (writable(self.root) and (not exists or writable(self.manifest)))
        self.readonly = readonly
        if not exists:
            if readonly:
                raise StoreReadOnly(self.root, "cannot create a store in it")
            self._create_manifest()
        if not readonly:
            for sub in ("features", "locks", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        _init_connection(self)
        self._columns = self._feature_columns()
        if not readonly:
            self._remove_orphan_temp_files()

    # -- connection -------------------------------------------------------------------------------------------
    def _create_manifest(self) -> None:
        """A complete empty manifest, built in tmp/ and linked into place only if none appeared meanwhile (another
        process creating the same store), so no process ever sees a half-made one."""
        try:
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
            tmp = self.root / "tmp" / f"manifest.{os.getpid()}@{host_name()}.{threading.get_ident()}.sqlite.tmp"
            conn = sqlite3.connect(tmp)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.commit()
            finally:
                conn.close()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.manifest)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError:  # a filesystem without hard links
                if not self.manifest.exists():
                    os.replace(tmp, self.manifest)
            finally:
                for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                    leftover.unlink(missing_ok=True)
        except sqlite3.Error as exc:
            raise _sqlite_fault(exc, self.manifest) from None
        except OSError as exc:
            if is_out_of_space(exc, self.root):
                raise NoSpaceError(self.manifest) from exc
            raise StoreError(f"cannot create the store at {self.root} ({exc.strerror or exc}); choose a folder you "
                             "may write") from None

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection that writes nothing into the store. Without a write-ahead log left,
        ``immutable=1`` on the manifest itself (there is nothing else to read, and no -shm file is made). With one
        (a writer was killed, or a store made read-only while open), SQLite's ``mode=ro`` would need the -shm file,
        whose read marks it writes even for a reader: instead the manifest and its log are copied into a private
        temp folder once, and read there, so the store's last writes are seen and its files stay untouched."""
        wal = Path(f"{self.manifest}-wal")
        if self._private_copy is None:
            if not (wal.exists() and wal.stat().st_size > 0):
                return sqlite3.connect(f"file:{quote(str(self.manifest.absolute()))}?immutable=1", uri=True,
                                       timeout=SQLITE_BUSY_TIMEOUT_S)
            folder = Path(tempfile.mkdtemp(prefix="dakd-manifest-"))
            shutil.copyfile(self.manifest, folder / MANIFEST)
            shutil.copyfile(wal, folder / f"{MANIFEST}-wal")
            self._private_copy = folder / MANIFEST
            weakref.finalize(self, shutil.rmtree, folder, True)  # also when close() is never called
        return sqlite3.connect(self._private_copy, timeout=SQLITE_BUSY_TIMEOUT_S)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = self._connect_readonly()
            else:
                conn = sqlite3.connect(self.manifest, timeout=SQLITE_BUSY_TIMEOUT_S)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._private_copy is not None:
            shutil.rmtree(self._private_copy.parent, ignore_errors=True)
            self._private_copy = None

    def _require_writable(self, what: str) -> None:
        if self.readonly:
            raise StoreReadOnly(self.root, what)

    def _feature_columns(self) -> str:
        """The features table's columns as a SELECT list: NULL for those a schema 1 store opened read-only lacks."""
        present = {r[1] for r in self._conn().execute("PRAGMA table_info(features)")}
        return ", ".join(c if c in present else f"NULL AS {c}" for c in _FEATURE_COLUMNS)

    # -- videos -----------------------------------------------------------------------------------------------
    def video_key(self, path: Path) -> str:
        """Content key of a video, hashing its bytes only when the path's size or mtime changed. A read-only store
        cannot remember a new path: the video is hashed (every time)."""
        absolute = str(path.resolve())
        sig = _signature(path)
        conn = self._conn()
        row = conn.execute("SELECT signature, video_key FROM paths WHERE path = ?", (absolute,)).fetchone()
        if row and row[0] == sig:
            return row[1]
        key = hash_video(path)
        if self.readonly:
            return key
        with conn:
            conn.execute("INSERT OR REPLACE INTO paths VALUES (?, ?, ?, ?)", (absolute, sig, key, time.time()))
        self.record_name(video_name(path), key, source=absolute)
        return key

    # -- names: how datasets find their videos' features -------------------------------------------------------
    def record_name(self, name: str, video_key: str, *, source: str) -> None:
        """Remember that the video called ``name`` (a dataset list's name, no extension) has ``video_key``.
        ``source`` says where the name came from (a video path, or an imported feature list)."""
        self._require_writable(f"cannot record the name {name!r}")
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO names VALUES (?, ?, ?, ?)", (name, video_key, source, time.time()))

    def video_keys_for(self, name: str) -> list[str]:
        """Video keys recorded under ``name``, most recently seen first."""
        rows = self._conn().execute("SELECT video_key FROM names WHERE name = ? ORDER BY seen_at DESC",
                                    (name,)).fetchall()
        return [r[0] for r in rows]

    def features_of_video(self, video_key: str, backbone: str) -> list[FeatureRecord]:
        """Every sound stored feature of one video for one backbone (several when extracted with other settings);
        damaged ones are left out (and named: :meth:`get_feature`)."""
        rows = self._conn().execute(
            "SELECT key FROM features WHERE video_key = ? AND backbone = ? ORDER BY created_at DESC",
            (video_key, backbone)).fetchall()
        return [rec for (key,) in rows if (rec := self.get_feature(key)) is not None]

    def record_video(self, key: str, info: VideoInfo) -> None:
        self._require_writable("cannot record a new video")
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, info.n_frames or 0, info.declared_frames, info.fps, info.width, info.height,
                          info.codec, info.backend, info.path))

    def video(self, key: str) -> dict | None:
        cur = self._conn().execute("SELECT * FROM videos WHERE key = ?", (key,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    def video_label(self, video_key: str) -> str:
        """A video as a message names it: its first path, else its recorded name, else its key's prefix."""
        info = self.video(video_key)
        if info and info.get("first_path"):
            return str(info["first_path"])
        row = self._conn().execute("SELECT name FROM names WHERE video_key = ? ORDER BY seen_at DESC",
                                   (video_key,)).fetchone()
        return row[0] if row else f"video {video_key[:12]}"

    # -- extractors and features ------------------------------------------------------------------------------
    def register_extractor(self, fingerprint: str, backbone: str, params: dict) -> None:
        """Record an extractor's parameters (nothing when known; a read-only store records nothing: its writes
        of features fail by name later)."""
        if self.readonly or self.extractor_params(fingerprint):
            return
        with self._conn() as conn:
            conn.execute("INSERT OR IGNORE INTO extractors VALUES (?, ?, ?)",
                         (fingerprint, backbone, canonical_json(params)))

    def extractor_params(self, fingerprint: str) -> dict:
        """The parameters an extractor fingerprint was made from ({} if unknown)."""
        row = self._conn().execute("SELECT params FROM extractors WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return json.loads(row[0]) if row else {}

    def feature_file(self, backbone: str, key: str) -> Path:
        return self.root / "features" / backbone / key[:2] / f"{key}.npy"

    def _record(self, row: tuple) -> FeatureRecord:
        values = dict(zip(_FEATURE_COLUMNS, row))
        return FeatureRecord(values["key"], values["video_key"], values["backbone"], values["fingerprint"],
                             self.root / values["file"], values["n_snippets"], values["crops"], values["dim"],
                             values["dtype"], values["nbytes"], values["hash"], values["created_at"], store=self)

    def _feature_row(self, key: str) -> tuple | None:
        return self._conn().execute(f"SELECT {self._columns} FROM features WHERE key = ?", (key,)).fetchone()

    def get_feature(self, key: str) -> FeatureRecord | None:
        """The feature's record if its row exists and its file passes the cheap check (header, shape, dtype, size);
        else None: a miss, which extract recomputes. A damaged file is named once (:meth:`damage`)."""
        row = self._feature_row(key)
        if row is None or row[_FEATURE_COLUMNS.index("damage")] is not None:
            return None
        record = self._record(row)
        problem = record.problem()
        if problem is not None:
            self.damage(record, problem)
            return None
        return record

    def load_feature(self, key: str) -> np.ndarray:
        """The checked array of feature ``key`` (:meth:`FeatureRecord.read`). Raises DamagedFeature when the
        feature is missing or damaged."""
        record = self.get_feature(key)
        if record is None:
            row = self._feature_row(key)
            if row is None:
                raise KeyError(f"feature {key} is not in the store {self.root}")
            record = self._record(row)
            raise DamagedFeature(f"the {self._label(record)} is damaged "
                                 f"({row[_FEATURE_COLUMNS.index('damage')] or record.problem()}); it is not used: "
                                 f"{recompute_fix(self, record)}")
        return record.read()

    def feature_damage(self, key: str) -> str | None:
        """Why feature ``key`` is damaged: the reason it was marked with, else what the cheap check finds (None when
        sound). Marks nothing."""
        row = self._feature_row(key)
        if row is None:
            return f"feature {key} has no row in the manifest"
        return row[_FEATURE_COLUMNS.index("damage")] or self._record(row).problem()

    def _label(self, record: FeatureRecord) -> str:
        return f"{record.backbone} feature of {self.video_label(record.video_key)} ({record.file})"

    def damage(self, record: FeatureRecord, reason: str, *, warn: bool = True) -> str:
        """Name a damaged feature: a warning (once per process, unless ``warn`` is False) and, on a writable store,
        the row marked damaged (a miss from now on, so the next extract recomputes it) with a failure record.
        Returns how messages name it: ``<backbone> feature of <video> (<path>)``."""
        label = self._label(record)
        if warn and record.key not in self._reported:
            self._reported.add(record.key)
            log.warning("the %s is damaged (%s); it counts as missing and is never used: %s", label, reason,
                        recompute_fix(self, record, then=False))
        if not self.readonly:
            with self._conn() as conn:
                # Only the row version that was checked: a concurrent extract may have just rewritten it.
                marked = conn.execute("UPDATE features SET damage = ? WHERE key = ? AND created_at = ? AND "
                                      "damage IS NULL", (reason, record.key, record.created_at)).rowcount
            if marked:
                self.record_failure(str(record.file), FEATURE_FAILURE_STAGE,
                                    f"the {record.backbone} feature of {self.video_label(record.video_key)} is "
                                    f"damaged: {reason}", recompute_fix(self, record, then=False))
        return label

    def put_feature(self, key: str, video_key: str, backbone: str, fingerprint: str, array: np.ndarray) -> Path:
        """Atomically write ``array`` ``[T, crops, D]``, its sidecar, and then its row (shape, dtype, size, hash).
        Raises NonFiniteFeature for an array holding NaN or inf, which is never stored."""
        if array.ndim != 3:
            raise ValueError(f"features must be [T, crops, D], got shape {array.shape}")
        if array.dtype.hasobject:
            raise ValueError(f"features must be numbers, got dtype {array.dtype}")
        if bad := count_nonfinite(array):
            raise NonFiniteFeature(
                f"the {backbone} backbone gave {bad} NaN or inf values among the {array.size} of this video's "
                f"features {tuple(array.shape)}, which are never stored",
                "check the video's frames and the backbone's weights (--weights); the other videos are kept")
        self._require_writable(f"cannot store the {backbone} features of {self.video_label(video_key)}")
        dest = self.feature_file(backbone, key)
        digest, nbytes = self._atomic_save(dest, array)
        created = time.time()
        row = (key, video_key, backbone, fingerprint, str(dest.relative_to(self.root)), array.shape[0],
               array.shape[1], array.shape[2], str(array.dtype), created, nbytes, digest, None)
        atomic_write_sidecar(dest.with_suffix(SIDECAR_SUFFIX), self._sidecar(dict(zip(_FEATURE_COLUMNS, row))),
                             tmp_dir=self.root / "tmp")
        with self._conn() as conn:
            conn.execute(f"INSERT OR REPLACE INTO features ({', '.join(_FEATURE_COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(_FEATURE_COLUMNS))})", row)
        self._reported.discard(key)
        return dest

    def _sidecar(self, row: dict) -> dict:
        """What --repair needs to rebuild a feature's rows: the row, its extractor, its video and its names."""
        extractor = self._conn().execute("SELECT backbone, params FROM extractors WHERE fingerprint = ?",
                                         (row["fingerprint"],)).fetchone()
        names = self._conn().execute("SELECT name, source, seen_at FROM names WHERE video_key = ? ORDER BY name",
                                     (row["video_key"],)).fetchall()
        return {"format": SIDECAR_FORMAT, "feature": {k: v for k, v in row.items() if k != "damage"},
                "shape": [row["n_snippets"], row["crops"], row["dim"]],
                "extractor": {"backbone": extractor[0], "params": json.loads(extractor[1])} if extractor else None,
                "video": self.video(row["video_key"]), "names": [list(n) for n in names]}

    def _atomic_save(self, dest: Path, array: np.ndarray) -> tuple[str, int]:
        """Write the ``.npy`` atomically, hashing its bytes on the way. Returns (hash, size in bytes)."""
        writer: list[_HashingWriter] = []

        def save(f) -> None:
            writer.append(_HashingWriter(f))
            np.save(writer[0], array, allow_pickle=False)

        atomic_write(dest, save, tmp_dir=self.root / "tmp")
        return f"{HASH_NAME}:{writer[0].hash.hexdigest()}", writer[0].nbytes

    def _remove_orphan_temp_files(self) -> None:
        """Temp files of processes on this machine that died mid-write (their name carries the writer's pid and
        host). Another machine's temp files are left alone: its pids cannot be checked from here."""
        here = host_name()
        for tmp in (self.root / "tmp").glob("*.tmp*"):  # also a new manifest's -wal / -shm (_create_manifest)
            owner = temp_owner(tmp.name.removesuffix("-wal").removesuffix("-shm"))
            if owner and owner[1] in (None, here) and not _pid_alive(owner[0]):
                tmp.unlink(missing_ok=True)

    def lock(self, key: str) -> filelock.BaseFileLock:
        """The OS lock that one process holds while computing feature ``key`` (acquire with timeout=0 to try)."""
        self._require_writable("the features of this video are not stored yet and cannot be computed into it")
        return filelock.FileLock(self.root / "locks" / f"{key}.lock", thread_local=False)

    # -- integrity: --verify -----------------------------------------------------------------------------------
    def verify(self, *, progress: bool = False) -> dict:
        """Check every feature file: header and size, then its hash against the recorded one (rows of schema 1,
        without a hash: their values, then their hash is recorded). A damaged file is marked (a miss: the next
        extract recomputes it) and named; one marked before that is sound again is unmarked. Returns
        ``{"checked", "hashed", "damaged": [{"key", "backbone", "video", "file", "reason", "fix"}], "orphans"}``."""
        from tqdm import tqdm

        conn = self._conn()
        integrity = conn.execute("PRAGMA integrity_check(1)").fetchone()[0]
        if integrity != "ok":
            raise ManifestDamaged(self.manifest, f"SQLite's integrity_check: {integrity}")
        rows = conn.execute(f"SELECT {self._columns} FROM features ORDER BY backbone, key").fetchall()
        report = {"checked": 0, "hashed": 0, "damaged": [], "orphans": 0}
        known = set()
        for row in tqdm(rows, desc="verify", unit="file", disable=not progress):
            record = self._record(row)
            known.add(record.file)
            report["checked"] += 1
            marked = row[_FEATURE_COLUMNS.index("damage")]
            reason = record.problem()
            digest = None
            if reason is None:
                digest = file_hash(record.file)
                if record.hash is None:  # schema 1 row: check the values, then trust and record the hash
                    bad = count_nonfinite(np.load(record.file, mmap_mode="r", allow_pickle=False))
                    reason = f"{bad} of its values are NaN or inf" if bad else None
                elif digest != record.hash:
                    reason = f"its content hash {digest} is not the {record.hash} recorded when it was written"
            if reason is None:
                if not self.readonly and (record.hash is None or record.nbytes is None or marked is not None):
                    with conn:
                        conn.execute("UPDATE features SET hash = ?, nbytes = ?, damage = NULL WHERE key = ?",
                                     (digest, record.file.stat().st_size, record.key))
                    report["hashed"] += record.hash is None
                continue
            self.damage(record, reason, warn=False)  # named in the report
            report["damaged"].append({"key": record.key, "backbone": record.backbone,
                                      "video": self.video_label(record.video_key), "file": str(record.file),
                                      "reason": reason, "fix": recompute_fix(self, record, then=False)})
        report["orphans"] = sum(1 for f in _stored_feature_files(self.root) if f not in known)
        return report

    # -- runs (training and evaluation stages) -------------------------------------------------------------------
    def run_folder(self, stage: str, key: str) -> Path:
        return self.root / "runs" / stage / key

    def record_run(self, key: str, stage: str, *, dataset: str, backbones: str, seed: int, status: str,
                   summary: dict | None = None) -> None:
        """Insert or update a run's row; ``status`` is ``running``, ``done`` or ``failed``. The row is also
        written to the run folder's ``run.json`` (when the folder exists) so that --repair can rebuild it."""
        self._require_writable(f"cannot record the {stage} run {key[:12]}")
        now = time.time()
        folder = str(self.run_folder(stage, key).relative_to(self.root))
        with self._conn() as conn:
            conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                         "status = excluded.status, summary = excluded.summary, finished_at = excluded.finished_at",
                         (key, stage, dataset, backbones, seed, status, folder, canonical_json(summary or {}), now,
                          now if status in ("done", "failed") else None))
            cur = conn.execute("SELECT * FROM runs WHERE key = ?", (key,))
            row = dict(zip([c[0] for c in cur.description], cur.fetchone()))
        if (self.root / folder).is_dir():
            atomic_write_json(self.root / folder / RUN_SIDECAR, row)

    def runs(self, stage: str | None = None) -> list[dict]:
        """Every run's row; a ``running`` run whose lock no process holds (killed, or a full disk refused its
        ``failed`` row) is shown as ``interrupted``: ``python -m pipeline.train`` again resumes it."""
        sql = "SELECT * FROM runs" + (" WHERE stage = ?" if stage else "") + " ORDER BY created_at"
        cur = self._conn().execute(sql, (stage,) if stage else ())
        rows = [dict(zip([c[0] for c in cur.description], row)) for row in cur.fetchall()]
        for row in rows:
            if row["status"] == "running" and not _lock_held(self.root / "locks" / RUN_LOCK.format(key=row["key"])):
                row["status"] = "interrupted"
        return rows

    # -- failures ---------------------------------------------------------------------------------------------
    def record_failure(self, path: str, stage: str, reason: str, fix: str = "") -> None:
        """Log a failure in the manifest (a read-only store cannot: the stage's own output names it)."""
        if self.readonly:
            return
        with self._conn() as conn:
            conn.execute("INSERT INTO failures (path, stage, reason, fix, created_at) VALUES (?, ?, ?, ?, ?)",
                         (str(path), stage, reason, fix, time.time()))

    def failures(self) -> list[dict]:
        cur = self._conn().execute("SELECT path, stage, reason, fix, created_at FROM failures ORDER BY id")
        return [dict(zip([c[0] for c in cur.description], row)) for row in cur.fetchall()]

    # -- listing ----------------------------------------------------------------------------------------------
    def features(self, backbone: str | None = None) -> list[dict]:
        """Every feature row with its video's first path, frame count and fps (``damage``: why it was found
        damaged, else None; rows are listed whatever their state)."""
        present = {r[1] for r in self._conn().execute("PRAGMA table_info(features)")}
        cols = ", ".join(f"f.{c}" if c in present else f"NULL AS {c}" for c in _FEATURE_COLUMNS if c != "created_at")
        sql = (f"SELECT {cols}, v.first_path, v.n_frames, v.fps FROM features f "
               "LEFT JOIN videos v ON v.key = f.video_key")
        args: tuple = ()
        if backbone:
            sql += " WHERE f.backbone = ?"
            args = (backbone,)
        cur = self._conn().execute(sql + " ORDER BY v.first_path, f.backbone", args)
        return [dict(zip([c[0] for c in cur.description], row)) for row in cur.fetchall()]

    def summary(self) -> dict:
        conn = self._conn()
        per_backbone = dict(conn.execute("SELECT backbone, COUNT(*) FROM features GROUP BY backbone").fetchall())
        damaged = (conn.execute("SELECT COUNT(*) FROM features WHERE damage IS NOT NULL").fetchone()[0]
                   if "NULL AS damage" not in self._columns else 0)
        return {
            "store": str(self.root),
            "videos": conn.execute("SELECT COUNT(*) FROM videos").fetchone()[0],
            "features": per_backbone,
            "damaged": damaged,
            "extractors": conn.execute("SELECT COUNT(*) FROM extractors").fetchone()[0],
            "failures": conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0],
            "readonly": self.readonly,
        }


# Every public method reports SQLite errors as named errors.
for _name, _method in list(vars(FeatureStore).items()):
    if callable(_method) and not _name.startswith("__"):
        setattr(FeatureStore, _name, _named_sql_errors(_method))
del _name, _method


def atomic_write_sidecar(dest: Path, obj: dict, *, tmp_dir: Path) -> Path:
    """A sidecar's JSON, written atomically through the store's tmp/ folder."""
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    return atomic_write(dest, lambda f: f.write(text.encode("utf-8")), tmp_dir=tmp_dir)


# -- --repair: rebuild the manifest from the store's files ---------------------------------------------------------
def _table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _insert(conn: sqlite3.Connection, table: str, row: dict, *, replace: bool = False) -> None:
    """Insert the columns of ``row`` that ``table`` has (a sidecar may carry more or fewer than this schema)."""
    cols = [c for c in _table_columns(conn, table) if c in row]
    conn.execute(f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO {table} ({', '.join(cols)}) VALUES "
                 f"({', '.join('?' * len(cols))})", [row[c] for c in cols])


def _move_manifest_aside(manifest: Path) -> list[Path]:
    """``manifest.sqlite`` and its -wal / -shm / -journal files -> ``<name>.damaged-<time>`` (a stale log must never
    be applied to the rebuilt database)."""
    stamp = time.strftime(REPAIR_STAMP)
    moved = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        src = Path(f"{manifest}{suffix}")
        if src.exists():
            dest = Path(f"{src}{DAMAGED_TAG}{stamp}")
            os.replace(src, dest)
            moved.append(dest)
    return moved


def _rebuild_feature(conn: sqlite3.Connection, root: Path, sidecar: Path) -> str | None:
    """Insert the rows one sidecar records if its feature file is sound (header, size and hash); else why not."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        feature = dict(meta["feature"])
        record = FeatureRecord(feature["key"], feature["video_key"], feature["backbone"], feature["fingerprint"],
                               root / feature["file"], *meta["shape"], feature["dtype"], feature["nbytes"],
                               feature["hash"], feature["created_at"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its sidecar {sidecar} cannot be read ({type(exc).__name__}: {exc})"
    if record.file != sidecar.with_suffix(".npy"):
        return f"its sidecar {sidecar} names another file ({record.file})"
    problem = record.problem()
    if problem is None and file_hash(record.file) != record.hash:
        problem = "its content hash is not the one recorded when it was written"
    if problem:
        return f"{record.file}: {problem}"
    with conn:
        if meta.get("extractor"):
            extractor = meta["extractor"]
            conn.execute("INSERT OR IGNORE INTO extractors VALUES (?, ?, ?)",
                         (record.fingerprint, extractor["backbone"], canonical_json(extractor["params"])))
        if meta.get("video"):
            _insert(conn, "videos", meta["video"])
        for name, source, seen_at in meta.get("names", []):
            conn.execute("INSERT OR IGNORE INTO names VALUES (?, ?, ?, ?)", (name, record.video_key, source, seen_at))
        _insert(conn, "features", {**feature, "n_snippets": record.n_snippets, "crops": record.crops,
                                   "dim": record.dim, "damage": None}, replace=True)
    return None


def _run_row(root: Path, folder: Path) -> dict | None:
    """A run's manifest row from its folder: its ``run.json``, else (runs recorded before run.json) its
    metrics.json, checkpoint.pt and config.json. A run without its finished files is ``interrupted``."""
    stage, key = folder.parent.name, folder.name
    finished = (folder / "metrics.json").is_file() and (stage == "evaluate" or (folder / "checkpoint.pt").is_file())
    row: dict = {}
    if (folder / RUN_SIDECAR).is_file():
        try:
            row = json.loads((folder / RUN_SIDECAR).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            row = {}
    if not row:
        metrics = _json_or_empty(folder / "metrics.json")
        config = _json_or_empty(folder / "config.json")
        if not metrics and not config:
            return None
        checkpoint: dict = {}
        if (folder / "checkpoint.pt").is_file():
            try:
                import torch

                checkpoint = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - a damaged checkpoint: the row is rebuilt from what else there is
                checkpoint = {}
        backbones = metrics.get("backbones") or checkpoint.get("backbones") or config.get("backbones") or []
        seed = metrics.get("seed", (config.get("train") or {}).get("seed", 0))
        summary = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}
        created = min((p.stat().st_mtime for p in folder.iterdir()), default=time.time())
        row = {"key": key, "stage": stage, "dataset": metrics.get("dataset") or checkpoint.get("dataset") or "unknown",
               "backbones": ",".join(backbones) if isinstance(backbones, list) else str(backbones),
               "seed": int(seed or 0), "status": "done", "summary": canonical_json(summary), "created_at": created,
               "finished_at": (folder / "metrics.json").stat().st_mtime if finished else None}
    row.update(key=key, stage=stage, folder=str(folder.relative_to(root)))
    if not finished:
        row["status"] = "interrupted" if row.get("status") in ("running", "done", None) else row["status"]
    elif row.get("status") == "running":
        row["status"] = "done"
    return row


def _json_or_empty(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def repair_store(root: str | Path) -> dict:
    """Rebuild a damaged (or missing) manifest from the store's files: move it aside, then re-index every feature
    whose sidecar and file agree (header, size, hash) and every run folder. A sound manifest is left alone. Run it
    while no other stage uses the store. Returns ``{"repaired", "why", "moved", "features", "runs",
    "not_indexed": [reason...], "manifest"}``."""
    root = Path(root)
    manifest = root / MANIFEST
    try:
        _check_location(root, create=False)
        store = FeatureStore(root, create=False)
        try:
            integrity = store._conn().execute("PRAGMA integrity_check(1)").fetchone()[0]
        finally:
            store.close()
        if integrity == "ok":
            return {"repaired": False, "why": "SQLite's integrity check finds it sound", "manifest": str(manifest)}
        why = f"SQLite's integrity_check: {integrity}"
    except ManifestDamaged as exc:
        why = str(exc).split(" is damaged (", 1)[-1].rsplit("); run python", 1)[0]
    if not writable(root):
        raise StoreReadOnly(root, "--repair rewrites its manifest")
    moved = _move_manifest_aside(manifest)
    store = FeatureStore(root, create=True, _rebuild=True)
    conn = store._conn()
    report = {"repaired": True, "why": why, "moved": [str(p) for p in moved], "features": 0, "runs": 0,
              "not_indexed": [], "manifest": str(manifest)}
    try:
        indexed = set()
        for sidecar in sorted((root / "features").glob(f"*/*/*{SIDECAR_SUFFIX}")):
            problem = _rebuild_feature(conn, root, sidecar)
            if problem:
                report["not_indexed"].append(problem)
            else:
                indexed.add(sidecar.with_suffix(".npy"))
                report["features"] += 1
        for npy in _stored_feature_files(root):
            if npy not in indexed and not npy.with_suffix(SIDECAR_SUFFIX).exists():
                report["not_indexed"].append(f"{npy}: no sidecar (written before sidecars existed)")
        for folder in sorted((root / "runs").glob("*/*")):
            if folder.is_dir() and (row := _run_row(root, folder)):
                with conn:
                    _insert(conn, "runs", row, replace=True)
                report["runs"] += 1
    except sqlite3.Error as exc:
        raise _sqlite_fault(exc, manifest) from None
    finally:
        store.close()
    return report


# -- command line -------------------------------------------------------------------------------------------------
_RUN_SUMMARY_KEYS = ("best_epoch", "val_video_auc", "auc", "ap")  # what `--runs` shows of each run's metrics


def _print_repair(report: dict, root: str) -> None:
    if not report["repaired"]:
        print(f"repair: {report['manifest']} needs no repair ({report['why']}); nothing changed")
        return
    moved = ", ".join(report["moved"]) or "nothing (it was missing)"
    print(f"repair: the manifest was damaged ({report['why']}); moved aside: {moved}. Rebuilt {report['manifest']} "
          f"from the store's files: {report['features']} features, {report['runs']} runs (the failure log and the "
          "memo of video paths start empty)")
    for reason in report["not_indexed"]:
        print(f"  NOT INDEXED {reason}", file=sys.stderr)
    if report["not_indexed"]:
        print(f"  {len(report['not_indexed'])} feature files could not be re-indexed: they count as missing; "
              f"python -m pipeline.extract ... --store {root} recomputes them", file=sys.stderr)


def _print_verify(report: dict, root: str) -> None:
    for d in report["damaged"]:
        print(f"  DAMAGED {d['backbone']:<13} {d['video']}  {d['file']}: {d['reason']}", file=sys.stderr)
    hashed = f"; {report['hashed']} hashes recorded for files written before hashes were" if report["hashed"] else ""
    orphans = (f"; {report['orphans']} feature files have no manifest row (a write interrupted before its row, or "
               "an older extraction: python -m pipeline.store --repair re-indexes them)") if report["orphans"] else ""
    print(f"verify: {report['checked']} feature files checked, {len(report['damaged'])} damaged{hashed}{orphans}")
    if report["damaged"]:
        print(f"  the damaged files count as missing from now on: {report['damaged'][0]['fix']}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from pipeline.parsers import stage_parser

    return stage_parser("store")


def run(args: argparse.Namespace) -> int:
    """The command: list, ``--verify`` or ``--repair`` the store given by ``--store`` (or positionally)."""
    from pipeline.cli import configure_logging, error

    configure_logging(args)
    if args.store_positional and args.store and args.store_positional != args.store and not _from_env(args):
        return error(f"two stores given: {args.store_positional} and --store {args.store}; pass one")
    args.store = args.store_positional or args.store
    if not args.store:
        return error("pass the store: --store DIR (or set $DAKD_STORE)")
    try:
        if args.repair:
            report = repair_store(args.store)
            print(json.dumps(report, indent=2)) if args.json else _print_repair(report, args.store)
            return 0
        store = open_store(args.store, create=False)
        try:
            if args.verify:
                report = store.verify(progress=not args.quiet and not args.json)
                print(json.dumps(report, indent=2)) if args.json else _print_verify(report, args.store)
                return 1 if report["damaged"] else 0
            return _list(store, args)
        finally:
            store.close()
    except UserError as exc:
        return error(exc)


def _from_env(args: argparse.Namespace) -> bool:
    """``--store`` came from ``$DAKD_STORE``, not the command line: the positional store then wins."""
    return args.store == os.environ.get("DAKD_STORE")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def _list(store: FeatureStore, args: argparse.Namespace) -> int:
    """The listing: features (each checked cheaply: damaged ones are flagged), runs or failures."""
    rows = store.failures() if args.failures else store.runs() if args.runs else store.features(args.backbone)
    damaged = 0
    if not (args.failures or args.runs):
        for r in rows:
            if r["damage"] is None and store.get_feature(r["key"]) is None:
                r["damage"] = store.feature_damage(r["key"]) or "damaged"
            damaged += r["damage"] is not None
    if args.json:
        print(json.dumps({"summary": store.summary(), "rows": rows}, indent=2))
        return 1 if damaged else 0
    s = store.summary()
    mode = " (read-only)" if s["readonly"] else ""
    print(f"{s['store']}{mode}: {s['videos']} videos, features {s['features'] or '{}'}, {s['failures']} failures "
          "logged")
    for r in rows:
        if args.runs:
            summary = json.loads(r["summary"])
            shown = " ".join(f"{k}={summary[k]:.4f}" if isinstance(summary[k], float) else f"{k}={summary[k]}"
                             for k in _RUN_SUMMARY_KEYS if summary.get(k) is not None)
            print(f"  {r['stage']:<9} {r['key'][:12]}  {r['status']:<8} seed {r['seed']:<3} {r['backbones']:<20} "
                  f"{shown}  ({r['dataset']})")
        elif args.failures:
            print(f"  [{r['stage']}] {r['path']}: {r['reason']}" + (f" ({r['fix']})" if r["fix"] else ""))
        else:
            flag = f"  DAMAGED ({r['damage']})" if r["damage"] else ""
            print(f"  {r['backbone']:<13} T={r['n_snippets']:<5} crops={r['crops']:<2} D={r['dim']:<5} "
                  f"{r['first_path']}  {r['file']}{flag}")
    if damaged:
        print(f"warning: {damaged} feature files are damaged: they count as missing and are never used; "
              f"python -m pipeline.extract ... --store {store.root} recomputes them", file=sys.stderr)
    return 1 if damaged else 0


if __name__ == "__main__":
    sys.exit(main())
