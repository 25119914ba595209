"""``motion``: a weightless backbone giving a few statistics of frame differences per cell, beside the appearance of
i3d and effnet_lite0.

No network and no weights. A snippet's 16 frames in the chosen view (default ``full``: the whole frame, aspect
kept, short side 224, as i3d; also ``squash`` and ``crop``, with i3d's resize to short side 256 before the crop)
are turned grey with the ITU-R BT.601 luma weights (:data:`GREY_WEIGHTS`, as ``lowres``), pixels in [0, 1], and
the 15 absolute differences of consecutive frames ``|d| = |g[f + 1] - g[f]|`` are summarised per cell.

Cells line up with i3d's and effnet_lite0's feature maps on the same view: cell ``(i, j)`` covers input rows
``[32 i, 32 i + 32)`` and columns ``[32 j, 32 j + 32)`` (:data:`CELL_PIXELS`, the two networks' total stride), so
the native grid is ``ceil(h / 32) x ceil(w / 32)``, 7 x 11 on the 224 x 337 full view of a UCSD Ped1 frame. The last
row and column of cells cover what is left (columns 320..336, 17 pixels, on a 337-pixel-wide view); every statistic
of a cell is over its own pixels only (the frame is padded with zeros to whole cells, and the padding is never
counted: means and fractions divide by the cell's own pixel count).

The statistics per cell, :data:`STATISTICS` (name, meaning), so ``D = 8``; ``embed_map`` gives them as
``[M, 8, rows, cols]`` in this order, over the cell's pixels and the 15 differences:

- ``mean``, ``std`` (population), ``max`` of |d|;
- ``top_mean``: the mean of the largest :data:`TOP_K` = 154 |d| (1% of a whole cell's 15 x 32 x 32 values);
- ``frac_0.05``, ``frac_0.1``, ``frac_0.2``: the fraction of |d| above each of :data:`FRACTION_THRESHOLDS`;
- ``peak_frame_mean``: the largest over the 15 differences of the cell's mean |d| in one difference (a burst).

Each is 0 for a static cell. The global feature (``embed``, also what a grid
store's :meth:`pipeline.features.VideoFeatures.load` gives) is the mean over cells of these statistics, every cell
counting once: the cells' average statistics, not the statistics of the whole frame (its ``max`` is the mean of
the cells' maxima). That is what every grid backbone promises (``embed(x) == embed_map(x).mean((-2, -1))``), so a
grid store's global feature is the same whether read from the cells or extracted globally.

No quantile is computed (a per-cell sort is slow): the high tail is the top-k mean (``torch.topk``), the spread
is fractions of pixels over fixed thresholds. Measured on one CPU thread of a shared 2-core machine, on UCSD Ped1's
test_03 in the full view (224 x 337, frames already decoded): about 400 frames/s (36 ms a snippet), against 5.6
frames/s for i3d on the same snippets (2.9 s a snippet); ``dakd extract --backbones motion --grid native`` of the
clip, decoding included, 160 frames/s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from data.decode import SNIPPET_FRAMES
from extractors.base import Backbone, Preprocessing
from extractors.lowres import GREY_WEIGHTS, NO_WEIGHTS

NAME = "motion"
CELL_PIXELS = 32  # a cell's side in input pixels: the total stride of i3d's Mixed_5c and effnet_lite0's head
DIFFERENCES = SNIPPET_FRAMES - 1  # |d| of consecutive frames: 15 per snippet
FRACTION_THRESHOLDS = (0.05, 0.1, 0.2)  # |d| levels (grey in [0, 1]) for the "frac_*" statistics
# On UCSD Ped1 (full view) 90% of |d| lie below 0.021 (compression noise, still background), 1% above 0.2 (the
# edges of moving people): 0.05 is clear of the noise, 0.2 takes strong, fast or high-contrast motion only.
TOP_FRACTION = 0.01  # "top_mean" averages the largest 1% of a whole cell's |d| values


def top_k(cell_pixels: int = CELL_PIXELS) -> int:
    """How many |d| "top_mean" averages: :data:`TOP_FRACTION` of a whole cell's values (154 of 15 x 32 x 32)."""
    return math.ceil(TOP_FRACTION * DIFFERENCES * cell_pixels * cell_pixels)


