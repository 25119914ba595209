"""The feature store: content-addressed ``.npy`` files plus a SQLite manifest.

Layout (design.md)::

    <store>/features/<backbone>/<key[:2]>/<key>.npy   float [T, crops, D]
    <store>/manifest.sqlite                            tables: paths, names, videos, extractors, features,
                                                       failures, runs
    <store>/locks/<key>.lock                           one OS file lock per feature being computed
    <store>/tmp/                                       temp files of writes in progress

Every write is atomic (temp file, fsync, rename) and a feature's row is inserted only after its file is in
place, so a killed process leaves no half file and the next run resumes. Two processes on one store coordinate
through SQLite transactions (WAL, busy timeout) and per-feature OS file locks, which the kernel releases when a
process dies, so a ``kill -9`` never leaves a stale lock behind.

``python -m pipeline.store DIR`` lists what a store holds.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import filelock
import numpy as np

from data.decode import VideoInfo, frame_folder_files
from data.discover import video_name
from pipeline.atomic import atomic_write, host_name, temp_owner
from pipeline.keys import canonical_json, hash_video

MANIFEST = "manifest.sqlite"  # the SQLite manifest in the store root; its presence makes a folder a store
SQLITE_BUSY_TIMEOUT_S = 60.0
SCHEMA_VERSION = 1

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
    dtype TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS features_by_video ON features (video_key);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY, stage TEXT NOT NULL, dataset TEXT NOT NULL, backbones TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, folder TEXT NOT NULL, summary TEXT NOT NULL,
    created_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, stage TEXT NOT NULL, reason TEXT NOT NULL,
    fix TEXT NOT NULL, created_at REAL NOT NULL);
"""


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


def is_store(path: str | Path) -> bool:
    """Whether ``path`` holds a store (its manifest), so a CLI that reads one can say so instead of creating it."""
    return (Path(path) / MANIFEST).is_file()


