"""What each segment-level training stage optimises: the teacher's MIL ranking loss, the student's bi-level
distillation, LA-Net's top-k BCE with the dynamics losses.

Every objective gives the same interface to the loop in ``pipeline.train``: ``modules()``, ``optimizer()``
(Adagrad with the two learning rates of method.md §6), ``loss(anomalous_rows, normal_rows)`` and
``validate(rows)`` (scores and a dict of named validation losses, ``"loss"`` the total). Rows index
``SegmentData`` (see ``pipeline.train.data``); the lightning student's objective
(``pipeline.train.lightning_student``) indexes videos instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.dynamics import lanet_loss, topk_count
from models.losses import distillation_loss, mil_ranking_loss, refine_pseudo_labels, teacher_segment_labels
from models.spatial import CellFeatures, SpatialMIL, SpatialOutput
from models.vad_model import ContrastiveHead, ModelOutput, VADModel
from pipeline.config import RunConfig
from pipeline.precision import autocast
from pipeline.train.data import SegmentData

SCORING_BATCH = 256  # rows per forward pass when scoring without gradients


def padding_mask(lengths: torch.Tensor, n_segments: int, device: torch.device) -> torch.Tensor | None:
    """Bool ``[R, n_segments]``, True on each row's first ``lengths[r]`` segments; None when every row is whole."""
    if bool((lengths >= n_segments).all()):
        return None
    return (torch.arange(n_segments)[None, :] < lengths[:, None]).to(device)


def forward_by_length(model: nn.Module, features: list[torch.Tensor] | CellFeatures, lengths: torch.Tensor):
    """``model`` on rows padded past their lengths (short videos that are not stretched, ``SegmentData``):
    the rows of one length at a time, cut to that length, so no model ever sees a padded segment (attention,
    recurrences and convolutions stay exact without masks of their own). ``features[b]`` ``[R, L, D_b]`` (or a
    spatial run's ``CellFeatures``), ``lengths`` int64 ``[R]`` -> the model's output with ``h [R, L, d]``,
    ``scores [R, L]`` (and a spatial model's ``cell_scores [R, L, C]``), zeros past each row's length."""
    pooled = features.pooled if isinstance(features, CellFeatures) else features
    n_segments = pooled[0].shape[1]
    if bool((lengths >= n_segments).all()):
        return model(features)
    parts: dict[str, torch.Tensor] = {}
    for length in torch.unique(lengths).tolist():
        rows = torch.nonzero(lengths == length).flatten().to(pooled[0].device)
        cut = (features.take(rows, length) if isinstance(features, CellFeatures)
               else [x[rows, :length] for x in features])
        out = model(cut)
        for name in ("h", "scores", "cell_scores"):
            value = getattr(out, name, None)
            if value is None:
                continue
            if name not in parts:
                parts[name] = value.new_zeros(len(lengths), n_segments, *value.shape[2:])
            padded = nn.functional.pad(value, (0, 0) * (value.dim() - 2) + (0, n_segments - length))
            parts[name] = parts[name].index_put((rows,), padded)
    return SpatialOutput(**parts) if "cell_scores" in parts else ModelOutput(h=parts["h"], scores=parts["scores"])


def two_rate_adagrad(temporal: list[nn.Parameter], other: list[nn.Parameter],
                     config: RunConfig, cells: list[nn.Parameter] = ()) -> torch.optim.Optimizer:
    """method.md §6: Adagrad with weight decay, the temporal module at ``lr_temporal``, the rest at ``lr_other``;
    a spatial model's cell scorer (``cells``) at ``spatial.lr`` (method.md §12). An empty group (no temporal module:
    Table 4's "w/o TAM", Sultani's MLP; a global model's cells) is left out."""
    t = config.train
    groups = [{"params": temporal, "lr": t.lr_temporal}, {"params": other, "lr": t.lr_other},
              {"params": list(cells), "lr": config.spatial.lr}]
    return torch.optim.Adagrad([g for g in groups if g["params"]], weight_decay=t.weight_decay, eps=t.adagrad_eps)


def cell_parameters(model: nn.Module) -> list[nn.Parameter]:
    """A spatial model's cell scorer parameters (``SpatialMIL.cell_parameters``); none for any other model."""
    return model.cell_parameters() if isinstance(model, SpatialMIL) else []


@torch.no_grad()
def score_rows(model: VADModel, data: SegmentData, rows: np.ndarray, device: torch.device, precision: str,
               *, keep_h: bool = False, keep_cells: bool = False) -> tuple[torch.Tensor, ...]:
    """Eval-mode segment scores float32 ``[len(rows), n_segments]`` (and ``h`` ``[len(rows), n_segments, d]``;
    ``keep_cells``: also a spatial model's ``cell_scores`` ``[len(rows), n_segments, C]``), zeros past a short row's
    length."""
    scores, hs, cells = [], [], []
    for start in range(0, len(rows), SCORING_BATCH):
        chunk = rows[start:start + SCORING_BATCH]
        with autocast(device, precision):
            out = forward_by_length(model, data.batch(chunk, device), data.row_lengths(chunk))
        scores.append(out.scores.float().cpu())
        if keep_h:
            hs.append(out.h.float().cpu())
        if keep_cells:
            cells.append(out.cell_scores.float().cpu())
    return (torch.cat(scores), (torch.cat(hs) if keep_h else None)) + ((torch.cat(cells),) if keep_cells else ())


