"""The "lightning" student of adversarial multi-teacher distillation (method.md §9, Dascalescu et al.).

A tiny 3D conv net reads each snippet's frames at low resolution (``F`` grey ``S x S`` frames, uint8 0..255,
stored flat as ``F*S*S`` values, frame-major) stacked with their temporal differences, and predicts one score per
snippet **per teacher** (K heads); the final score is the mean over the heads. Each head is distilled from its
teacher's snippet score sequence with an L1 / L2 regression term plus an adversarial term: one small 1D-conv
discriminator per teacher learns to tell the teacher's score sequences (real) from the student's (fake), and the
student is trained to fool it (generator weight ``ADVERSARIAL_WEIGHT``).

``adversarial_distillation_loss`` returns one scalar whose gradient trains both players: the generator term
reaches the student only (the discriminator's parameters are detached in it) and the discriminator term reaches
the discriminators only (the student's scores are detached in it), so one backward and one optimizer step over
the student's and the discriminators' parameters together are a simultaneous update of the two-player game.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from models.spatial import CELL_TOPK, cell_topk

LIGHTNING_FRAMES = 8  # grey frames kept per 16-frame snippet: frames 0, 2, ..., 14
LIGHTNING_SIZE = 64  # side of the square low-resolution frames
# Project's choice, sized for speed: on 2 CPU cores the default network costs well under the 1.5 ms per snippet
# (>= 10,000 video frames/s) budget of the issue; the stem's 4x spatial stride is what keeps it cheap (a stride-2
# stem over 64 x 64 frames alone costs several times the whole network).
LIGHTNING_CHANNELS = (16, 32, 64, 128)
LIGHTNING_STEM_KERNEL = (3, 5, 5)  # (time, height, width)
LIGHTNING_STEM_STRIDE = (1, 4, 4)  # keep every frame in time, shrink space 4x at once
LIGHTNING_KERNEL = 3  # every later conv layer: kernel 3, stride 2 in time and space
LIGHTNING_STRIDE = 2
HEAD_HIDDEN = 32
DISC_CHANNELS = 32
DISC_KERNEL = 5
DISC_LEAKY_SLOPE = 0.2
ADVERSARIAL_WEIGHT = 0.1  # the generator weight of method.md §9
REGRESSIONS = ("l1", "l2")
# Squared error: with L1's constant-size gradients through the sigmoid heads, a 24-video synthetic run stayed at
# the constant (median) predictor for 300 Adam steps or drove the heads into saturation; with L2 the same runs fit
# the teachers' scores (training error 0.10 -> 0.04 in 300 steps).
REGRESSION = "l2"
# Snippets encoded per conv pass: bounds the activation memory when a whole video (thousands of snippets) is
# scored at once. 64 snippets of the default input are 64 x 2 x 8 x 64 x 64 float32 = 16 MiB, which stays in
# cache: on 2 CPU cores chunks of 32-64 ran fastest (~0.25 ms/snippet) and 256 nearly 2x slower per snippet.
LIGHTNING_CHUNK = 64
PIXEL_MAX = 255.0
# Input standardisation (the project's): frames in [0, 1] centred at FRAME_MEAN and divided by FRAME_STD, frame
# differences divided by DIFF_STD, so that the first layer sees both channels on one scale (differences of a mostly
# static scene are ~0.02 in [0, 1] units, the frames ~0.5), followed by batch normalisation after every convolution.
# Without them the student did not fit even its training targets on UCSD Ped1 (squared error stuck at the constant
# predictor's 0.23 for 400 Adam steps; test AUC 0.41-0.50); with them it fits in 50 steps (README).
FRAME_MEAN, FRAME_STD, DIFF_STD = 0.5, 0.25, 0.1
# Pooling over the last layer's positions: "topk" averages each channel's POOL_FRACTION highest activations (a small
# fast object, the typical anomaly of a surveillance scene, fills few positions, and a global average dilutes it);
# "avg" is the global average of before. On Ped1: 0.70 (avg) vs 0.70-0.80 (topk, with the shift augmentation).
POOLS = ("topk", "avg")
POOL_FRACTION = 0.02
# The map student's cell features come from the output of conv layer MAP_LAYER (0: the stem), clipped to the last
# layer: with the default 64 x 64 input that is layer 1's 8 x 8 map of 32 channels, each position seeing a 13 x 13
# pixel patch (the stem's 16 x 16 positions see 5 x 5 pixels, too little to tell a cyclist from a walker; layer 2's
# 4 x 4 is coarser than Ped1's 7 x 11 teacher grid).
MAP_LAYER = 1
MAP_DISC_KERNEL = 3  # the map discriminator's spatial kernel (its temporal kernel is disc_kernel)
# Where the map student's snippet scores come from: "head", a score head per teacher on the snippet's embedding
# (as the score-sequence student's), distilled from the teacher's scores while the map heads are distilled from its
# maps; "cells", the mean of each map head's k highest cells, the scores then following the maps. On Ped1 (3 grid
# teachers, 5 seeds, method.md §9) "head" gave 0.807 ± 0.014 frame AUC and "cells" 0.723 ± 0.148: four seeds at
# 0.78-0.80 and one whose training error rose from epoch 30 on, 0.46.
MAP_SCORES = ("head", "cells")


def _float32(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast for ``device`` so the body runs in the precision of its (float32) inputs."""
    return torch.autocast(device_type=device.type, enabled=False)