class FeatureStore:
    """A store rooted at a folder. Safe to use from several threads (one SQLite connection per thread) and
    several processes."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        for sub in ("features", "locks", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._remove_orphan_temp_files()

    # -- connection -------------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.root / MANIFEST, timeout=SQLITE_BUSY_TIMEOUT_S)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- videos -----------------------------------------------------------------------------------------------
    def video_key(self, path: Path) -> str:
        """Content key of a video, hashing its bytes only when the path's size or mtime changed."""
        absolute = str(path.resolve())
        sig = _signature(path)
        conn = self._conn()
        row = conn.execute("SELECT signature, video_key FROM paths WHERE path = ?", (absolute,)).fetchone()
        if row and row[0] == sig:
            return row[1]
        key = hash_video(path)
        with conn:
            conn.execute("INSERT OR REPLACE INTO paths VALUES (?, ?, ?, ?)", (absolute, sig, key, time.time()))
        self.record_name(video_name(path), key, source=absolute)
        return key

    # -- names: how datasets find their videos' features -------------------------------------------------------
    def record_name(self, name: str, video_key: str, *, source: str) -> None:
        """Remember that the video called ``name`` (a dataset list's name, no extension) has ``video_key``.
        ``source`` says where the name came from (a video path, or an imported feature list)."""
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO names VALUES (?, ?, ?, ?)", (name, video_key, source, time.time()))

    def video_keys_for(self, name: str) -> list[str]:
        """Video keys recorded under ``name``, most recently seen first."""
        rows = self._conn().execute("SELECT video_key FROM names WHERE name = ? ORDER BY seen_at DESC",
                                    (name,)).fetchall()
        return [r[0] for r in rows]

    def features_of_video(self, video_key: str, backbone: str) -> list[FeatureRecord]:
        """Every stored feature of one video for one backbone (several when extracted with other settings)."""
        rows = self._conn().execute(
            "SELECT key FROM features WHERE video_key = ? AND backbone = ? ORDER BY created_at DESC",
            (video_key, backbone)).fetchall()
        return [rec for (key,) in rows if (rec := self.get_feature(key)) is not None]

    def record_video(self, key: str, info: VideoInfo) -> None:
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, info.n_frames or 0, info.declared_frames, info.fps, info.width, info.height,
                          info.codec, info.backend, info.path))

    def video(self, key: str) -> dict | None:
        cur = self._conn().execute("SELECT * FROM videos WHERE key = ?", (key,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    # -- extractors and features ------------------------------------------------------------------------------
    def register_extractor(self, fingerprint: str, backbone: str, params: dict) -> None:
        with self._conn() as conn:
            conn.execute("INSERT OR IGNORE INTO extractors VALUES (?, ?, ?)",
                         (fingerprint, backbone, canonical_json(params)))

    def extractor_params(self, fingerprint: str) -> dict:
        """The parameters an extractor fingerprint was made from ({} if unknown)."""
        row = self._conn().execute("SELECT params FROM extractors WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return json.loads(row[0]) if row else {}

    def feature_file(self, backbone: str, key: str) -> Path:
        return self.root / "features" / backbone / key[:2] / f"{key}.npy"

    def get_feature(self, key: str) -> FeatureRecord | None:
        """The feature's record if both its row and its file exist."""
        row = self._conn().execute(
            "SELECT key, video_key, backbone, fingerprint, file, n_snippets, crops, dim, dtype FROM features "
            "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        record = FeatureRecord(*row[:4], self.root / row[4], *row[5:])
        return record if record.file.is_file() else None

    def load_feature(self, key: str) -> np.ndarray:
        record = self.get_feature(key)
        if record is None:
            raise KeyError(f"feature {key} is not in the store {self.root}")
        return np.load(record.file)

    def put_feature(self, key: str, video_key: str, backbone: str, fingerprint: str, array: np.ndarray) -> Path:
        """Atomically write ``array`` ``[T, crops, D]`` and then record it."""
        if array.ndim != 3:
            raise ValueError(f"features must be [T, crops, D], got shape {array.shape}")
        dest = self.feature_file(backbone, key)
        self._atomic_save(dest, array)
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, video_key, backbone, fingerprint, str(dest.relative_to(self.root)), array.shape[0],
                          array.shape[1], array.shape[2], str(array.dtype), time.time()))
        return dest

    def _atomic_save(self, dest: Path, array: np.ndarray) -> None:
        atomic_write(dest, lambda f: np.save(f, array), tmp_dir=self.root / "tmp")

    def _remove_orphan_temp_files(self) -> None:
        """Temp files of processes on this machine that died mid-write (their name carries the writer's pid and
        host). Another machine's temp files are left alone: its pids cannot be checked from here."""
        here = host_name()
        for tmp in (self.root / "tmp").glob("*.tmp"):
            owner = temp_owner(tmp.name)
            if owner and owner[1] in (None, here) and not _pid_alive(owner[0]):
                tmp.unlink(missing_ok=True)

    def lock(self, key: str) -> filelock.BaseFileLock:
        """The OS lock that one process holds while computing feature ``key`` (acquire with timeout=0 to try)."""
        return filelock.FileLock(self.root / "locks" / f"{key}.lock", thread_local=False)

    # -- runs (training and evaluation stages) -------------------------------------------------------------------
    def run_folder(self, stage: str, key: str) -> Path:
        return self.root / "runs" / stage / key

    def record_run(self, key: str, stage: str, *, dataset: str, backbones: str, seed: int, status: str,
                   summary: dict | None = None) -> None:
        """Insert or update a run's row; ``status`` is ``running`` or ``done``."""
        now = time.time()
        folder = str(self.run_folder(stage, key).relative_to(self.root))
        with self._conn() as conn:
            conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                         "status = excluded.status, summary = excluded.summary, finished_at = excluded.finished_at",
                         (key, stage, dataset, backbones, seed, status, folder, canonical_json(summary or {}), now,
                          now if status == "done" else None))

    def runs(self, stage: str | None = None) -> list[dict]:
        sql = "SELECT * FROM runs" + (" WHERE stage = ?" if stage else "") + " ORDER BY created_at"
        cur = self._conn().execute(sql, (stage,) if stage else ())
        return [dict(zip([c[0] for c in cur.description], row)) for row in cur.fetchall()]

    # -- failures ---------------------------------------------------------------------------------------------
    def record_failure(self, path: str, stage: str, reason: str, fix: str = "") -> None:
        with self._conn() as conn:
            conn.execute("INSERT INTO failures (path, stage, reason, fix, created_at) VALUES (?, ?, ?, ?, ?)",
                         (str(path), stage, reason, fix, time.time()))

    def failures(self) -> list[dict]:
        cur = self._conn().execute("SELECT path, stage, reason, fix, created_at FROM failures ORDER BY id")
        return [dict(zip([c[0] for c in cur.description], row)) for row in cur.fetchall()]

    # -- listing ----------------------------------------------------------------------------------------------
    def features(self, backbone: str | None = None) -> list[dict]:
        """Every feature with its video's first path, frame count and fps."""
        sql = ("SELECT f.key, f.backbone, f.n_snippets, f.crops, f.dim, f.dtype, f.file, f.video_key, "
               "v.first_path, v.n_frames, v.fps FROM features f LEFT JOIN videos v ON v.key = f.video_key")
        args: tuple = ()
        if backbone:
            sql += " WHERE f.backbone = ?"
            args = (backbone,)
        cur = self._conn().execute(sql + " ORDER BY v.first_path, f.backbone", args)
        return [dict(zip([c[0] for c in cur.description], row)) for row in cur.fetchall()]

    def summary(self) -> dict:
        conn = self._conn()
        per_backbone = dict(conn.execute("SELECT backbone, COUNT(*) FROM features GROUP BY backbone").fetchall())
        return {
            "store": str(self.root),
            "videos": conn.execute("SELECT COUNT(*) FROM videos").fetchone()[0],
            "features": per_backbone,
            "extractors": conn.execute("SELECT COUNT(*) FROM extractors").fetchone()[0],
            "failures": conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0],
        }


_RUN_SUMMARY_KEYS = ("best_epoch", "val_video_auc", "auc", "ap")  # what `--runs` shows of each run's metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.store", description="List what a store holds.")
    parser.add_argument("store", help="the store folder (as given to --store)")
    parser.add_argument("--backbone", help="only this backbone's features")
    parser.add_argument("--failures", action="store_true", help="list recorded failures instead of features")
    parser.add_argument("--runs", action="store_true", help="list training and evaluation runs instead of features")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if not is_store(args.store):
        print(f"error: {args.store} is not a feature store (no {MANIFEST}); create one with "
              "python -m pipeline.extract ... --store DIR", file=sys.stderr)
        return 2
    store = FeatureStore(args.store)
    rows = store.failures() if args.failures else store.runs() if args.runs else store.features(args.backbone)
    if args.json:
        print(json.dumps({"summary": store.summary(), "rows": rows}, indent=2))
        return 0
    s = store.summary()
    print(f"{s['store']}: {s['videos']} videos, features {s['features'] or '{}'}, {s['failures']} failures logged")
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
            print(f"  {r['backbone']:<13} T={r['n_snippets']:<5} crops={r['crops']:<2} D={r['dim']:<5} "
                  f"{r['first_path']}  {r['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