TOP_K = top_k()  # 154, for 32-pixel cells
CPU_CHUNK = 1  # snippets computed at once on a CPU (MotionBackbone.extract); the whole batch on a GPU
VERSION = 1  # bump when the code changes what comes out

# (name, meaning) of each statistic, in the order of the feature's D axis. "|d|" ranges over the cell's pixels and
# the 15 differences.
STATISTICS: tuple[tuple[str, str], ...] = (
    ("mean", "mean of |d|"),
    ("std", "standard deviation of |d|"),
    ("max", "largest |d|"),
    ("top_mean", f"mean of the largest {TOP_K} |d| ({TOP_FRACTION:.0%} of a whole cell's values; all of a smaller "
                 "edge cell's when it has fewer)"),
    *((f"frac_{t:g}", f"fraction of |d| above {t:g}") for t in FRACTION_THRESHOLDS),
    ("peak_frame_mean", "largest over the 15 differences of the cell's mean |d| in one difference (a burst)"),
)
STATISTIC_NAMES = tuple(name for name, _ in STATISTICS)
FEATURE_DIM = len(STATISTICS)

# As i3d's, so the views (and the cells) are the same: full and squash at 224, crop = short side 256 then 224.
# mean 0 / std 1: pixels stay in [0, 1] (recorded only because every field enters the fingerprint).
PREPROCESSING = Preprocessing(resize="short_side", resize_size=256, interpolation="bilinear", crop_size=224,
                              mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def grid_size(h: int, w: int, cell_pixels: int = CELL_PIXELS) -> tuple[int, int]:
    """The native grid ``(ceil(h / p), ceil(w / p))`` of an ``h x w`` view, ``p = cell_pixels``: (7, 11) for
    224 x 337 and 32-pixel cells."""
    return math.ceil(h / cell_pixels), math.ceil(w / cell_pixels)


def cell_statistics(grey: torch.Tensor, cell_pixels: int = CELL_PIXELS) -> torch.Tensor:
    """Grey frames ``[M, F, h, w]`` in [0, 1] -> the :data:`STATISTICS` of their ``F - 1`` absolute consecutive
    differences per ``cell_pixels``-square cell, ``[M, D, rows, cols]`` (:func:`grid_size`); see the module's
    docstring for the cells."""
    m, f, h, w = grey.shape
    p = cell_pixels
    rows, cols = grid_size(h, w, p)
    d = (grey[:, 1:] - grey[:, :-1]).abs()  # [M, F-1, h, w]
    d = F.pad(d, (0, cols * p - w, 0, rows * p - h))  # zeros to whole cells; never counted below
    cells = d.reshape(m, f - 1, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5).reshape(m, rows, cols, f - 1, p * p)
    # Each cell's own pixels (edge cells have fewer) and a mask of them, for the statistics that padding would bias.
    inside = F.pad(torch.ones(h, w, dtype=d.dtype, device=d.device), (0, cols * p - w, 0, rows * p - h))
    inside = inside.reshape(rows, p, cols, p).permute(0, 2, 1, 3).reshape(rows, cols, 1, p * p)
    pixels = inside.sum(dim=(-1, -2))  # [rows, cols]
    values = pixels * (f - 1)

    per_frame_mean = cells.sum(dim=-1) / pixels.unsqueeze(-1)  # [M, rows, cols, F-1]
    flat = cells.reshape(m, rows, cols, -1)
    mean = flat.sum(dim=-1) / values
    # Two passes (not E[x^2] - E[x]^2) so a nearly still cell gives a small std, not float cancellation noise.
    std = (((cells - mean[..., None, None]) * inside) ** 2).sum(dim=(-1, -2)).div(values).sqrt()
    k = min(top_k(p), flat.shape[-1])
    # Padding zeros can enter the top k only once the cell's own values are used up (|d| >= 0): divide by those.
    top_mean = flat.topk(k, dim=-1, sorted=False).values.sum(dim=-1) / values.clamp(max=k)
    stats = [mean, std, flat.amax(dim=-1), top_mean,
             *((flat > t).sum(dim=-1).to(d.dtype) / values for t in FRACTION_THRESHOLDS),
             per_frame_mean.amax(dim=-1)]
    return torch.stack(stats, dim=1)  # [M, D, rows, cols]


class MotionBackbone(Backbone):
    """Per-cell statistics of the 15 frame differences of a snippet: ``[M, 3, 16, h, w] -> [M, 8]`` (global) or
    ``[M, 8, ceil(h / 32), ceil(w / 32)]`` (:meth:`embed_map`)."""

    name = NAME
    dim = FEATURE_DIM
    kind = "video"  # sees the 16 frames at once
    views = ("crop", "full", "squash")  # any frame size: the cells follow it
    grids = True
    version = VERSION
    cell_pixels = CELL_PIXELS  # a cell's side in input pixels (a subclass may take finer cells)

    def __init__(self, *, crops: int = 1, device: torch.device | str = "cpu"):
        # Float32 always: half precision would shift the thresholded fractions on a GPU.
        super().__init__(nn.Identity(), PREPROCESSING, crops=crops, weights_id=NO_WEIGHTS, device=device, amp=False)

    @torch.inference_mode()
    def extract(self, snippets: torch.Tensor) -> torch.Tensor:
        """uint8 snippets ``[N, 16, H, W, 3]`` -> float32 ``[N, 1, 8]``, with a grid ``[N, cells, 8]``. On a CPU
        :data:`CPU_CHUNK` snippets at a time: the float frames of a whole batch (8 x 14 MB at 224 x 337, several
        copies) overflow the caches and tripled the time per snippet; the features are the same."""
        if self.device.type != "cpu" or len(snippets) <= CPU_CHUNK:
            return super().extract(snippets)
        return torch.cat([super(MotionBackbone, self).extract(part) for part in snippets.split(CPU_CHUNK)])

    def fingerprint_params(self) -> dict:
        """The base fingerprint plus every constant that decides the statistics."""
        return {**super().fingerprint_params(), "grey_weights": list(GREY_WEIGHTS),
                "cell_pixels": self.cell_pixels, "statistics": list(STATISTIC_NAMES),
                "fraction_thresholds": list(FRACTION_THRESHOLDS), "top_k": top_k(self.cell_pixels)}

    def embed_map(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] ``[M, 3, 16, h, w]`` -> ``[M, 8, ceil(h / p), ceil(w / p)]`` (``p`` =
        :attr:`cell_pixels`), the :data:`STATISTICS` per cell."""
        weights = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device)
        grey = torch.einsum("mcfhw,c->mfhw", x, weights)
        return cell_statistics(grey, self.cell_pixels)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] ``[M, 3, 16, h, w]`` -> ``[M, 8]``: the mean over cells of :meth:`embed_map`."""
        return self.embed_map(x).mean(dim=(-2, -1))


def build(weights: str | None = None, *, crops: int = 1, device: torch.device | str = "cpu",
          backbone: type[MotionBackbone] = MotionBackbone) -> MotionBackbone:
    """The motion backbone (or ``backbone``, a subclass with other cells). ``weights`` must be None or ``"none"``:
    it has no network to load."""
    if weights not in (None, NO_WEIGHTS):
        raise ValueError(f"{backbone.name} has no weights (it computes frame-difference statistics, no network "
                         f"runs): drop --weights {backbone.name}={weights}")
    return backbone(crops=crops, device=device)