def _triple(name: str, value: Sequence[int]) -> tuple[int, int, int]:
    value = tuple(int(v) for v in value)
    if len(value) != 3 or min(value) < 1:
        raise ValueError(f"LightningConfig.{name} must be three positive ints (time, height, width), got {value}")
    return value


@dataclass(frozen=True)
class LightningConfig:
    """Input geometry and architecture of the lightning student and its discriminators (project's choices)."""

    frames: int = LIGHTNING_FRAMES
    size: int = LIGHTNING_SIZE
    channels: tuple[int, ...] = LIGHTNING_CHANNELS  # conv widths: the stem, then one stride-2 layer each
    stem_kernel: tuple[int, int, int] = LIGHTNING_STEM_KERNEL
    stem_stride: tuple[int, int, int] = LIGHTNING_STEM_STRIDE
    head_hidden: int = HEAD_HIDDEN
    disc_channels: int = DISC_CHANNELS
    disc_kernel: int = DISC_KERNEL
    input_norm: bool = True  # FRAME_MEAN / FRAME_STD / DIFF_STD standardisation of the two input channels
    batch_norm: bool = True  # BatchNorm3d after every convolution
    pool: str = "topk"
    pool_fraction: float = POOL_FRACTION
    map_scores: str = MAP_SCORES[0]  # the map student's snippet scores (MAP_SCORES)

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"LightningConfig.pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if self.map_scores not in MAP_SCORES:
            raise ValueError(f"LightningConfig.map_scores must be one of {', '.join(MAP_SCORES)}, "
                             f"got {self.map_scores!r}")
        if not 0.0 < self.pool_fraction <= 1.0:
            raise ValueError(f"LightningConfig.pool_fraction must be in (0, 1], got {self.pool_fraction}")
        for name in ("frames", "size", "head_hidden", "disc_channels", "disc_kernel"):
            if getattr(self, name) < 1:
                raise ValueError(f"LightningConfig.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.channels) < 1 or min(self.channels) < 1:
            raise ValueError(f"LightningConfig.channels must be a non-empty tuple of widths >= 1, got {self.channels}")
        # Lists (from YAML / JSON) are normalised to tuples so the config stays hashable and comparable.
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "stem_kernel", _triple("stem_kernel", self.stem_kernel))
        object.__setattr__(self, "stem_stride", _triple("stem_stride", self.stem_stride))

    @property
    def input_dim(self) -> int:
        """Length of one snippet's flat low-resolution vector, ``frames * size * size``."""
        return self.frames * self.size * self.size