class ModelObjective:
    """What the objectives that train one network and nothing else share: the model is all there is to save,
    and it names its own temporal parameters (``temporal_parameters`` / ``other_parameters``)."""

    def __init__(self, model: nn.Module, data: SegmentData, config: RunConfig, device: torch.device,
                 precision: str):
        self.model, self.data, self.config, self.device, self.precision = model, data, config, device, precision

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizer(self) -> torch.optim.Optimizer:
        return two_rate_adagrad(self.model.temporal_parameters(), self.model.other_parameters(), self.config,
                                cell_parameters(self.model))


class TeacherObjective(ModelObjective):
    """MIL ranking loss on segment scores (method.md §3). Also trains a single-backbone model with MIL alone."""

    def loss(self, anomalous: np.ndarray, normal: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        rows = np.concatenate([anomalous, normal])
        lengths = self.data.row_lengths(rows)
        with autocast(self.device, self.precision):
            scores = forward_by_length(self.model, self.data.batch(rows, self.device), lengths).scores
        mask = padding_mask(lengths, scores.shape[1], scores.device)
        na = len(anomalous)
        m = self.config.mil
        loss = mil_ranking_loss(scores[:na], scores[na:], pairing=m.pairing, smoothness=m.smoothness,
                                sparsity=m.sparsity, mask_anomalous=None if mask is None else mask[:na],
                                mask_normal=None if mask is None else mask[na:], topk=m.topk)
        return loss, {"mil": float(loss.detach())}

    @torch.no_grad()
    def validate(self, rows: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        """Segment scores of ``rows`` and ``{"loss"}``, the MIL loss of all their (anomalous, normal) pairs."""
        scores, _ = score_rows(self.model, self.data, rows, self.device, self.precision)
        labels = self.data.labels[rows]
        mask = padding_mask(self.data.row_lengths(rows), scores.shape[1], scores.device)
        mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
        m = self.config.mil
        a, n = labels == 1, labels == 0
        loss = (float(mil_ranking_loss(scores[a], scores[n], pairing="all-pairs", smoothness=m.smoothness,
                                       sparsity=m.sparsity, mask_anomalous=mask[a], mask_normal=mask[n],
                                       topk=m.topk))
                if a.any() and n.any() else float("nan"))
        return scores, {"loss": loss}


@dataclass
class TeacherTargets:
    """A frozen teacher's outputs on every row of a training set: scores ``[S, n_segments]``, representation
    ``h`` ``[S, n_segments, d]`` and, for a spatial teacher, ``cell_scores`` ``[S, n_segments, C]`` on its ``grid``.
    Eval mode and no gradients, so they are the same for every seed: computed once."""

    scores: torch.Tensor
    h: torch.Tensor
    cell_scores: torch.Tensor | None = None
    grid: tuple[int, int] = (1, 1)


def teacher_targets(teacher: VADModel, data: SegmentData, device: torch.device, precision: str) -> TeacherTargets:
    """Run the frozen teacher over every row of ``data`` (the teacher's backbones, same rows as the student's)."""
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    spatial = data.cells is not None
    scores, h, *cells = score_rows(teacher, data, np.arange(len(data)), device, precision, keep_h=True,
                                   keep_cells=spatial)
    return TeacherTargets(scores, h, cells[0] if cells else None, data.grid)


def cell_map_l1(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean ``|student - teacher|`` of cell scores ``[R, n_segments, C]`` over every real segment's cells (float32)."""
    mask = padding_mask(lengths, student.shape[1], student.device)
    error = (student.float() - teacher.float()).abs().mean(-1)  # [R, n_segments]
    return error.mean() if mask is None else error[mask].mean()


class StudentObjective:
    """Bi-level distillation from a frozen teacher (method.md §5).

    The teacher's outputs are looked up per batch (``TeacherTargets``, with the pseudo-labels and InfoNCE segment
    labels derived from them here), which makes a student epoch cost about as much as a single-backbone MIL epoch.
    """

    def __init__(self, model: VADModel, data: SegmentData, config: RunConfig, device: torch.device,
                 precision: str, targets: TeacherTargets):
        self.model, self.data, self.config, self.device, self.precision = model, data, config, device, precision
        d = config.distill
        lengths = data.row_lengths(np.arange(len(data)))
        pseudo_labels = refine_pseudo_labels(targets.scores, data.labels, e=d.smoothing_e, flat_eps=d.flat_eps,
                                             min_max=d.min_max, lengths=lengths)
        anomalous_segments = teacher_segment_labels(targets.scores, data.labels, delta=d.delta,
                                                    mask=padding_mask(lengths, targets.scores.shape[1], "cpu"))
        # Kept where the batches are made (on a GPU: about 0.1 GiB for UCF-Crime).
        self.teacher_h, self.pseudo_labels, self.anomalous_segments = (
            t.to(device) for t in (targets.h, pseudo_labels, anomalous_segments))
        self.head_teacher = ContrastiveHead(targets.h.shape[-1], d.head_hidden, d.head_dim).to(device)
        self.head_student = ContrastiveHead(config.model.d_model, d.head_hidden, d.head_dim).to(device)
        # Map distillation (method.md §12): when the teacher and the student score cells of one grid, the student's
        # cell scores also follow the teacher's (L1 over every real segment's cells, weight spatial.map_weight).
        same_grid = (targets.cell_scores is not None and data.cells is not None and targets.grid == data.grid
                     and config.spatial.map_weight > 0)
        self.teacher_cells = targets.cell_scores.to(device) if same_grid else None

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "head_teacher": self.head_teacher, "head_student": self.head_student}

    def optimizer(self) -> torch.optim.Optimizer:
        heads = list(self.head_teacher.parameters()) + list(self.head_student.parameters())
        return two_rate_adagrad(self.model.temporal_parameters(), self.model.other_parameters() + heads, self.config,
                                cell_parameters(self.model))

    def _loss(self, rows: np.ndarray) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        take = lambda x: x.index_select(0, index.to(x.device)).to(self.device)  # noqa: E731
        lengths = self.data.row_lengths(rows)
        with autocast(self.device, self.precision):
            out = forward_by_length(self.model, self.data.batch(rows, self.device), lengths)
            z_teacher = self.head_teacher(take(self.teacher_h))
            z_student = self.head_student(out.h)
        d = self.config.distill
        loss, parts = distillation_loss(out.scores, take(self.pseudo_labels), z_teacher.flatten(0, 1),
                                        z_student.flatten(0, 1), take(self.anomalous_segments).flatten(),
                                        alpha=d.alpha, tau=d.tau, bce_weight=d.bce_weight,
                                        mask=padding_mask(lengths, out.scores.shape[1], out.scores.device))
        if self.teacher_cells is not None:
            map_loss = cell_map_l1(out.cell_scores, take(self.teacher_cells), lengths)
            loss = loss + self.config.spatial.map_weight * map_loss
            parts = {**parts, "map": float(map_loss.detach()), "total": float(loss.detach())}
        return loss, parts, out.scores

    def loss(self, anomalous: np.ndarray, normal: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts, _ = self._loss(np.concatenate([anomalous, normal]))
        return loss, parts

    @torch.no_grad()
    def validate(self, rows: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        """Segment scores and ``{"loss", "bce", "nce"}`` (row-weighted means over chunks; ``nce`` unscaled): the
        BCE term is a small share of the total at the paper's alpha tau^2 = 750, so it is logged on its own."""
        scores, sums = [], {}
        for start in range(0, len(rows), SCORING_BATCH):
            chunk = rows[start:start + SCORING_BATCH]
            loss, parts, s = self._loss(chunk)
            scores.append(s.float().cpu())
            for name, value in {"loss": float(loss), "bce": parts["bce"], "nce": parts["nce"]}.items():
                sums[name] = sums.get(name, 0.0) + value * len(chunk)
        return torch.cat(scores), {name: total / max(len(rows), 1) for name, total in sums.items()}


class LANetObjective(ModelObjective):
    """LA-Net with Discriminative Dynamics Learning (method.md §8) on the pooled segments: top-k BCE against the
    video label, plus the dynamics ranking and alignment losses. The feature dynamics are those of the input
    features (all backbones concatenated), so the alignment moves the scores, not the features."""

    def _loss(self, rows: np.ndarray, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        features = self.data.batch(rows, self.device)
        lengths = self.data.row_lengths(rows)
        if scores is None:
            with autocast(self.device, self.precision):
                scores = forward_by_length(self.model, features, lengths).scores
        d = self.config.ddl
        labels = self.data.labels[rows].to(self.device)
        if isinstance(features, CellFeatures):  # a spatial run: the dynamics of the global features (cells' mean)
            features = features.pooled
        return lanet_loss(scores, torch.cat(features, dim=-1), labels,
                          topk=topk_count(scores.shape[1], d.topk_divisor), k_dynamics=d.k_dynamics,
                          margin=d.margin, rank_weight=d.rank_weight, align_weight=d.align_weight,
                          lengths=lengths, topk_divisor=d.topk_divisor)

    def loss(self, anomalous: np.ndarray, normal: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        return self._loss(np.concatenate([anomalous, normal]))

    @torch.no_grad()
    def validate(self, rows: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        scores, _ = score_rows(self.model, self.data, rows, self.device, self.precision)
        loss, parts = self._loss(rows, scores.to(self.device))
        return scores, {"loss": float(loss), **{k: v for k, v in parts.items() if k != "total"}}
