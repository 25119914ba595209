"""The one interface every backbone implements.

A backbone turns a batch of raw snippets (``uint8 [N, 16, H, W, 3]``, RGB, straight from the decoder) into
features ``float32 [N, crops, D]``. The shared steps (frame selection, resize, crops, normalisation) live here
so that every backbone does them the same way; a backbone only names its preprocessing and implements
:meth:`Backbone.embed`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from data.decode import SNIPPET_FRAMES  # frames per snippet (method.md §1); the unit every backbone sees
from extractors import transforms
from extractors.grid import check_grid, grid_shape, pool_map


@dataclass(frozen=True)
class Preprocessing:
    """How raw frames become a backbone's input. Every field enters the extractor fingerprint.

    resize: ``"short_side"`` (keep aspect, short side = resize_size) or ``"square"`` (resize_size x resize_size).
    mean / std: applied to pixels scaled to [0, 1]; mean = std = 0.5 maps pixels to [-1, 1].
    view: ``"crop"`` (resize as above, then crops of crop_size), ``"full"`` (the whole frame, aspect kept, short side
    crop_size) or ``"squash"`` (the whole frame at crop_size x crop_size); see ``transforms.VIEWS``. The two
    whole-frame views ignore resize / resize_size and take one view per snippet.
    """

    resize: str
    resize_size: int
    interpolation: str
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    antialias: bool = True
    view: str = transforms.DEFAULT_VIEW

    def __post_init__(self) -> None:
        if self.view not in transforms.VIEWS:
            raise ValueError(f"view must be one of {', '.join(transforms.VIEWS)}, got {self.view!r}")

    @property
    def decode_short_side(self) -> int:
        """The short side frames should be decoded at so that no step upsamples: the resize size for crops,
        the crop size for the whole-frame views."""
        return self.resize_size if self.view == "crop" else self.crop_size

    def fingerprint(self) -> dict:
        """The fields as a dict for the extractor fingerprint. The default view is left out, so the fingerprints
        (and cached features) of stores made before views existed stay valid."""
        params = asdict(self)
        if params["view"] == transforms.DEFAULT_VIEW:
            del params["view"]
        return params


def preprocess_snippets(snippets: torch.Tensor, preprocessing: Preprocessing, frame_indices: Sequence[int],
                        crops: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """A backbone's input from raw snippets, without the backbone (what ``Backbone.preprocess`` does, so that an
    exported model's caller, e.g. ``pipeline.detect --onnx``, can prepare its input from export.json alone).

    snippets: uint8 ``[N, 16, H, W, 3]`` RGB, as the decoder hands them out.
    Returns normalised float32 ``[N * crops, 3, F, h, w]`` on ``device``, F = ``len(frame_indices)``; h = w = the
    crop size for the crop and squash views, the frame's own aspect for the full view; the crops of one snippet
    are adjacent, in ``transforms.crop_order(crops)`` order.

    Steps: the ``frame_indices`` frames of each snippet; resize (only when not already at the size, e.g. resized
    while decoding); ``crops`` crops (crop view) or the one whole-frame view; scale to [0, 1] and normalise with
    mean / std.
    """
    if snippets.ndim != 5 or snippets.shape[-1] != 3:
        raise ValueError(f"expected uint8 snippets [N, 16, H, W, 3], got {tuple(snippets.shape)}")
    p = preprocessing
    x = snippets[:, list(frame_indices)].to(device, non_blocking=True)
    n, f = x.shape[:2]
    x = x.reshape(n * f, *x.shape[2:]).permute(0, 3, 1, 2)  # uint8 [N*F, 3, H, W]
    if p.view == "crop":
        if not transforms.at_size(x, p.resize, p.resize_size):
            x = transforms.resize(x.float().div_(255.0), p.resize, p.resize_size, p.interpolation, p.antialias)
        x = transforms.multi_crop(x, crops, p.crop_size)  # [crops, N*F, 3, c, c]
    else:
        if crops != 1:
            raise ValueError(f"the {p.view} view is one view of the whole frame: crops must be 1, got {crops}")
        mode = "short_side" if p.view == "full" else "square"
        if not transforms.at_size(x, mode, p.crop_size):
            x = x.float().div_(255.0)
        x = transforms.view_frames(x, p.view, p.crop_size, p.interpolation, p.antialias)  # [1, N*F, 3, h, w]
    if x.dtype == torch.uint8:  # frames came at the right size: convert only the crops, not whole frames
        x = x.float().div_(255.0)
    x = transforms.normalize(x, p.mean, p.std)
    h, w = x.shape[-2:]
    x = x.reshape(crops, n, f, 3, h, w).permute(1, 0, 3, 2, 4, 5)  # [N, crops, 3, F, h, w]
    return x.reshape(n * crops, 3, f, h, w)


class Backbone(abc.ABC):
    """A feature extractor over 16-frame snippets.

    Subclasses set ``name``, ``dim``, ``kind`` (``"video"``: the model sees the clip ``[M, 3, F, h, w]``;
    ``"image"``: the model sees single frames ``[M, 3, h, w]`` and features are averaged over the chosen frames),
    ``version`` (bump when the code changes what features come out), and implement :meth:`embed`.
    """

    name: str
    dim: int
    kind: str
    version: int = 1
    # Views (``transforms.VIEWS``) the network can take: the whole-frame "full" view needs a fully convolutional
    # network whose feature is a global average; a fixed-size network (CLIP's ViT) takes square inputs only.
    views: tuple[str, ...] = ("crop", "squash")
    # Whether the backbone can keep its last feature map as a grid of cells (it implements embed_map).
    grids: bool = False

    def __init__(self, model: nn.Module, preprocessing: Preprocessing, *, crops: int = 1,
                 frame_indices: tuple[int, ...] | None = None, weights_id: str = "",
                 device: torch.device | str = "cpu", amp: bool | None = None):
        if crops not in transforms.CROP_COUNTS:
            raise ValueError(f"crops must be one of {transforms.CROP_COUNTS}, got {crops}")
        self.preprocessing = preprocessing
        self.crops = crops
        self.frame_indices = tuple(frame_indices if frame_indices is not None else range(SNIPPET_FRAMES))
        if not self.frame_indices or any(not 0 <= i < SNIPPET_FRAMES for i in self.frame_indices):
            raise ValueError(f"frame indices must lie in [0, {SNIPPET_FRAMES}), got {self.frame_indices}")
        self.weights_id = weights_id
        self.grid: str | None = None  # None: one global feature per snippet; else the grid choice (extractors.grid)
        self.last_grid: tuple[int, int] | None = None  # (rows, cols) of the last grid extract() gave
        self.device = torch.device(device)
        # Mixed precision pays on a GPU only; on the CPU it would change the features for no speed-up.
        self.amp = (self.device.type == "cuda") if amp is None else amp
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @property
    def frames_per_snippet(self) -> int:
        return len(self.frame_indices)

    def fingerprint_params(self) -> dict:
        """Everything that decides the features: canonical-JSON-able, hashed into the extractor fingerprint."""
        return {
            "backbone": self.name,
            "version": self.version,
            "weights": self.weights_id,
            "dim": self.dim,
            "crops": self.crops,
            "crop_order": transforms.crop_order(self.crops),
            "frame_indices": list(self.frame_indices),
            "snippet_frames": SNIPPET_FRAMES,
            "preprocessing": self.preprocessing.fingerprint(),
            # Only a grid extraction names its grid, so global fingerprints (and stores) stay what they were.
            **({"grid": self.grid} if self.grid is not None else {}),
        }

    def use_grid(self, choice: str | None) -> None:
        """Keep the last feature map as cells (``"native"`` or ``"RxC"``, :mod:`extractors.grid`) or, with None,
        one global feature. It enters the fingerprint. ValueError when the backbone has no feature map to keep, or
        with several crops (a grid is one view's cells)."""
        if choice is None:
            self.grid = None
            return
        choice = check_grid(choice)
        # The messages name the API's parameters in backquotes, which the command line shows as its flags.
        if not self.grids:
            raise ValueError(f"{self.name} has no feature map to keep as a grid (it gives one vector per snippet): "
                             f"extract {self.name} without `grids`, or give the grid to the other backbones only "
                             "(NAME=GRID, e.g. i3d=native)")
        if self.crops != 1:
            raise ValueError(f"a grid of {self.name} is the cells of one whole view: use `crops` 1, not "
                             f"{self.crops} (or extract without `grids`)")
        self.grid = choice

    def embed_map(self, x: torch.Tensor) -> torch.Tensor:
        """Like :meth:`embed`, before the spatial average: ``"video"`` kind ``[M, 3, F, h, w] -> [M, D, r, c]``
        (averaged over time), ``"image"`` kind ``[M, 3, h, w] -> [M, D, r, c]``. Backbones with ``grids = True``
        implement it, and their :meth:`embed` is its mean over ``r, c`` (except CLIP's ViT, whose :meth:`embed` is
        the class token and whose cells are the patch tokens: :mod:`extractors.clip`). Either way a grid
        extraction's global feature is the cells' mean."""
        raise NotImplementedError(f"{self.name} has no feature map")

    def use_view(self, view: str) -> None:
        """Switch to ``view`` (``transforms.VIEWS``) before any extraction; it enters the fingerprint.
        Raises ValueError naming the views this backbone takes, or when crops were asked for with a whole-frame
        view."""
        if view not in self.views:
            raise ValueError(f"{self.name} takes the views {', '.join(self.views)}, not {view!r}")
        if view != "crop" and self.crops != 1:
            raise ValueError(f"the {view} view of {self.name} is one view of the whole frame: use crops 1 "
                             f"(got {self.crops}), or the crop view for {self.crops} crops")
        self.preprocessing = replace(self.preprocessing, view=view)

    def preprocess(self, snippets: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 16, H, W, 3]`` -> normalised float ``[N * crops, 3, F, h, w]`` on the backbone's device
        (:func:`preprocess_snippets` with this backbone's settings)."""
        return preprocess_snippets(snippets, self.preprocessing, self.frame_indices, self.crops, device=self.device)

    @abc.abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> features. ``"video"`` kind: ``[M, 3, F, h, w] -> [M, D]``;
        ``"image"`` kind: ``[M, 3, h, w] -> [M, D]`` (h = w = the crop size except in the full view)."""

    @torch.inference_mode()
    def extract(self, snippets: torch.Tensor) -> torch.Tensor:
        """uint8 snippets ``[N, 16, H, W, 3]`` -> float32 features ``[N, crops, D]`` on the CPU; with a grid
        ``[N, cells, D]``, the cells of :attr:`last_grid` row-major."""
        x = self.preprocess(snippets)
        return self.forward_preprocessed(x, n_snippets=snippets.shape[0])

    def embed_snippets(self, x: torch.Tensor) -> torch.Tensor:
        """Output of :meth:`preprocess` ``[M, 3, F, h, w]`` -> ``[M, D]``, or with a grid ``[M, cells, D]``: a
        video backbone embeds each clip, an image backbone embeds its F frames and averages them. No autocast or
        grad mode of its own (the exported scorer of ``pipeline.export`` traces it)."""
        if self.grid is not None:
            return self.embed_cells(x)
        if self.kind == "video":
            return self.embed(x)
        m, _, f, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(m * f, 3, h, w)
        return self.embed(frames).reshape(m, f, -1).mean(dim=1)

    def embed_cells(self, x: torch.Tensor) -> torch.Tensor:
        """Output of :meth:`preprocess` ``[M, 3, F, h, w]`` -> ``[M, cells, D]`` for this backbone's grid (the
        frames of an image backbone averaged per cell); sets :attr:`last_grid`."""
        if self.kind == "video":
            fmap = self.embed_map(x)
        else:
            m, _, f, h, w = x.shape
            fmap = self.embed_map(x.permute(0, 2, 1, 3, 4).reshape(m * f, 3, h, w))
            fmap = fmap.reshape(m, f, *fmap.shape[1:]).mean(dim=1)
        self.last_grid = grid_shape(tuple(fmap.shape[-2:]), self.grid)
        return pool_map(fmap, self.grid)

    @torch.inference_mode()
    def forward_preprocessed(self, x: torch.Tensor, n_snippets: int) -> torch.Tensor:
        """The forward pass alone: output of :meth:`preprocess` -> ``[N, crops, D]`` (with a grid ``[N, cells,
        D]``) float32 on the CPU."""
        autocast = (torch.autocast(self.device.type, dtype=torch.float16) if self.amp
                    else contextlib.nullcontext())
        with autocast:
            feats = self.embed_snippets(x)
        feats = feats.float().reshape(n_snippets, -1 if self.grid is not None else self.crops, self.dim)
        return feats.cpu()