def snippet_input(x: Tensor, frames: int = LIGHTNING_FRAMES, size: int = LIGHTNING_SIZE) -> Tensor:
    """Flat snippets ``[..., F*S*S]`` (uint8 or float, values 0..255) -> conv input ``[M, 2, F, S, S]`` float.

    ``M`` is the product of the leading dims. Channel 0 is the frames scaled to [0, 1]; channel 1 their temporal
    differences ``frame[f] - frame[f-1]`` (in [-1, 1]), with the first difference 0. The result is float32 for
    uint8 input and keeps the dtype of float input.
    """
    if x.shape[-1] != frames * size * size:
        raise ValueError(f"snippets have {x.shape[-1]} values; expected frames * size * size = {frames * size * size}")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    frames_ = x.reshape(-1, frames, size, size)
    if x.requires_grad:  # e.g. input saliency: the same values through differentiable ops (out= is not)
        scaled = frames_ / PIXEL_MAX
        diffs = torch.cat([torch.zeros_like(scaled[:, :1]), scaled[:, 1:] - scaled[:, :-1]], dim=1)
        return torch.stack([scaled, diffs], dim=1)
    # Written in place into one buffer: the copies of the cat / stack version above take ~2.5x as long here, about
    # a quarter of the whole network's time.
    out = torch.empty((len(frames_), 2, frames, size, size), dtype=dtype, device=x.device)
    torch.mul(frames_, 1.0 / PIXEL_MAX, out=out[:, 0])
    # Motion is what makes most anomalies (running, fighting, crashes): handing the differences to the first layer
    # lets a spatially strided stem see it without having to learn a temporal derivative itself.
    out[:, 1, :1] = 0
    torch.sub(out[:, 0, 1:], out[:, 0, :-1], out=out[:, 1, 1:])
    return out


