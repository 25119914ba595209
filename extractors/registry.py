"""Backbones by name, and the extractor fingerprint that keys their features."""

from __future__ import annotations

import torch

from extractors.base import Backbone

BACKBONES = ("i3d", "s3d", "clip", "clip_b32", "effnet_lite0", "lowres")
FRAME_BACKBONES = ("clip", "clip_b32", "effnet_lite0")  # image models that see k frames of a snippet


def build_backbone(name: str, *, weights: str | None = None, crops: int = 1, frames: int = 1,
                   device: str | torch.device = "cpu") -> Backbone:
    """Build a backbone with its weights resolved (see each module's ``build``).

    frames: for image backbones, how many frames of each 16-frame snippet are embedded and averaged (``lowres``,
        the grey low-resolution frames of method.md §9, keeps its own fixed frame choice).
    Raises ``extractors.weights.WeightsNotFound`` with the flag to pass when weights are missing.
    """
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
