"""``--repair``: rebuild a damaged or missing manifest from the store's files (the feature sidecars and the run
folders), after moving the damaged one aside. (``--verify``, which hashes every file against its row, is
:meth:`FeatureStore.verify <pipeline.store.manifest.FeatureStore.verify>`.)"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from pipeline.keys import canonical_json
from pipeline.store.errors import ManifestDamaged, StoreReadOnly, _sqlite_fault
from pipeline.store.feature_files import SIDECAR_SUFFIX, file_hash
from pipeline.store.layout import MANIFEST, RUN_CHECKPOINT, RUN_SIDECAR, _stored_feature_files, writable
from pipeline.store.manifest import FeatureRecord, FeatureStore, check_location, parse_grid_text

DAMAGED_TAG = ".damaged-"  # a damaged manifest moved aside by --repair: manifest.sqlite.damaged-<time>
REPAIR_STAMP = "%Y%m%d-%H%M%S"


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
                               feature["hash"], feature["created_at"], parse_grid_text(feature.get("grid")))
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
    finished = (folder / "metrics.json").is_file() and (stage == "evaluate" or (folder / RUN_CHECKPOINT).is_file())
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
        if (folder / RUN_CHECKPOINT).is_file():
            try:
                import torch

                checkpoint = torch.load(folder / RUN_CHECKPOINT, map_location="cpu", weights_only=True)
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
        check_location(root, create=False)
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
