"""Spatial multiple-instance learning over a feature grid (method.md §12): any snippet model, given the cells of a
backbone's last feature map, scores every cell and takes a snippet's score from its highest cells.

A video's grid feature is ``[T, C, D]``: ``C = rows x cols`` cells, row-major. :class:`SpatialMIL` wraps a method's
network (``inner``: a list of ``[N, L, D_b]`` -> an output with ``.scores [N, L]`` and ``.h [N, L, d]``) and maps a
list of ``[N, L, C_b, D_b]`` (one per backbone; ``C_b`` is the grid's ``C``, or 1 for a global backbone, which
broadcasts) to a :class:`SpatialOutput` with the same ``.scores`` and ``.h`` plus ``.cell_scores [N, L, C]``:

- ``temporal = "pooled"`` (default): the inner runs once on the cells' mean, the global feature, and each cell adds
  its own evidence ``e[t, c]`` in (0, 1) from a small cell scorer, ``cell_score[t, c] = (inner_score[t] +
  e[t, c]) / 2`` (``fusion = "mean"``; ``"logit"`` adds the scorer's logit to the inner's); ``h`` is the inner's.
  The temporal model sees what a global run sees; the per-step cost of the cells is one small MLP.
- ``temporal = "cells"``: the inner runs on each cell's own sequence (``[N * C, L, D_b]``) and a cell's score is its
  score; ``h`` is the mean of the top-k cells' ``h``. C times the global run's cost.

Either way a snippet's score is the mean of its ``k`` highest cell scores (``k`` clipped to C), so the losses of
the wrapped method (MIL ranking, distillation, LA-Net's) apply to it unchanged.

The cell scorer reads the cells of the backbones ``scored`` names (``spatial.cell_backbones``; by default those that
see time, so an image backbone reaches the inner through its cells' mean only), one scorer per backbone whose
sigmoids are averaged per cell (``spatial.cell_scorers``), with dropout in training, and trains
at its own learning rate (``spatial.lr``). It reads cells standardised with the training cells' statistics and
projected onto their first ``reduce_dim`` principal components (:class:`CellReduction`, buffers fitted once before
training and saved with the model): the projection is fixed, so training can hold the cells already reduced
(:meth:`SpatialMIL.prepare`) and a step costs a ``reduce_dim``-wide layer per cell instead of a ``D_b``-wide one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CELL_MODES = ("auto", "off")  # auto: spatial MIL when the features have more than one cell; off: the cells' mean
TEMPORAL_MODES = ("pooled", "cells")
# How the pooled mode joins the inner's snippet score s[t] and a cell's own evidence delta[t, c]:
#   mean:  cell_score = (s[t] + sigmoid(delta[t, c])) / 2, the cell scorer a head of its own from the first step;
#   logit: cell_score = sigmoid(logit(s[t]) + delta[t, c]), delta starting at zero (training starts from the global
#          model). Measured on Ped1 (method.md §12): with "logit" the global path fits the training bags and delta
#          stays near zero (frame AUC no better than global); "mean" makes the cells carry half of every score.
FUSIONS = ("mean", "logit")

# A snippet's score is the mean of its k highest cell scores: an anomaly (a cyclist on a walkway) fills a few of
# Ped1's 77 cells, so the max (k = 1) would follow one noisy cell and the mean of all cells would dilute it; 3 is
# also the project's MIL top-k over segments (mil.topk).
CELL_TOPK = 3
# Cell scorer width: it maps a few hundred reduced dimensions to one number per cell, and runs on C cells of every
# segment, so it is kept narrow (64 x 77 cells x 12 segments is a 59k-value activation per video on Ped1).
CELL_HIDDEN = 64
# Principal components kept of each backbone's standardised cell features (0: no reduction). 256 keeps the per-step
# cost of C cells small on a CPU (2,304 -> 512 input values per cell for i3d + effnet_lite0), and on Ped1 it beat
# both 64 and 512 (TAM on i3d's cells, 3 seeds: 0.707, 0.822, 0.800 frame AUC); method.md §12.
CELL_REDUCE_DIM = 256
# Dropout on the cell scorer's hidden layer (training only). The scorer sees 77 cells of a few hundred segments and
# nothing stops it from memorising the few cells that tell the training bags apart; on Ped1 (TAM on i3d, method.md
# §12, 3 seeds) dropout 0.3 took frame AUC from 0.757 to 0.786 at the old rate; 0.3 is RTFM's classifier dropout.
CELL_DROPOUT = 0.3
# The cell scorer's Adagrad learning rate (its own parameter group; the wrapped network keeps train.lr_temporal and
# train.lr_other). Adagrad's steps shrink with the summed squared gradients, and at train.lr_other = 1e-3 the
# scorer was still far from fitted at the 300-step floor; 1e-2 took Ped1's TAM-on-i3d grid run from 0.786 to 0.822.
CELL_LR = 1e-2
# The backbones whose cells the cell scorer reads. "video": those that see a snippet's frames together (i3d, s3d,
# motion; every backbone when the run has none of them); "all": every backbone; or names joined by commas. The
# others reach the wrapped network only, through the cells' mean. An image backbone's cell describes one frame's
# appearance in 1,280 (effnet_lite0) or 512 (clip) dimensions: on Ped1 the i3d + effnet_lite0 teacher's cell scorer
# over-fitted the 38 training clips on effnet_lite0's cells (frame AUC 0.71 with them, 0.83 on i3d's alone; a
# linear frame-label scorer on both backbones' cells reaches 0.57), method.md §12.
CELLS_OF_VIDEO_BACKBONES, CELLS_OF_ALL_BACKBONES = "video", "all"
CELL_BACKBONES = CELLS_OF_VIDEO_BACKBONES
# How the cell scorer joins several scored backbones (i3d and motion in the motion teacher):
#   per_backbone: one scorer per backbone, a cell's evidence the mean of their sigmoids (a cell is anomalous in
#                 appearance or in motion, and either backbone's scorer can say so alone);
#   shared:       one hidden layer over the sum of the backbones' projections (the first version).
# On Ped1 (method.md §12, the motion teacher, 5 seeds) per_backbone gave 0.835 frame AUC against 0.822 and a
# pointing game of 0.67 against 0.62; with one scored backbone the two are the same network.
CELL_SCORERS = ("per_backbone", "shared")
# The distilled student's L1 term between the teacher's and its own cell scores, when both are spatial on one grid.
# The mean |difference| of two maps in (0, 1) is small beside the student's other terms; on Ped1 (i3d student of the
# grid teacher, method.md §12, 3 seeds) weight 0 gave 0.790, 1 gave 0.803, 5 gave 0.816 and 20 gave 0.829 frame AUC
# (teacher 0.833), so the maps are what carries the teacher's spatial knowledge over.
MAP_WEIGHT = 20.0
# Scores are clamped to [eps, 1 - eps] before the logit, so a saturated inner score (1.0 in float32) stays finite.
LOGIT_EPS = 1e-6
STD_FLOOR = 1e-6  # a cell dimension constant over the training set is divided by this instead of 0


@dataclass(frozen=True)
class SpatialConfig:
    """The ``spatial`` config section (read by the teacher, student and LA-Net; method.md §12)."""

    # auto: spatial MIL when a chosen backbone's features have more than one cell; off: the model sees the cells'
    # mean (the global feature), exactly as a global run.
    cells: str = "auto"
    k: int = CELL_TOPK
    temporal: str = "pooled"
    hidden: int = CELL_HIDDEN
    reduce_dim: int = CELL_REDUCE_DIM
    fusion: str = FUSIONS[0]
    dropout: float = CELL_DROPOUT  # the cell scorer's hidden layer, in training
    lr: float = CELL_LR  # the cell scorer's Adagrad learning rate
    cell_backbones: str = CELL_BACKBONES  # "video" | "all" | names joined by commas (CELL_BACKBONES)
    cell_scorers: str = CELL_SCORERS[0]  # with several scored backbones: one scorer each, or one shared
    map_weight: float = MAP_WEIGHT  # the student's map distillation term (spatial teacher and student, one grid)

    def __post_init__(self) -> None:
        if self.cells not in CELL_MODES:
            raise ValueError(f"SpatialConfig.cells must be one of {', '.join(CELL_MODES)}, got {self.cells!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"SpatialConfig.fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.cell_scorers not in CELL_SCORERS:
            raise ValueError(f"SpatialConfig.cell_scorers must be one of {', '.join(CELL_SCORERS)}, "
                             f"got {self.cell_scorers!r}")
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"SpatialConfig.temporal must be one of {', '.join(TEMPORAL_MODES)}, "
                             f"got {self.temporal!r}")
        for name in ("k", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"SpatialConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.reduce_dim < 0:
            raise ValueError(f"SpatialConfig.reduce_dim must be >= 0, got {self.reduce_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SpatialConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0.0:
            raise ValueError(f"SpatialConfig.lr must be > 0, got {self.lr}")
        if not self.map_weight >= 0.0:
            raise ValueError(f"SpatialConfig.map_weight must be >= 0, got {self.map_weight}")


@dataclass
class SpatialOutput:
    """What :class:`SpatialMIL` returns. ``scores`` ``[N, L]`` (each the mean of the snippet's top-k cell scores),
    ``h`` ``[N, L, d]``, ``cell_scores`` ``[N, L, C]`` in (0, 1), cells row-major. ``extras``: the inner output's
    other fields (readable as attributes; in ``cells`` mode shaped ``[N * C, ...]``)."""

    h: Tensor
    scores: Tensor
    cell_scores: Tensor
    extras: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        extras = self.__dict__.get("extras") or {}
        if name in extras:
            return extras[name]
        raise AttributeError(name)


@dataclass
class CellFeatures:
    """A batch prepared for :meth:`SpatialMIL.forward`: per backbone the cells' mean ``pooled`` ``[N, L, D_b]``
    (the inner's input in ``pooled`` mode) and ``cells`` ``[N, L, C_b, r_b]`` (``pooled`` mode: standardised and
    reduced, the cell scorer's input; ``cells`` mode: as stored, ``r_b = D_b``)."""

    pooled: list[Tensor]
    cells: list[Tensor]

    @property
    def shape(self) -> tuple[int, int]:
        """(N, L)."""
        return tuple(self.cells[0].shape[:2])

    def take(self, rows: Tensor, length: int) -> CellFeatures:
        """Rows ``rows`` and their first ``length`` segments."""
        return CellFeatures([x[rows, :length] for x in self.pooled], [x[rows, :length] for x in self.cells])

    def to(self, device) -> CellFeatures:
        return CellFeatures([x.to(device) for x in self.pooled], [x.to(device) for x in self.cells])


def cell_topk(cell_scores: Tensor, k: int) -> Tensor:
    """``[..., C]`` -> ``[...]``: the mean of the ``min(k, C)`` highest values."""
    return cell_scores.topk(min(k, cell_scores.shape[-1]), dim=-1).values.mean(-1)


def to_grid(cells: Tensor, grid: tuple[int, int], target: tuple[int, int]) -> Tensor:
    """One backbone's cells ``[..., rows * cols, D]`` (row-major, ``grid = (rows, cols)``) on the grid ``target``:
    unchanged when the grids are equal or the feature is global (one cell, which broadcasts), else averaged over
    the target cells' areas (adaptive average pooling on the (rows, cols) axes). Returns ``[..., C', D]``."""
    rows, cols = grid
    if cells.shape[-2] != rows * cols:
        raise ValueError(f"a {rows}x{cols} grid has {rows * cols} cells, got {cells.shape[-2]}")
    if tuple(grid) == tuple(target) or rows * cols == 1:
        return cells
    lead, dim = cells.shape[:-2], cells.shape[-1]
    maps = cells.reshape(-1, rows, cols, dim).permute(0, 3, 1, 2)  # [M, D, rows, cols]
    pooled = F.adaptive_avg_pool2d(maps, tuple(target))  # [M, D, R, C]
    return pooled.permute(0, 2, 3, 1).reshape(*lead, target[0] * target[1], dim)


def grid_of(grids: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The grid every backbone is brought to: the first with more than one cell; ``(1, 1)`` when none has."""
    return next((tuple(g) for g in grids if g[0] * g[1] > 1), (1, 1))


def principal_components(x: Tensor, count: int) -> Tensor:
    """``[M, D]`` (standardised rows) -> ``[D, count]``: the eigenvectors of their covariance with the largest
    eigenvalues, largest first, each with its largest entry positive (so a refit gives the same signs)."""
    x = x.double()
    x = x - x.mean(0)
    covariance = x.T @ x / max(len(x) - 1, 1)
    _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    top = vectors[:, -count:].flip(-1)
    signs = torch.sign(top.gather(0, top.abs().argmax(0, keepdim=True)))
    return (top * signs).float()


class CellReduction(nn.Module):
    """One backbone's fixed cell transform ``[..., D] -> [..., r]``: ``((x - mean) / std) @ components``, buffers
    ``mean``, ``std`` ``[D]`` and ``components`` ``[D, r]`` (``r = min(reduce_dim, D)``, or ``D`` with no reduction;
    the first ``r`` unit vectors until :meth:`fit` sets the training cells' principal components)."""

    def __init__(self, dim: int, reduce_dim: int) -> None:
        super().__init__()
        self.out_dim = min(reduce_dim, dim) if reduce_dim > 0 else dim
        self.reduces = reduce_dim > 0
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("components", torch.eye(dim)[:, :self.out_dim].contiguous())

    def set_statistics(self, mean: Tensor, std: Tensor, components: Tensor | None = None) -> None:
        """The training cells' ``mean``, ``std`` ``[D]`` and (reducing) ``components`` ``[D, r]``."""
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.to(self.std).clamp_min(STD_FLOOR))
        if self.reduces and components is not None:
            if tuple(components.shape) != tuple(self.components.shape):
                raise ValueError(f"components of shape {tuple(components.shape)} for {tuple(self.components.shape)}")
            self.components.copy_(components.to(self.components))

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return z @ self.components.to(z.dtype) if self.reduces else z


class SpatialMIL(nn.Module):
    """A method's network over grid features (module docstring). ``inner``: the wrapped network, over
    ``input_dims`` (one ``D_b`` per backbone); ``config``: :class:`SpatialConfig`.

    ``forward(features)``: a list of ``[N, L, C_b, D_b]`` (``C_b`` = C or 1), or a :class:`CellFeatures` from
    :meth:`prepare` -> :class:`SpatialOutput` (``scores [N, L]``, ``h [N, L, d]``, ``cell_scores [N, L, C]``).
    """

    def __init__(self, inner: nn.Module, input_dims: Sequence[int], config: SpatialConfig = SpatialConfig(),
                 scored: Sequence[bool] | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.config = config
        self.input_dims = tuple(int(d) for d in input_dims)
        # Which backbones' cells the cell scorer reads (``spatial.cell_backbones``); every backbone feeds the inner.
        self.scored = tuple(bool(x) for x in scored) if scored is not None else (True,) * len(self.input_dims)
        if len(self.scored) != len(self.input_dims) or not any(self.scored):
            raise ValueError(f"scored must name at least one of the {len(self.input_dims)} backbones, got {scored}")
        if config.temporal == "pooled":
            self.reductions = nn.ModuleList(CellReduction(d, config.reduce_dim) for d in self.input_dims)
            self.cell_inputs = nn.ModuleList(nn.Linear(r.out_dim, config.hidden)
                                             for r, used in zip(self.reductions, self.scored) if used)
            # shared: the scored backbones summed before the ReLU, one output layer; per_backbone: an output layer
            # each (CELL_SCORERS). With one scored backbone the two are the same network.
            self.per_backbone = config.cell_scorers == "per_backbone" and sum(self.scored) > 1
            if self.per_backbone:
                self.cell_outputs = nn.ModuleList(nn.Linear(config.hidden, 1) for _ in self.cell_inputs)
            else:
                self.cell_output = nn.Linear(config.hidden, 1)
            self.cell_dropout = nn.Dropout(config.dropout)
            if config.fusion == "logit":
                # Zero: every cell starts at the inner's score, so training starts from the global model and a cell
                # departs from it only as far as the losses ask.
                for layer in self.output_layers():
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)

    # -- inputs ---------------------------------------------------------------------------------------------------
    def _check(self, features: Sequence[Tensor]) -> int:
        if len(features) != len(self.input_dims):
            raise ValueError(f"expected {len(self.input_dims)} feature tensors, got {len(features)}")
        counts = {int(x.shape[2]) for x in features if x.dim() == 4} - {1}
        for b, (x, dim) in enumerate(zip(features, self.input_dims)):
            if x.dim() != 4 or x.shape[-1] != dim or x.shape[:2] != features[0].shape[:2]:
                raise ValueError(f"features[{b}] has shape {tuple(x.shape)}; expected [N, L, C, {dim}] with the "
                                 f"same N, L as features[0]")
        if len(counts) > 1:
            raise ValueError(f"backbones with different cell counts {sorted(counts)}: bring them to one grid first "
                             "(models.spatial.to_grid)")
        return counts.pop() if counts else 1

    def prepare(self, features: Sequence[Tensor]) -> CellFeatures:
        """``[N, L, C_b, D_b]`` per backbone -> :class:`CellFeatures` (the cells' mean; the cells reduced in
        ``pooled`` mode). Training prepares its cells once (the reduction is fixed) and slices batches of them."""
        self._check(features)
        pooled = [x.mean(2) for x in features]
        if self.config.temporal == "cells":
            return CellFeatures(pooled, list(features))
        return CellFeatures(pooled, [r(x) for r, x in zip(self.reductions, features)])

    # -- the model ------------------------------------------------------------------------------------------------
    def forward(self, features: Sequence[Tensor] | CellFeatures, *, cell_chunk: int | None = None) -> SpatialOutput:
        """``cell_chunk`` (``cells`` mode, scoring without gradients): at most this many cell sequences through the
        inner at a time, bounding the attention memory of long videos."""
        prepared = features if isinstance(features, CellFeatures) else self.prepare(features)
        if self.config.temporal == "cells":
            return self._cells(prepared.cells, cell_chunk)
        return self._pooled(prepared)

    def output_layers(self) -> list[nn.Linear]:
        """The cell scorer's output layers, hidden -> 1: one per scored backbone (``per_backbone``) or one."""
        return list(self.cell_outputs) if self.per_backbone else [self.cell_output]

    def _cell_logits(self, cells: list[Tensor]) -> list[Tensor]:
        """The scored backbones' reduced cells ``[N, L, C_b, r_b]`` -> the cell scorer's logits ``[N, L, C]``:
        one per backbone (``per_backbone``) or one of them all (``shared``)."""
        hidden = [layer(x) for layer, x in zip(self.cell_inputs, cells)]  # each [N, L, C_b, hidden]
        if not self.per_backbone:
            hidden = [sum(hidden)]  # summed before the ReLU: one hidden layer sees every backbone's evidence
        return [out(self.cell_dropout(torch.relu(h))).squeeze(-1).float()
                for out, h in zip(self.output_layers(), hidden)]

    def _pooled(self, prepared: CellFeatures) -> SpatialOutput:
        out = self.inner(prepared.pooled)
        deltas = self._cell_logits([x for x, used in zip(prepared.cells, self.scored) if used])
        if self.config.fusion == "mean":
            evidence = torch.stack(torch.broadcast_tensors(*[torch.sigmoid(d) for d in deltas])).mean(0)
            cell_scores = (out.scores.float().unsqueeze(-1) + evidence) / 2  # [N, L, C]
        else:
            logit = torch.logit(out.scores.float(), eps=LOGIT_EPS)
            cell_scores = torch.sigmoid(logit.unsqueeze(-1) + sum(deltas))
        return SpatialOutput(h=out.h, scores=cell_topk(cell_scores, self.config.k), cell_scores=cell_scores,
                             extras=_extras(out))

    def _cells(self, cells: list[Tensor], cell_chunk: int | None) -> SpatialOutput:
        n, length = cells[0].shape[:2]
        count = max(int(x.shape[2]) for x in cells)
        sequences = [x.expand(n, length, count, x.shape[-1]).permute(0, 2, 1, 3).reshape(n * count, length, -1)
                     for x in cells]  # [N * C, L, D_b]
        chunk = cell_chunk or n * count
        outs = [self.inner([x[i:i + chunk] for x in sequences]) for i in range(0, n * count, chunk)]
        scores = torch.cat([o.scores for o in outs])  # [N * C, L]
        h = torch.cat([o.h for o in outs])  # [N * C, L, d]
        cell_scores = scores.reshape(n, count, length).transpose(1, 2)  # [N, L, C]
        k = min(self.config.k, count)
        top = cell_scores.topk(k, dim=-1)
        h = h.reshape(n, count, length, -1).transpose(1, 2)  # [N, L, C, d]
        h_top = h.gather(2, top.indices.unsqueeze(-1).expand(-1, -1, -1, h.shape[-1])).mean(2)
        return SpatialOutput(h=h_top, scores=top.values.mean(-1), cell_scores=cell_scores,
                             extras=_extras(outs[0]) if len(outs) == 1 else {})

    # -- training -------------------------------------------------------------------------------------------------
    def set_input_statistics(self, statistics: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Per backbone ``(mean [D_b], std [D_b])`` for the inner's input norm: of the pooled features (``pooled``
        mode) or of the cells (``cells`` mode, where the inner reads cells)."""
        if hasattr(self.inner, "set_input_statistics"):
            self.inner.set_input_statistics(statistics)

    def set_cell_reduction(self, statistics: Sequence[tuple[Tensor, Tensor]],
                           components: Sequence[Tensor | None]) -> None:
        """Per backbone the training cells' ``(mean, std)`` ``[D_b]`` and principal components ``[D_b, r_b]``
        (``pooled`` mode; ``cells`` mode has no cell scorer and ignores them)."""
        if self.config.temporal == "pooled":
            for reduction, (mean, std), comps in zip(self.reductions, statistics, components):
                reduction.set_statistics(mean, std, comps)

    def temporal_parameters(self) -> list[nn.Parameter]:
        """The inner's temporal module."""
        return self.inner.temporal_parameters()

    def other_parameters(self) -> list[nn.Parameter]:
        """The inner's other parameters."""
        return self.inner.other_parameters()

    def cell_parameters(self) -> list[nn.Parameter]:
        """The cell scorer's parameters (``pooled`` mode; none in ``cells`` mode); with ``temporal_parameters``
        and ``other_parameters`` all of them."""
        if self.config.temporal != "pooled":
            return []
        return list(self.cell_inputs.parameters()) + [p for layer in self.output_layers() for p in layer.parameters()]

    def reduced_dims(self) -> list[int]:
        """Per backbone the width of the prepared cells (``r_b``; ``D_b`` in ``cells`` mode)."""
        if self.config.temporal == "cells":
            return list(self.input_dims)
        return [r.out_dim for r in self.reductions]


def _extras(out) -> dict:
    """The inner output's fields other than ``h`` and ``scores``."""
    fields = getattr(out, "__dataclass_fields__", None)
    names = fields.keys() if fields else vars(out).keys()
    return {name: getattr(out, name) for name in names if name not in ("h", "scores")}
