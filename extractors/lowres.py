"""``lowres``: a pseudo-backbone that caches each snippet's low-resolution grey frames instead of features.

The lightning student of method.md §9 learns from the frames themselves (64 x 64 grey) rather than from a large
backbone's embedding, so its input has to come out of the same extract stage, decoded once and content-keyed in
the same feature store. There is no network and there are no weights: the "model" is the identity and the
"feature" of a snippet is ``F`` of its frames brought to ``S x S`` by the extraction's view (the default
``squash``: the whole frame resized to ``S x S``; ``crop``: short side ``S``, then the centre ``S x S``), turned
grey with the ITU-R BT.601 luma weights and flattened (frame-major, then rows, then columns) into
``[1, F * S * S]``, so it fits the store's ``[T, crops, D]`` layout. The values are whole grey levels 0..255 and
are stored as uint8 (``storage_dtype``), a quarter of float32's size, whatever ``--dtype`` says.

The extract stage decodes each backbone at its own size (pipeline.extract's decoding plan), so ``lowres``
frames arrive already at ``S x S`` (squash) or short side ``S`` (crop) whatever it is extracted beside, and this
module only crops and weights; frames that arrive larger (a caller that decodes without resizing) are resized here
with torch's antialiased bilinear filter.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from extractors import transforms
from extractors.base import Backbone, Preprocessing

NAME = "lowres"
LOWRES_SIZE = 64  # S: side of the square grey frames (method.md §9: "e.g. 64 x 64 grey")
LOWRES_FRAME_INDICES = (0, 2, 4, 6, 8, 10, 12, 14)  # every other frame: 8 of the snippet's 16
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma: Y = 0.299 R + 0.587 G + 0.114 B
NO_WEIGHTS = "none"  # the weights id in the fingerprint, and the only --weights value accepted
GREY_LEVELS = 255  # grey is rounded and clamped to 0..GREY_LEVELS, so it fits uint8 exactly
STORAGE_DTYPE = "uint8"

# The luma weights as integers over a common scale: for integer pixels, 299 R + 587 G + 114 B is an exact integer
# (at most 255,000, well inside float32's 24-bit mantissa) and one IEEE division by 1000 is correctly rounded, so
# a grey level exactly halfway between two integers stays exactly halfway and rounds the same way (half to even)
# on every device. Multiplying by 0.299 etc. in float32 would land ties a hair above or below .5 instead.
_GREY_SCALE = 1000
_GREY_INTEGER_WEIGHTS = tuple(round(w * _GREY_SCALE) for w in GREY_WEIGHTS)  # (299, 587, 114)


def preprocessing_for(size: int = LOWRES_SIZE) -> Preprocessing:
    """Short side ``size`` (antialiased bilinear, also what decoding resizes to) and a ``size`` centre crop.

    mean 0 / std 1: no normalisation; it is recorded only because every field enters the fingerprint.
    """
    return Preprocessing(resize="short_side", resize_size=size, interpolation="bilinear", crop_size=size,
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


PREPROCESSING = preprocessing_for(LOWRES_SIZE)


class LowResFrames(Backbone):
    """Grey ``S x S`` centre crops of ``F`` frames per snippet, flattened: ``dim = F * S * S`` (8 * 64 * 64)."""

    name = NAME
    dim = len(LOWRES_FRAME_INDICES) * LOWRES_SIZE * LOWRES_SIZE
    kind = "frames"  # neither "video" nor "image": the frames are the output, no model sees them
    version = 1
    storage_dtype = STORAGE_DTYPE  # read by pipeline.extract: stored as uint8 whatever --dtype says
    decode_bound = True  # read by pipeline.extract: no network, so it decodes several videos at once

    def __init__(self, size: int = LOWRES_SIZE, frame_indices: tuple[int, ...] = LOWRES_FRAME_INDICES, *,
                 crops: int = 1, device: torch.device | str = "cpu"):
        if crops != 1:
            raise ValueError(f"lowres takes the centre crop only (crops=1), got crops={crops}: run lowres in "
                             "its own extract call without --crops")
        if size < 1:
            raise ValueError(f"lowres size must be a positive number of pixels, got {size}")
        super().__init__(nn.Identity(), preprocessing_for(size), crops=1, frame_indices=frame_indices,
                         weights_id=NO_WEIGHTS, device=device, amp=False)
        self.size = size
        self.dim = len(self.frame_indices) * size * size

    def fingerprint_params(self) -> dict:
        """The base fingerprint plus the grey weights, which decide the stored values too."""
        return {**super().fingerprint_params(), "grey_weights": list(GREY_WEIGHTS)}

    def preprocess(self, snippets: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 16, H, W, 3]`` RGB -> grey float32 ``[N, F, S, S]`` holding whole levels 0..255, on the
        backbone's device.

        Steps: the ``frame_indices`` frames; resize to short side S (antialiased bilinear) only when they are not
        already that size (the extract stage usually resized them while decoding: resizing again would blur);
        centre crop S x S (the ``squash`` view instead resizes the whole frame to S x S); grey = BT.601 weighted sum
        of R, G, B, rounded (half to even) and clamped to 0..255.
        """
        if snippets.ndim != 5 or snippets.shape[-1] != 3:
            raise ValueError(f"expected uint8 snippets [N, 16, H, W, 3], got {tuple(snippets.shape)}")
        p = self.preprocessing
        x = snippets[:, list(self.frame_indices)].to(self.device, non_blocking=True)
        n, f = x.shape[:2]
        x = x.reshape(n * f, *x.shape[2:]).permute(0, 3, 1, 2)  # uint8 [N*F, 3, H, W]
        # On the 0..255 scale (not 0..1): a bilinear filter is linear, and this spares a divide and multiply.
        if p.view == "squash":  # the whole frame, aspect changed
            x = transforms.view_frames(x.float(), p.view, p.crop_size, p.interpolation, p.antialias)[0]
        else:
            if not transforms.at_size(x, p.resize, p.resize_size):
                x = transforms.resize(x.float(), p.resize, p.resize_size, p.interpolation, p.antialias)
            x = transforms.multi_crop(x, 1, p.crop_size)[0]
        x = x.float()  # [N*F, 3, S, S]
        w = torch.tensor(_GREY_INTEGER_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        grey = (x * w).sum(dim=1).div_(_GREY_SCALE)  # [N*F, S, S]
        grey = grey.round_().clamp_(0, GREY_LEVELS)
        return grey.reshape(n, f, p.crop_size, p.crop_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Grey frames ``[M, F, S, S]`` -> ``[M, F * S * S]``, frame-major then rows then columns."""
        return self.model(x).flatten(start_dim=1)

    @torch.inference_mode()
    def forward_preprocessed(self, x: torch.Tensor, n_snippets: int) -> torch.Tensor:
        """Output of :meth:`preprocess` ``[N, F, S, S]`` -> float32 ``[N, 1, F * S * S]`` on the CPU."""
        return self.embed(x).float().reshape(n_snippets, 1, self.dim).cpu()

    @torch.inference_mode()
    def extract(self, snippets: torch.Tensor) -> torch.Tensor:
        """uint8 snippets ``[N, 16, H, W, 3]`` -> float32 ``[N, 1, F * S * S]`` of whole grey levels 0..255
        (exact in float32; the extract stage stores them as uint8)."""
        return self.forward_preprocessed(self.preprocess(snippets), n_snippets=snippets.shape[0])


def lowres_frames(features: np.ndarray, frames: int = len(LOWRES_FRAME_INDICES),
                  size: int = LOWRES_SIZE) -> np.ndarray:
    """Stored lowres features ``[T, 1, F * S * S]`` -> grey frames ``[T, F, S, S]`` (a view, same dtype)."""
    if features.ndim != 3 or features.shape[1] != 1 or features.shape[2] != frames * size * size:
        raise ValueError(f"expected lowres features [T, 1, {frames} * {size} * {size} = {frames * size * size}], "
                         f"got {tuple(features.shape)}")
    return features.reshape(features.shape[0], frames, size, size)


def build(weights: str | None = None, *, crops: int = 1, device: torch.device | str = "cpu") -> LowResFrames:
    """The lowres pseudo-backbone. ``weights`` must be None or ``"none"``: it has no network to load."""
    if weights not in (None, NO_WEIGHTS):
        raise ValueError(f"lowres has no weights (it stores grey frames, no network runs): drop "
                         f"--weights lowres={weights}")
    return LowResFrames(crops=crops, device=device)
