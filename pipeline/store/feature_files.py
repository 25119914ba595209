"""One feature file's bytes: its content hash (computed while it is written), the cheap check of its ``.npy``
header and size, the count of non-finite values, and its JSON sidecar (what --repair rebuilds the manifest from)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_write

HASH_NAME = "blake2b"  # the content hash recorded per feature file (hashlib; fast, in the standard library)
HASH_DIGEST_BYTES = 16  # 128 bits: collisions are not a concern for detecting damage
HASH_CHUNK_BYTES = 1 << 20  # bytes read at a time when hashing a file
FINITE_CHECK_BYTES = 16 << 20  # bytes of a memory-mapped feature checked for non-finite values at a time
SIDECAR_SUFFIX = ".json"  # beside each feature file: what the manifest records of it
SIDECAR_FORMAT = 1
HEADER_PARSE_TRIES = 3  # parses of one .npy header before a spurious SystemError (below) is reported as a problem

# numpy parses every .npy header with ast.literal_eval, and CPython 3.11's AST constructor keeps one recursion counter
# per interpreter: two threads parsing at once (extract's decode workers each check their cached features) can raise
# a spurious "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905), which once marked a
# sound feature damaged. The store's header parses take turns, and a SystemError is retried, never called damage.
_HEADER_LOCK = threading.Lock()


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


def _under_header_lock(parse):
    """``parse()`` (which reads a ``.npy`` header) under the header lock, retried on a spurious SystemError."""
    for attempt in range(1, HEADER_PARSE_TRIES + 1):
        try:
            with _HEADER_LOCK:
                return parse()
        except SystemError:
            if attempt == HEADER_PARSE_TRIES:
                raise


def _read_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data_start)`` from the header of the ``.npy`` at ``path``."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return (*read(f), f.tell())


def load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    """``np.load`` of a plain ``.npy`` (no pickles; memory-mapped read-only when ``mmap``), its header parsed under
    the header lock."""
    return _under_header_lock(lambda: np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False))


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
        header_shape, fortran, header_dtype, data_start = _under_header_lock(lambda: _read_header(path))
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


def atomic_write_sidecar(dest: Path, obj: dict, *, tmp_dir: Path) -> Path:
    """A sidecar's JSON, written atomically through the store's tmp/ folder."""
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    return atomic_write(dest, lambda f: f.write(text.encode("utf-8")), tmp_dir=tmp_dir)
