"""Reading the files a user or an earlier run hands over (backbone weights, run checkpoints, resume state)
so that a refused, damaged or foreign file is one line naming the file, why it cannot be used, and the fix.

Every torch file is read with ``weights_only=True`` (tensors and plain containers only: a pickle that names any
other Python object is refused, so no code from a file ever runs). torch's own errors for a bad file are long,
multi-line and say nothing about which of our files it was; :func:`load_torch_file` condenses them into a
:class:`BadFile`. It is a ``ValueError``, which every stage's ``main`` reports without a traceback (exit 2).

Both ``extractors/`` and ``pipeline/`` import this module; it imports neither ``models/`` nor ``pipeline/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

REASON_CHARS = 240  # a quoted library message is cut to this many characters: the line stays readable
KEYS_SHOWN = 3  # missing / unexpected / wrong-shape keys named in a state-dict mismatch, then "(+N more)"
# torch's weights-only refusal names the global it will not load ("GLOBAL posix.system", "Unsupported global:
# GLOBAL numpy..._reconstruct"); a file that is not a pickle at all fails on its first bytes ("Unsupported operand").
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_BAD_OPERAND = re.compile(r"Unsupported operand (\d+)")
_REFUSING = re.compile(r"refusing to load global ([\w.]+)")  # extractors.i3d_convert's numpy-only unpickler
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format is a zip archive


class BadFile(ValueError):
    """A file that exists (or should) but cannot be used. ``str()`` is ``"PATH: WHY; FIX"``, one line."""

    def __init__(self, path: str | os.PathLike, why: str, fix: str):
        self.path, self.why, self.fix = str(path), one_line(why, limit=None), fix
        super().__init__(f"{self.path}: {self.why}; {fix}")


def one_line(text: object, limit: int | None = REASON_CHARS) -> str:
    """``text`` on one line (whitespace runs collapsed, terminal escapes dropped), cut to ``limit`` characters
    (None: not cut)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    text = " ".join(text.split())
    return text if limit is None or len(text) <= limit else text[:limit - 3].rstrip() + "..."


def describe_load_error(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """Why torch (or a restricted unpickler) could not read a file, in a few words: the interesting part of the
    library's message. ``path`` lets a torch zip archive that fails to read back be called truncated."""
    message = str(exc)
    if isinstance(exc, EOFError):
        return "it ends early (truncated)"
    refused = _REFUSED_GLOBAL.search(message) or _REFUSING.search(message)
    if refused:
        return (f"it holds a Python object ({refused.group(1)}) that safe loading refuses (loading it could run "
                f"code); it is not a file of tensors as this project writes them")
    if "Weights only load failed" in message:
        operand = _BAD_OPERAND.search(message)
        detail = f" (unsupported pickle operand {operand.group(1)})" if operand else ""
        return f"it is not a torch tensor file{detail}: damaged, or another format"
    if "PytorchStreamReader" in message:
        return f"it is truncated or damaged ({one_line(message.split('. ')[0])})"
    if path is not None and _starts_with(path, ZIP_MAGIC):
        return f"it is truncated or damaged (a torch zip archive that does not read back: {one_line(message)})"
    if isinstance(exc, OSError):
        return f"it cannot be read ({exc.strerror or one_line(message)})"
    return f"{type(exc).__name__}: {one_line(message)}"


def _starts_with(path: str | os.PathLike, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


@contextlib.contextmanager
def quiet_pickle_warnings() -> Iterator[None]:
    """A context in which torch's warning about a foreign pickle protocol, printed just before it refuses the
    file, stays silent: the refusal itself is reported as a :class:`BadFile`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        yield


def load_torch_file(path: str | os.PathLike, what: str, fix: str, *, map_location="cpu") -> object:
    """``torch.load(path, weights_only=True)``, raising :class:`BadFile` ("PATH: WHY; FIX") for a missing,
    empty, truncated, refused or foreign file. ``what`` names the file's role in the reason ("the i3d weights",
    "this run's checkpoint"); ``fix`` says what to do ("delete it and run python -m pipeline.fetch")."""
    path = Path(path)
    if not path.is_file():
        raise BadFile(path, f"{what}: no such file", fix)
    if path.stat().st_size == 0:
        raise BadFile(path, f"{what}: the file is empty (0 bytes)", fix)
    try:
        with quiet_pickle_warnings():
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, OSError, ...
        raise BadFile(path, f"cannot read {what}: {describe_load_error(exc, path)}", fix) from None


def require_keys(obj: object, keys: tuple[str, ...], path: str | os.PathLike, what: str, fix: str) -> dict:
    """``obj`` as a dict holding every key of ``keys``, else :class:`BadFile` naming the missing ones."""
    if not isinstance(obj, dict):
        raise BadFile(path, f"{what} holds a {type(obj).__name__}, not the expected dict", fix)
    missing = [k for k in keys if k not in obj]
    if missing:
        raise BadFile(path, f"{what} lacks {', '.join(missing)} (not a file this version writes)", fix)
    return obj


def state_dict_problems(expected: Mapping[str, torch.Tensor], state: object) -> str | None:
    """None when ``state`` (a str -> tensor mapping) fits ``expected`` key for key and shape for shape, else a
    short description: missing, unexpected and wrong-shape keys, a few of each."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"it holds a {type(state).__name__}, not a state dict of tensors"

    def head(items: list[str]) -> str:
        return ", ".join(items[:KEYS_SHOWN]) + (f" (+{len(items) - KEYS_SHOWN} more)" if len(items) > KEYS_SHOWN
                                                else "")

    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                   if k in state and state[k].shape != v.shape)
    problems = [f"{label} {len(items)}: {head(items)}" for label, items in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
    return "; ".join(problems) or None


def load_module_state(module: nn.Module, state: object, path: str | os.PathLike, what: str, fix: str) -> None:
    """``module.load_state_dict(state, strict=True)``, with a mismatch as :class:`BadFile` (a few keys named)."""
    problems = state_dict_problems(module.state_dict(), state)
    if problems:
        raise BadFile(path, f"{what}: not the tensors the network expects ({problems})", fix)
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:  # e.g. a tensor of another dtype that cannot be copied
        raise BadFile(path, f"{what}: not the tensors the network expects ({one_line(exc)})", fix) from None
