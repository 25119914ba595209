"""The :class:`FeatureStore`: the SQLite manifest (schema, migration of older schemas, read-only opening) and the
feature files it indexes (:class:`FeatureRecord`); :func:`open_store` is how every stage opens a store.

Long: one class whose methods share one SQLite connection, its transactions and its error mapping; split, the
schema and the rules that keep rows and files in step would live in several places."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
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
from pipeline.keys import canonical_json, hash_video
from pipeline.store.errors import (DamagedFeature, ManifestDamaged, NonFiniteFeature, StoreError, StoreReadOnly,
                                   _named_sql_errors, _sqlite_fault)
from pipeline.store.feature_files import (HASH_NAME, SIDECAR_FORMAT, SIDECAR_SUFFIX, _HashingWriter,
                                          atomic_write_sidecar, check_npy, count_nonfinite, file_hash,
                                          load_npy)
from pipeline.store.layout import (LOCKS, MANIFEST, RUN_LOCK, RUN_SIDECAR, SQLITE_BUSY_TIMEOUT_S, _stored_feature_files,
                                   manifest_problem, writable)

# 2: features carry nbytes, hash, damage; 3: and the grid of a grid extraction. Older stores are migrated on open,
# when writable.
SCHEMA_VERSION = 3
FEATURE_FAILURE_STAGE = "store"  # the failures' stage of damaged feature files

log = logging.getLogger("pipeline.store")  # one logger for the whole store (tests and users filter on it)

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
    dtype TEXT NOT NULL, created_at REAL NOT NULL, nbytes INTEGER, hash TEXT, damage TEXT, grid TEXT);
CREATE INDEX IF NOT EXISTS features_by_video ON features (video_key);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY, stage TEXT NOT NULL, dataset TEXT NOT NULL, backbones TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, folder TEXT NOT NULL, summary TEXT NOT NULL,
    created_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, stage TEXT NOT NULL, reason TEXT NOT NULL,
    fix TEXT NOT NULL, created_at REAL NOT NULL);
"""
# Columns schemas 2 and 3 added to the features table (older stores get them by ALTER TABLE, NULL in old rows).
_ADDED_FEATURE_COLUMNS = (("nbytes", "INTEGER"), ("hash", "TEXT"), ("damage", "TEXT"), ("grid", "TEXT"))
_FEATURE_COLUMNS = ("key", "video_key", "backbone", "fingerprint", "file", "n_snippets", "crops", "dim", "dtype",
                    "created_at", "nbytes", "hash", "damage", "grid")


def grid_text(grid: tuple[int, int] | None) -> str | None:
    """``(7, 11)`` -> ``"7x11"``, the grid column's and the sidecar's form; None (a global feature) stays None."""
    return None if grid is None else f"{int(grid[0])}x{int(grid[1])}"


def parse_grid_text(text: str | None) -> tuple[int, int] | None:
    """The inverse of :func:`grid_text`."""
    if not text:
        return None
    rows, cols = text.split("x")
    return int(rows), int(cols)


@dataclass(frozen=True)
class FeatureRecord:
    key: str
    video_key: str
    backbone: str
    fingerprint: str
    file: Path
    n_snippets: int
    crops: int  # axis 1 of the array: the crops, or the cells of a grid feature (rows x cols, row-major)
    dim: int
    dtype: str
    nbytes: int | None = None  # recorded at write (schema 2; None in older rows)
    hash: str | None = None  # blake2b:<hex> of the file's bytes (schema 2; old rows: recorded by --verify)
    created_at: float = 0.0
    grid: tuple[int, int] | None = None  # (rows, cols) of a grid feature (schema 3); None: a global feature
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
                array = load_npy(self.file, mmap=mmap)
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
        return f"import it again (dakd import LIST --backbone {record.backbone}{where}){again}"
    return (f"extract it again (dakd extract VIDEOS --backbones {record.backbone}{where} recomputes "
            f"what is damaged or missing){again}")


# -- locks, video signatures and the store's location ------------------------------------------------------------
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


def check_location(root: Path, create: bool, *, rebuild: bool = False) -> None:
    """Name a ``--store`` that is a file, or (``create`` False) one that does not exist or holds no manifest; a
    missing manifest beside feature files is damage (unless ``rebuild``: --repair making the new one)."""
    if root.is_file() or (root.exists() and not root.is_dir()):
        hint = f" (that is a store's manifest: pass its folder {root.parent})" if root.name == MANIFEST else ""
        raise StoreError(f"`store` {root} is a file, not a store folder{hint}; pass the folder given to "
                         "dakd extract --store")
    if not root.exists():
        for parent in root.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise StoreError(f"`store` {root}: {parent} is a file, not a folder; choose another store path")
                break
        if not create:
            raise StoreError(f"no store at {root}; create one with dakd extract VIDEOS --store {root}")
        return
    if not (root / MANIFEST).exists():
        stored = _stored_feature_files(root, limit=1)
        if stored and not rebuild:
            raise ManifestDamaged(root / MANIFEST, f"it is missing, while {root / 'features'} holds feature files")
        if not create:
            raise StoreError(f"{root} is not a feature store (no {MANIFEST} in it); create one with "
                             f"dakd extract VIDEOS --store {root}")


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
        fault = _sqlite_fault(exc, store.manifest)  # a full disk is not a damaged manifest
        raise (fault if isinstance(fault, NoSpaceError) else ManifestDamaged(store.manifest, str(exc))) from None
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
    """Schema 1 -> 2: the integrity columns (NULL in the old rows: --verify records their hashes); 2 -> 3: the grid
    column (NULL: every older feature is a global one). One transaction,
    the columns re-read inside it, so that two processes opening an old store at once migrate it once. Tables the
    store lacks are created first (CREATE IF NOT EXISTS)."""
    conn.executescript(_SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(features)")}
        for name, decl in _ADDED_FEATURE_COLUMNS:
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
        check_location(self.root, create, rebuild=_rebuild)
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
            for sub in ("features", LOCKS, "tmp"):
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
                raise NoSpaceError(self.manifest, store=self.root) from exc
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
                             values["dtype"], values["nbytes"], values["hash"], values["created_at"],
                             parse_grid_text(values["grid"]), store=self)

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

    def put_feature(self, key: str, video_key: str, backbone: str, fingerprint: str, array: np.ndarray, *,
                    grid: tuple[int, int] | None = None) -> Path:
        """Atomically write ``array`` ``[T, crops, D]`` (a grid feature: ``[T, rows * cols, D]``, the cells
        row-major, with ``grid = (rows, cols)``), its sidecar, and then its row (shape, dtype, size, hash, grid).
        Raises NonFiniteFeature for an array holding NaN or inf, which is never stored."""
        if array.ndim != 3:
            raise ValueError(f"features must be [T, crops, D], got shape {array.shape}")
        if grid is not None and grid[0] * grid[1] != array.shape[1]:
            raise ValueError(f"a {grid[0]}x{grid[1]} grid has {grid[0] * grid[1]} cells, not {array.shape[1]}")
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
               array.shape[1], array.shape[2], str(array.dtype), created, nbytes, digest, None, grid_text(grid))
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
        return filelock.FileLock(self.root / LOCKS / f"{key}.lock", thread_local=False)

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
                    bad = count_nonfinite(load_npy(record.file, mmap=True))
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
            if row["status"] == "running" and not _lock_held(self.root / LOCKS / RUN_LOCK.format(key=row["key"])):
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
