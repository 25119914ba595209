"""Resize, multi-crop and normalisation on batched float frames, on whatever device the frames live on.

On a GPU these run there (10-crop on the CPU costs more than the I3D forward pass on a GPU, method.md §1).
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from extractors.views import CROP_COUNTS, DEFAULT_VIEW, VIEWS  # noqa: F401 (VIEWS: callers read it here)

# How a frame becomes the backbone's view (``Preprocessing.view``):
#   crop    resize (the backbone's own rule), then the centre crop or 5 / 10 crops: the published pipelines'. On a
#           non-square frame a single centre crop drops the sides (a third of a 3:2 UCSD frame).
#   full    the whole frame, aspect kept, short side = the crop size (238 x 158 -> 337 x 224): for fully
#           convolutional backbones whose features are a global average (I3D, S3D, EfficientNet).
#   squash  the whole frame resized to crop x crop, aspect changed: for backbones that need a fixed square input
#           (CLIP's ViT, the lightning student's frames).
# VIEWS and DEFAULT_VIEW: their one home is extractors.views (no torch), so the command line lists them at once.
# torchvision's FiveCrop / TenCrop order: four corners, centre; for 10 the same five of the mirrored frames.
_FIVE = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def crop_order(crops: int) -> list[str]:
    """Names of the crops in the order they are stored along the ``crops`` axis."""
    if crops == 1:
        return ["center"]
    if crops == 5:
        return list(_FIVE)
    if crops == 10:
        return list(_FIVE) + [f"flip_{name}" for name in _FIVE]
    raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")


def at_size(frames: torch.Tensor, mode: str, size: int) -> bool:
    """Whether ``[..., H, W]`` frames already have the size :func:`resize` would give."""
    h, w = frames.shape[-2:]
    return min(h, w) == size if mode == "short_side" else (h, w) == (size, size)


def resize(frames: torch.Tensor, mode: str, size: int, interpolation: str, antialias: bool) -> torch.Tensor:
    """float ``[M, 3, H, W]`` -> ``[M, 3, H', W']``: ``short_side`` keeps aspect (short side = size),
    ``square`` gives size x size."""
    if interpolation not in _INTERPOLATION:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}, got {interpolation!r}")
    if at_size(frames, mode, size):
        return frames  # already there (e.g. resized while decoding): resizing again would only blur
    if mode == "short_side":
        target: int | list[int] = size
    elif mode == "square":
        target = [size, size]
    else:
        raise ValueError(f"resize mode must be 'short_side' or 'square', got {mode!r}")
    out = TF.resize(frames, target, interpolation=_INTERPOLATION[interpolation], antialias=antialias)
    # Bicubic overshoots outside [0, 1]; clamping matches what PIL-based pipelines (open_clip's) produce.
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out


def multi_crop(frames: torch.Tensor, crops: int, size: int) -> torch.Tensor:
    """float ``[M, 3, H, W]`` -> ``[crops, M, 3, size, size]`` in :func:`crop_order` order."""
    h, w = frames.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}x{size} crop")
    if crops == 1:
        return TF.center_crop(frames, [size, size]).unsqueeze(0)
    five = TF.five_crop(frames, [size, size])
    if crops == 5:
        return torch.stack(five)
    if crops == 10:
        return torch.stack(list(five) + [TF.hflip(c) for c in five])
    raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")


def view_frames(frames: torch.Tensor, view: str, size: int, interpolation: str, antialias: bool) -> torch.Tensor:
    """float ``[M, 3, H, W]`` -> one whole-frame view ``[1, M, 3, H', W']`` (``full``: short side ``size``,
    aspect kept; ``squash``: ``size x size``), the layout :func:`multi_crop` returns for one crop."""
    if view == "full":
        return resize(frames, "short_side", size, interpolation, antialias).unsqueeze(0)
    if view == "squash":
        return resize(frames, "square", size, interpolation, antialias).unsqueeze(0)
    raise ValueError(f"view must be one of {', '.join(VIEWS)} (crop views are made by multi_crop), got {view!r}")


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` along dim -3 (channels), any leading dims; ``x`` itself for mean 0 and
    std 1 (the motion backbone's pixels in [0, 1]: two passes over the frames spared, the same values)."""
    if all(v == 0 for v in mean) and all(v == 1 for v in std):
        return x
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s
