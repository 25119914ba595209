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
from dataclasses import asdict, dataclass

import torch
from torch import nn

from extractors import transforms

SNIPPET_FRAMES = 16  # frames per snippet (method.md §1); the unit every backbone sees


@dataclass(frozen=True)
class Preprocessing:
    """How raw frames become a backbone's input. Every field enters the extractor fingerprint.

    resize: ``"short_side"`` (keep aspect, short side = resize_size) or ``"square"`` (resize_size x resize_size).
    mean / std: applied to pixels scaled to [0, 1]; mean = std = 0.5 maps pixels to [-1, 1].
    """

    resize: str
    resize_size: int
    interpolation: str
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    antialias: bool = True


def preprocess_snippets(snippets: torch.Tensor, preprocessing: Preprocessing, frame_indices: Sequence[int],
                        crops: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """A backbone's input from raw snippets, without the backbone (what ``Backbone.preprocess`` does, so that an
    exported model's caller, e.g. ``pipeline.detect --onnx``, can prepare its input from export.json alone).

    snippets: uint8 ``[N, 16, H, W, 3]`` RGB, as the decoder hands them out.
    Returns normalised float32 ``[N * crops, 3, F, c, c]`` on ``device``, F = ``len(frame_indices)``, c = the
    crop size; the crops of one snippet are adjacent, in ``transforms.crop_order(crops)`` order.

    Steps: the ``frame_indices`` frames of each snippet; resize (only when not already at the size, e.g. resized
    while decoding); ``crops`` crops; scale to [0, 1] and normalise with mean / std.
    """
    if snippets.ndim != 5 or snippets.shape[-1] != 3:
        raise ValueError(f"expected uint8 snippets [N, 16, H, W, 3], got {tuple(snippets.shape)}")
    p = preprocessing
    x = snippets[:, list(frame_indices)].to(device, non_blocking=True)
    n, f = x.shape[:2]
    x = x.reshape(n * f, *x.shape[2:]).permute(0, 3, 1, 2)  # uint8 [N*F, 3, H, W]
    if not transforms.at_size(x, p.resize, p.resize_size):
        x = transforms.resize(x.float().div_(255.0), p.resize, p.resize_size, p.interpolation, p.antialias)
    x = transforms.multi_crop(x, crops, p.crop_size)  # [crops, N*F, 3, c, c]
    if x.dtype == torch.uint8:  # frames came at the right size: convert only the crops, not whole frames
        x = x.float().div_(255.0)
    x = transforms.normalize(x, p.mean, p.std)
    c = p.crop_size
    x = x.reshape(crops, n, f, 3, c, c).permute(1, 0, 3, 2, 4, 5)  # [N, crops, 3, F, c, c]
    return x.reshape(n * crops, 3, f, c, c)


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
            "preprocessing": asdict(self.preprocessing),
        }

    def preprocess(self, snippets: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 16, H, W, 3]`` -> normalised float ``[N * crops, 3, F, c, c]`` on the backbone's device
        (:func:`preprocess_snippets` with this backbone's settings)."""
        return preprocess_snippets(snippets, self.preprocessing, self.frame_indices, self.crops, device=self.device)

    @abc.abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> features. ``"video"`` kind: ``[M, 3, F, c, c] -> [M, D]``;
        ``"image"`` kind: ``[M, 3, c, c] -> [M, D]``."""

    @torch.inference_mode()
    def extract(self, snippets: torch.Tensor) -> torch.Tensor:
        """uint8 snippets ``[N, 16, H, W, 3]`` -> float32 features ``[N, crops, D]`` on the CPU."""
        x = self.preprocess(snippets)
        return self.forward_preprocessed(x, n_snippets=snippets.shape[0])

    def embed_snippets(self, x: torch.Tensor) -> torch.Tensor:
        """Output of :meth:`preprocess` ``[M, 3, F, c, c]`` -> ``[M, D]``: a video backbone embeds each clip, an
        image backbone embeds its F frames and averages them. No autocast or grad mode of its own (the exported
        scorer of ``pipeline.export`` traces it)."""
        if self.kind == "video":
            return self.embed(x)
        m, _, f, c, _ = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(m * f, 3, c, c)
        return self.embed(frames).reshape(m, f, -1).mean(dim=1)

    @torch.inference_mode()
    def forward_preprocessed(self, x: torch.Tensor, n_snippets: int) -> torch.Tensor:
        """The forward pass alone: output of :meth:`preprocess` -> ``[N, crops, D]`` float32 on the CPU."""
        autocast = (torch.autocast(self.device.type, dtype=torch.float16) if self.amp
                    else contextlib.nullcontext())
        with autocast:
            feats = self.embed_snippets(x)
        feats = feats.float().reshape(n_snippets, self.crops, self.dim)
        return feats.cpu()
