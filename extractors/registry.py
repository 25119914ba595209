"""Backbones by name, and the extractor fingerprint that keys their features."""

from __future__ import annotations

import torch

from extractors.base import Backbone
from extractors.transforms import DEFAULT_VIEW

BACKBONES = ("i3d", "s3d", "clip", "clip_b32", "effnet_lite0", "lowres")
# The view each backbone takes by default with one view per snippet (``--crops 1``); 5 or 10 crops always use the
# crop view, which tiles the frame. Measured on UCSD Ped1 (238 x 158, README): the whole frame lifts the frame AUC
# of a logistic regression on the features from 0.67 to 0.75 (i3d) and 0.57 to 0.64 (effnet_lite0). lowres keeps
# the whole frame as a 64 x 64 square. s3d and clip keep their published crops (not measured: no weights here).
DEFAULT_VIEWS = {"i3d": "full", "effnet_lite0": "full", "lowres": "squash"}
FRAME_BACKBONES = ("clip", "clip_b32", "effnet_lite0")  # image models that see k frames of a snippet


def build_backbone(name: str, *, weights: str | None = None, crops: int = 1, frames: int = 1,
                   view: str | None = None, device: str | torch.device = "cpu") -> Backbone:
    """Build a backbone with its weights resolved (see each module's ``build``).

    frames: for image backbones, how many frames of each 16-frame snippet are embedded and averaged (``lowres``,
        the grey low-resolution frames of method.md §9, keeps its own fixed frame choice).
    view: ``extractors.transforms.VIEWS``; None takes :data:`DEFAULT_VIEWS` (one crop) or the crop view.
    Raises ``extractors.weights.WeightsNotFound`` with the flag to pass when weights are missing, ValueError for a
    view the backbone cannot take.
    """
    backbone = _build(name, weights=weights, crops=crops, frames=frames, device=device)
    backbone.use_view(view or default_view(name, crops))
    return backbone


def default_view(name: str, crops: int = 1) -> str:
    """The view ``name`` takes when none is asked for: :data:`DEFAULT_VIEWS` for one crop, else the crop view."""
    return DEFAULT_VIEWS.get(name, DEFAULT_VIEW) if crops == 1 else DEFAULT_VIEW


def _build(name: str, *, weights: str | None, crops: int, frames: int, device: str | torch.device) -> Backbone:
    from extractors.clip import centre_frames

    if name == "i3d":
        from extractors import i3d

        return i3d.build(weights, crops=crops, device=device)
    if name == "s3d":
        from extractors import s3d

        return s3d.build(weights, crops=crops, device=device)
    if name in ("clip", "clip_b32"):
        from extractors import clip

        return clip.build(weights, name=name, crops=crops, frames=frames, device=device)
    if name == "effnet_lite0":
        from extractors import effnet_lite

        return effnet_lite.build(weights, crops=crops, frame_indices=centre_frames(frames), device=device)
    if name == "lowres":
        from extractors import lowres

        return lowres.build(weights, crops=crops, device=device)
    raise ValueError(f"unknown backbone {name!r}: choose from {', '.join(BACKBONES)}")