def _conv_layers(config: LightningConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 2
    for i, c_out in enumerate(config.channels):
        kernel = config.stem_kernel if i == 0 else (LIGHTNING_KERNEL,) * 3
        stride = config.stem_stride if i == 0 else (LIGHTNING_STRIDE,) * 3
        # Padding k // 2 keeps every output size >= 1, so any frames / size works (a dimension of 1 stays 1).
        layers.append(nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=tuple(k // 2 for k in kernel)))
        if config.batch_norm:
            layers.append(nn.BatchNorm3d(c_out))
        layers.append(nn.ReLU())
        c_in = c_out
    return nn.Sequential(*layers)


class ScoreHead(nn.Module):
    """One teacher's head ``h [..., C] -> scores [...]`` in (0, 1): Linear, ReLU, Linear, sigmoid."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, h: Tensor) -> Tensor:
        return torch.sigmoid(self.net(h).squeeze(-1))


class MapHead(nn.Module):
    """One teacher's map head: cell features ``[M, C_in, rows, cols]`` -> cell scores ``[M, rows * cols]`` in
    (0, 1), row-major: a 1x1-conv MLP (Conv2d 1x1, ReLU, Conv2d 1x1), sigmoid."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_dim, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))

    def forward(self, cells: Tensor) -> Tensor:
        return torch.sigmoid(self.net(cells).flatten(1))


@dataclass
class LightningOutput:
    h: Tensor  # [N, L, C] per-snippet embedding (globally pooled last conv layer)
    head_scores: Tensor  # [N, L, K] one score per teacher head, in (0, 1)
    scores: Tensor  # [N, L] mean over the K heads: the final snippet anomaly score
    # The map student's only (None for the score-sequence student): each head's map, cells row-major on the grid.
    head_maps: Tensor | None = None  # [N, L, K, rows * cols] in (0, 1)
    cell_scores: Tensor | None = None  # [N, L, rows * cols] mean over the K heads' maps


class LightningStudent(nn.Module):
    """Low-resolution snippets -> K per-teacher snippet scores and their mean (and, the map student, maps).

    ``forward(features)``: ``features`` holds exactly one tensor ``[N, L, F*S*S]`` (uint8 or float, values
    0..255; see :func:`snippet_input`) -> ``LightningOutput(h [N, L, C], head_scores [N, L, K], scores [N, L])``
    with ``C = config.channels[-1]``. Snippets are independent (no temporal layer across snippets), so they are
    encoded in chunks of ``LIGHTNING_CHUNK`` and any ``N, L`` gives the same per-snippet result.

    ``grid`` (rows, cols): the map student (module docstring). Its heads are :class:`MapHead` s over each cell's
    features (layer ``MAP_LAYER``'s channels, time-averaged and pooled to the grid, then the snippet's ``h``):
    ``head_maps [N, L, K, rows * cols]`` and ``cell_scores`` the mean of the heads' maps. ``head_scores[..., k]``
    comes from teacher k's :class:`ScoreHead` on ``h`` (``config.map_scores = "head"``) or is the mean of map head
    k's ``k_top`` highest cells (``"cells"``). ``grid`` None: the score-sequence student, as before maps.
    """

    def __init__(self, n_teachers: int, config: LightningConfig = LightningConfig(),
                 grid: tuple[int, int] | None = None, k_top: int = CELL_TOPK) -> None:
        super().__init__()
        if n_teachers < 1:
            raise ValueError(f"LightningStudent needs at least one teacher, got {n_teachers}")
        if grid is not None and (len(grid) != 2 or min(grid) < 1):
            raise ValueError(f"the map student's grid must be (rows, cols) >= 1, got {grid}")
        if k_top < 1:
            raise ValueError(f"k_top must be >= 1, got {k_top}")
        self.n_teachers = int(n_teachers)
        self.config = config
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.k_top = int(k_top)
        self.encoder = _conv_layers(config)
        self.score_heads = None  # the map student's score heads (lightning.map_scores = head)
        if self.grid is None:
            self.heads = nn.ModuleList(ScoreHead(config.channels[-1], config.head_hidden) for _ in range(n_teachers))
        else:
            self.map_layer = min(MAP_LAYER, len(config.channels) - 1)
            cell_dim = config.channels[self.map_layer] + config.channels[-1]
            self.heads = nn.ModuleList(MapHead(cell_dim, config.head_hidden) for _ in range(n_teachers))
            self.score_heads = (nn.ModuleList(ScoreHead(config.channels[-1], config.head_hidden)
                                              for _ in range(n_teachers)) if config.map_scores == "head" else None)

    @property
    def embedding_dim(self) -> int:
        return self.config.channels[-1]

    def encode(self, snippets: Tensor) -> Tensor:
        """Flat snippets ``[M, F*S*S]`` -> embeddings ``[M, C]``, in chunks of ``LIGHTNING_CHUNK`` snippets."""
        return self._encode(snippets)[0]

    def _encode(self, snippets: Tensor) -> tuple[Tensor, Tensor | None]:
        """Flat snippets ``[M, F*S*S]`` -> (embeddings ``[M, C]``, the map student's cell features
        ``[M, C_map + C, rows, cols]`` or None), in chunks of ``LIGHTNING_CHUNK`` snippets."""
        dtype = self.heads[0].net[0].weight.dtype
        parts, cell_parts = [], []
        # the ReLU closing conv layer MAP_LAYER: every layer is conv, (batch norm,) ReLU
        stop = None if self.grid is None else [i for i, m in enumerate(self.encoder)
                                               if isinstance(m, nn.ReLU)][self.map_layer]
        for chunk in snippets.split(LIGHTNING_CHUNK):
            x = snippet_input(chunk, self.config.frames, self.config.size).to(dtype)
            if self.config.input_norm:
                x = torch.stack([(x[:, 0] - FRAME_MEAN) / FRAME_STD, x[:, 1] / DIFF_STD], dim=1)
            if stop is None:
                parts.append(self._pool(self.encoder(x)))
                continue
            for i, layer in enumerate(self.encoder):
                x = layer(x)
                if i == stop:  # [m, C_map, F', S', S'] -> time-averaged, pooled to the grid
                    local = F.adaptive_avg_pool2d(x.mean(dim=2), self.grid)
            h = self._pool(x)
            parts.append(h)
            cell_parts.append(torch.cat([local, h[:, :, None, None].expand(-1, -1, *self.grid)], dim=1))
        return torch.cat(parts), (torch.cat(cell_parts) if cell_parts else None)

    def _pool(self, y: Tensor) -> Tensor:
        """``[M, C, F', S', S']`` -> ``[M, C]``: the mean of each channel's top ``pool_fraction`` of positions, or
        of all of them (``avg``)."""
        flat = y.flatten(2)
        if self.config.pool == "avg":
            return flat.mean(dim=-1)
        k = max(1, int(flat.shape[-1] * self.config.pool_fraction))
        return flat.topk(k, dim=-1).values.mean(dim=-1)

    def forward(self, features: Sequence[Tensor]) -> LightningOutput:
        if len(features) != 1:
            raise ValueError(f"LightningStudent expects exactly one feature tensor, got {len(features)}")
        x = features[0]
        if x.dim() != 3 or x.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"features[0] has shape {tuple(x.shape)}; expected [N, L, {self.config.input_dim}] "
                f"({self.config.frames} frames of {self.config.size} x {self.config.size})"
            )
        n, length = x.shape[:2]
        h, cells = self._encode(x.reshape(n * length, -1))  # [N*L, C], [N*L, C_map + C, rows, cols] or None
        if cells is None:
            head_scores = torch.stack([head(h) for head in self.heads], dim=-1)  # [N*L, K]
            head_scores = head_scores.reshape(n, length, self.n_teachers)
            return LightningOutput(
                h=h.reshape(n, length, -1), head_scores=head_scores, scores=head_scores.mean(dim=-1)
            )
        head_maps = torch.stack([head(cells) for head in self.heads], dim=1)  # [N*L, K, rows * cols]
        head_maps = head_maps.reshape(n, length, self.n_teachers, -1)
        if self.score_heads is None:
            head_scores = cell_topk(head_maps, self.k_top)  # [N, L, K]
        else:
            head_scores = torch.stack([head(h) for head in self.score_heads], dim=-1).reshape(n, length, -1)
        return LightningOutput(h=h.reshape(n, length, -1), head_scores=head_scores, scores=head_scores.mean(dim=-1),
                               head_maps=head_maps, cell_scores=head_maps.mean(dim=2))


class ScoreDiscriminator(nn.Module):
    """Tells a teacher's snippet score sequence (real) from the student's (fake): ``[N, L] -> logits [N]``.

    Conv1d(1, c, k) LeakyReLU, Conv1d(c, c, k, stride 2) LeakyReLU, mean over time, Linear(c, 1). The convs see
    the sequence's local shape (smoothness, peak widths) and the mean over time makes any ``L >= 1`` work.
    """

    def __init__(self, channels: int = DISC_CHANNELS, kernel: int = DISC_KERNEL) -> None:
        super().__init__()
        if channels < 1 or kernel < 1:
            raise ValueError(f"ScoreDiscriminator needs channels, kernel >= 1, got {channels}, {kernel}")
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, kernel, padding=kernel // 2),
            nn.LeakyReLU(DISC_LEAKY_SLOPE),
            nn.Conv1d(channels, channels, kernel, stride=2, padding=kernel // 2),
            nn.LeakyReLU(DISC_LEAKY_SLOPE),
        )
        self.out = nn.Linear(channels, 1)

    def forward(self, scores: Tensor) -> Tensor:
        if scores.dim() != 2 or scores.shape[1] < 1:
            raise ValueError(f"score sequences must be [N, L] with L >= 1, got {tuple(scores.shape)}")
        return self.out(self.net(scores[:, None, :]).mean(dim=-1)).squeeze(-1)


def make_discriminators(n_teachers: int, config: LightningConfig = LightningConfig()) -> nn.ModuleList:
    """One :class:`ScoreDiscriminator` per teacher, sized by ``config.disc_channels`` / ``config.disc_kernel``."""
    if n_teachers < 1:
        raise ValueError(f"need at least one teacher, got {n_teachers}")
    return nn.ModuleList(ScoreDiscriminator(config.disc_channels, config.disc_kernel) for _ in range(n_teachers))


class MapDiscriminator(nn.Module):
    """Tells a teacher's anomaly-map sequence (real) from the student's (fake): ``[N, L, rows, cols] -> logits [N]``.

    Conv3d(1, c, (k, s, s)) LeakyReLU, Conv3d(c, c, (k, s, s), stride (2, 1, 1)) LeakyReLU over (time, rows, cols),
    mean over every position, Linear(c, 1); ``k = disc_kernel``, ``s = MAP_DISC_KERNEL``, padded to keep any
    ``L, rows, cols >= 1``. The convs see a map's local shape in space and time (blob sizes, how a blob moves) as
    :class:`ScoreDiscriminator` sees a score sequence's.
    """

    def __init__(self, channels: int = DISC_CHANNELS, kernel: int = DISC_KERNEL,
                 spatial_kernel: int = MAP_DISC_KERNEL) -> None:
        super().__init__()
        if channels < 1 or kernel < 1 or spatial_kernel < 1:
            raise ValueError(f"MapDiscriminator needs channels, kernels >= 1, got {channels}, {kernel}, "
                             f"{spatial_kernel}")
        size = (kernel, spatial_kernel, spatial_kernel)
        padding = tuple(k // 2 for k in size)
        self.net = nn.Sequential(
            nn.Conv3d(1, channels, size, padding=padding),
            nn.LeakyReLU(DISC_LEAKY_SLOPE),
            nn.Conv3d(channels, channels, size, stride=(2, 1, 1), padding=padding),
            nn.LeakyReLU(DISC_LEAKY_SLOPE),
        )
        self.out = nn.Linear(channels, 1)

    def forward(self, maps: Tensor) -> Tensor:
        if maps.dim() != 4 or min(maps.shape[1:]) < 1:
            raise ValueError(f"map sequences must be [N, L, rows, cols] with L, rows, cols >= 1, got "
                             f"{tuple(maps.shape)}")
        return self.out(self.net(maps[:, None]).flatten(2).mean(dim=-1)).squeeze(-1)


def make_map_discriminators(n_teachers: int, config: LightningConfig = LightningConfig()) -> nn.ModuleList:
    """One :class:`MapDiscriminator` per teacher, sized by ``config.disc_channels`` / ``config.disc_kernel``."""
    if n_teachers < 1:
        raise ValueError(f"need at least one teacher, got {n_teachers}")
    return nn.ModuleList(MapDiscriminator(config.disc_channels, config.disc_kernel) for _ in range(n_teachers))


def regression_loss(student: Tensor, teacher: Tensor, kind: str = REGRESSION) -> Tensor:
    """Scalar distance of student to teacher scores (``[N, L]`` each, any equal shapes work).

    ``"l1"``: mean ``|s - t|``; ``"l2"``: mean ``(s - t)^2``. The teacher's scores are targets: detached.
    """
    if kind not in REGRESSIONS:
        raise ValueError(f"unknown regression {kind!r}; expected one of {REGRESSIONS}")
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} scores differ in shape")
    with _float32(student.device):
        diff = student.float() - teacher.detach().float()
        return diff.abs().mean() if kind == "l1" else diff.pow(2).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``(BCE(real_logits, 1) + BCE(fake_logits, 0)) / 2`` with logits, each BCE the mean over its rows; a scalar."""
    with _float32(real_logits.device):
        real = real_logits.float()
        fake = fake_logits.float()
        real_term = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
        fake_term = F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        return 0.5 * (real_term + fake_term)


def generator_loss(fake_logits: Tensor) -> Tensor:
    """``BCE(fake_logits, 1)`` with logits (the non-saturating generator loss), mean over the rows; a scalar."""
    with _float32(fake_logits.device):
        fake = fake_logits.float()
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def discriminator_accuracy(real_logits: Tensor, fake_logits: Tensor) -> float:
    """Fraction of sequences the discriminator classifies right (real logit > 0, fake logit < 0), for logging."""
    right = (real_logits > 0).sum() + (fake_logits < 0).sum()
    return float(right) / max(real_logits.numel() + fake_logits.numel(), 1)


def _frozen_call(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` with every parameter detached: gradients flow into ``x`` but never into ``module``."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = dict(module.named_buffers())
    return functional_call(module, {**params, **buffers}, (x,))


def adversarial_distillation_loss(
    head_scores: Tensor,
    teacher_scores: Tensor,
    discriminators: nn.ModuleList,
    *,
    regression: str = REGRESSION,
    adversarial_weight: float = ADVERSARIAL_WEIGHT,
) -> tuple[Tensor, dict[str, float]]:
    """The two-player distillation objective of method.md §9 as one scalar.

    ``head_scores`` ``[N, L, K]`` (the student's heads), ``teacher_scores`` ``[N, L, K]`` (teacher k's scores in
    column k), ``discriminators``: K :class:`ScoreDiscriminator`. Per teacher k, with ``s_k``, ``t_k`` ``[N, L]``:
    ``reg_k = regression_loss(s_k, t_k)``, ``gen_k = generator_loss(D_k(s_k))`` with ``D_k``'s parameters detached,
    ``disc_k = discriminator_loss(D_k(t_k), D_k(s_k.detach()))``. Returns
    ``mean_k(reg_k + adversarial_weight * gen_k) + mean_k(disc_k)`` and ``{"regression", "generator",
    "discriminator", "total"}`` (the means over k) as Python floats.

    The student's parameters receive exactly the gradient of the first mean and the discriminators' exactly that
    of the second, so one backward + one optimizer step over both parameter sets updates both players.
    """
    if head_scores.dim() != 3 or head_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"head and teacher scores must both be [N, L, K]; got {tuple(head_scores.shape)} and "
            f"{tuple(teacher_scores.shape)}"
        )
    n_teachers = head_scores.shape[-1]
    if len(discriminators) != n_teachers:
        raise ValueError(f"{len(discriminators)} discriminators for {n_teachers} teacher heads")
    if regression not in REGRESSIONS:
        raise ValueError(f"unknown regression {regression!r}; expected one of {REGRESSIONS}")
    with _float32(head_scores.device):
        student = head_scores.float()
        teacher = teacher_scores.detach().float()
        reg, gen, disc = [], [], []
        for k, d_k in enumerate(discriminators):
            s_k, t_k = student[..., k], teacher[..., k]
            reg.append(regression_loss(s_k, t_k, regression))
            gen.append(generator_loss(_frozen_call(d_k, s_k)))
            disc.append(discriminator_loss(d_k(t_k), d_k(s_k.detach())))
        reg_mean = torch.stack(reg).mean()
        gen_mean = torch.stack(gen).mean()
        disc_mean = torch.stack(disc).mean()
        # mean_k(reg_k + w gen_k) == mean_k reg_k + w mean_k gen_k
        total = reg_mean + adversarial_weight * gen_mean + disc_mean
    parts = {
        "regression": reg_mean.item(),
        "generator": gen_mean.item(),
        "discriminator": disc_mean.item(),
        "total": total.item(),
    }
    return total, parts


def map_distillation_loss(
    head_maps: Tensor,
    head_scores: Tensor,
    teacher_maps: Tensor,
    teacher_scores: Tensor,
    discriminators: nn.ModuleList,
    grid: tuple[int, int],
    *,
    regression: str = REGRESSION,
    adversarial_weight: float = ADVERSARIAL_WEIGHT,
) -> tuple[Tensor, dict[str, float]]:
    """The map student's two-player objective (method.md §9) as one scalar, routed as
    :func:`adversarial_distillation_loss`'s.

    ``head_maps``, ``teacher_maps`` ``[N, L, K, rows * cols]`` (cells row-major on ``grid``), ``head_scores``,
    ``teacher_scores`` ``[N, L, K]``, ``discriminators``: K :class:`MapDiscriminator`. Per teacher k, with
    ``m_k``, ``u_k`` the student's and teacher's maps ``[N, L, rows, cols]`` and ``s_k``, ``t_k`` their scores:
    ``reg_k = regression_loss(m_k, u_k) + regression_loss(s_k, t_k)``, ``gen_k = generator_loss(D_k(m_k))`` with
    ``D_k``'s parameters detached, ``disc_k = discriminator_loss(D_k(u_k), D_k(m_k.detach()))``. Returns
    ``mean_k(reg_k + adversarial_weight * gen_k) + mean_k(disc_k)`` and ``{"regression", "map_regression",
    "generator", "discriminator", "total"}`` (means over k; ``regression`` is the whole ``reg_k``,
    ``map_regression`` its map term) as Python floats.
    """
    rows, cols = grid
    if head_maps.dim() != 4 or head_maps.shape != teacher_maps.shape or head_maps.shape[-1] != rows * cols:
        raise ValueError(f"head and teacher maps must both be [N, L, K, {rows * cols}]; got "
                         f"{tuple(head_maps.shape)} and {tuple(teacher_maps.shape)}")
    if head_scores.shape != teacher_scores.shape or head_scores.shape != head_maps.shape[:3]:
        raise ValueError(f"head and teacher scores must both be [N, L, K] = {tuple(head_maps.shape[:3])}; got "
                         f"{tuple(head_scores.shape)} and {tuple(teacher_scores.shape)}")
    n_teachers = head_maps.shape[2]
    if len(discriminators) != n_teachers:
        raise ValueError(f"{len(discriminators)} discriminators for {n_teachers} teacher heads")
    if regression not in REGRESSIONS:
        raise ValueError(f"unknown regression {regression!r}; expected one of {REGRESSIONS}")
    with _float32(head_maps.device):
        maps = head_maps.float().reshape(*head_maps.shape[:3], rows, cols)
        targets = teacher_maps.detach().float().reshape(maps.shape)
        scores, teacher = head_scores.float(), teacher_scores.detach().float()
        reg, map_reg, gen, disc = [], [], [], []
        for k, d_k in enumerate(discriminators):
            m_k, u_k = maps[:, :, k], targets[:, :, k]
            map_reg.append(regression_loss(m_k, u_k, regression))
            reg.append(map_reg[-1] + regression_loss(scores[..., k], teacher[..., k], regression))
            gen.append(generator_loss(_frozen_call(d_k, m_k)))
            disc.append(discriminator_loss(d_k(u_k), d_k(m_k.detach())))
        reg_mean, gen_mean, disc_mean = (torch.stack(x).mean() for x in (reg, gen, disc))
        total = reg_mean + adversarial_weight * gen_mean + disc_mean
    parts = {
        "regression": reg_mean.item(),
        "map_regression": torch.stack(map_reg).mean().item(),
        "generator": gen_mean.item(),
        "discriminator": disc_mean.item(),
        "total": total.item(),
    }
    return total, parts
