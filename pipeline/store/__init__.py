"""The feature store: content-addressed ``.npy`` files plus a SQLite manifest.

Layout (design.md)::

    <store>/features/<backbone>/<key[:2]>/<key>.npy   float [T, crops, D] (lowres: uint8; a grid: [T, cells, D])
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

The package, one concern per module (imports go one way, top to bottom; this file only re-exports):

- :mod:`~pipeline.store.layout`: the names of the store's files and folders; cheap checks of a folder.
- :mod:`~pipeline.store.errors`: the named errors, and SQLite errors mapped onto them.
- :mod:`~pipeline.store.feature_files`: one feature file's bytes: content hash, header check, finite values, sidecar.
- :mod:`~pipeline.store.manifest`: :class:`FeatureStore` (the SQLite manifest, its schema and migration, read-only
  opening, ``--verify``), :class:`FeatureRecord` and :func:`open_store`.
- :mod:`~pipeline.store.repair`: ``--repair``, the manifest rebuilt from the sidecars and run folders.
The command (listing, ``--verify``, ``--repair``) is :mod:`pipeline.cli.store`; ``__main__`` runs it.
"""

from pipeline.store.errors import DamagedFeature, ManifestDamaged, NonFiniteFeature, StoreError, StoreReadOnly
from pipeline.store.feature_files import (FINITE_CHECK_BYTES, HASH_NAME, SIDECAR_FORMAT, SIDECAR_SUFFIX,
                                          atomic_write_sidecar, check_npy, count_nonfinite, file_hash)
from pipeline.store.layout import (MANIFEST, RUN_LOCK, RUN_SIDECAR, SQLITE_BUSY_TIMEOUT_S, is_store, manifest_problem,
                                   writable)
from pipeline.store.manifest import (FEATURE_FAILURE_STAGE, SCHEMA_VERSION, FeatureRecord, FeatureStore,
                                     check_location, open_store, recompute_fix)
from pipeline.store.repair import DAMAGED_TAG, repair_store

__all__ = [
    "DAMAGED_TAG", "FEATURE_FAILURE_STAGE", "FINITE_CHECK_BYTES", "HASH_NAME", "MANIFEST", "RUN_LOCK", "RUN_SIDECAR",
    "SCHEMA_VERSION", "SIDECAR_FORMAT", "SIDECAR_SUFFIX", "SQLITE_BUSY_TIMEOUT_S", "DamagedFeature", "FeatureRecord",
    "FeatureStore", "ManifestDamaged", "NonFiniteFeature", "StoreError", "StoreReadOnly", "atomic_write_sidecar",
    "check_location", "check_npy", "count_nonfinite", "file_hash", "is_store", "manifest_problem", "open_store",
    "recompute_fix", "repair_store", "writable",
]
