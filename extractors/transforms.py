"""Resize, multi-crop and normalisation on batched float frames, on whatever device the frames live on.

On a GPU these run there (10-crop on the CPU costs more than the I3D forward pass on a GPU, method.md §1).
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

CROP_COUNTS = (1, 5, 10)
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


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` along dim -3 (channels), any leading dims."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s
