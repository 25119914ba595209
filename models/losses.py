"""Losses of the Teacher (MIL ranking, method.md §3) and of the bi-level distillation (method.md §5).

Every function computes in float32 with autocast disabled, so calling it inside ``torch.autocast`` is safe
(``F.binary_cross_entropy`` refuses half precision and the logsumexp of InfoNCE wants the range).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

MIL_PAIRINGS = ("one-to-one", "all-pairs")
MIL_PAIRING = "one-to-one"
MIL_SMOOTHNESS = 8e-5  # Sultani et al.'s lambda_1
MIL_SPARSITY = 8e-5  # Sultani et al.'s lambda_2
MIL_MARGIN = 1.0
# The bag score: the mean of its k highest segment scores. Sultani's loss is k = 1 (the max), the functions' default;
# k = 3 is RTFM's top-k, the project's config default because anomalies on real footage span several segments
# (UCSD Ped1, README).
SULTANI_TOPK = 1
MIL_TOPK = 3
MOVING_AVERAGE_E = 2  # half-window; the paper leaves it open (method.md §5)
FLAT_EPS = 1e-6
TEACHER_DELTA = 0.9
DISTILL_ALPHA = 7.5
DISTILL_TAU = 10.0
DISTILL_BCE_WEIGHT = 1.0  # weight of the prediction-level term; 0 is Table 4's "w/o L_bce"
COSINE_EPS = 1e-8  # as F.cosine_similarity's


def _float32(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast for ``device`` so the body runs in the precision of its (float32) inputs."""
    return torch.autocast(device_type=device.type, enabled=False)


def _anomalous_rows(video_labels: Tensor, n: int) -> Tensor:
    """Video labels ``[N]`` (bool, or 1 anomalous / 0 normal) -> bool ``[N]``."""
    if video_labels.shape != (n,):
        raise ValueError(f"video_labels must have shape [{n}], got {tuple(video_labels.shape)}")
    return video_labels != 0


def _valid(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Bool ``[N, L]``: which segments of ``scores`` are real (``mask``), all of them when ``mask`` is None."""
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match scores {tuple(scores.shape)}")
    return mask.bool()


def bag_scores(scores: Tensor, mask: Tensor | None = None, k: int = SULTANI_TOPK) -> Tensor:
    """The mean of the ``k`` highest real segment scores of each row, ``[N, L] -> [N]`` (``k = 1``: the max; a row
    with fewer than ``k`` real segments averages all of them). ``mask`` bool ``[N, L]``, None: all real."""
    if k < 1:
        raise ValueError(f"the MIL top-k must be at least 1, got {k}")
    valid = _valid(scores, mask)
    k = min(k, scores.shape[1])
    if k == 1:
        return scores.masked_fill(~valid, float("-inf")).max(dim=1).values
    top = scores.masked_fill(~valid, float("-inf")).topk(k, dim=1).values  # [N, k], -inf past a short row
    real = torch.isfinite(top)
    return torch.where(real, top, torch.zeros_like(top)).sum(dim=1) / real.sum(dim=1)


def mil_ranking_loss(
    scores_anomalous: Tensor,
    scores_normal: Tensor,
    *,
    pairing: str = MIL_PAIRING,
    smoothness: float = MIL_SMOOTHNESS,
    sparsity: float = MIL_SPARSITY,
    mask_anomalous: Tensor | None = None,
    mask_normal: Tensor | None = None,
    topk: int = SULTANI_TOPK,
) -> Tensor:
    """Sultani et al.'s MIL ranking loss, a scalar.

    ``scores_anomalous`` ``[Na, L]``, ``scores_normal`` ``[Nn, L]``: segment scores in (0, 1). Per pair (a, n):
    ``max(0, 1 - max_i s_a[i] + max_i s_n[i]) + smoothness * sum_i (s_a[i] - s_a[i+1])^2 + sparsity * sum_i s_a[i]``,
    averaged over the pairs. ``topk > 1`` replaces each max by the mean of the bag's ``topk`` highest scores
    (:func:`bag_scores`, RTFM's top-k ranking). ``pairing``: ``"one-to-one"`` pairs a_i with n_i for i < min(Na, Nn);
    ``"all-pairs"`` (Sultani's original) uses every (a, n). ``mask_anomalous`` / ``mask_normal`` (bool, same
    shapes; None: every segment is real) mark the real segments of rows padded to ``L``: the max, the sums and
    the neighbour differences run over real segments only.
    """
    if pairing not in MIL_PAIRINGS:
        raise ValueError(f"unknown MIL pairing {pairing!r}; expected one of {MIL_PAIRINGS}")
    if scores_anomalous.dim() != 2 or scores_normal.dim() != 2:
        raise ValueError("MIL scores must be [N, L] tensors")
    with _float32(scores_anomalous.device):
        s_a = scores_anomalous.float()
        s_n = scores_normal.float()
        m_a, m_n = _valid(s_a, mask_anomalous), _valid(s_n, mask_normal)
        if pairing == "one-to-one":
            n_pairs = min(len(s_a), len(s_n))
            s_a, s_n, m_a, m_n = s_a[:n_pairs], s_n[:n_pairs], m_a[:n_pairs], m_n[:n_pairs]
        if len(s_a) == 0 or len(s_n) == 0:
            raise ValueError("the MIL ranking loss needs at least one anomalous and one normal video")
        max_a = bag_scores(s_a, m_a, topk)  # [Na]
        max_n = bag_scores(s_n, m_n, topk)  # [Nn]
        # Regularisers depend on the anomalous bag only; under all-pairs every bag appears Nn times, so their
        # mean over pairs equals their mean over anomalous bags.
        neighbours = m_a[:, 1:] & m_a[:, :-1]
        regulariser = (smoothness * ((s_a[:, 1:] - s_a[:, :-1]).pow(2) * neighbours).sum(dim=1)
                       + sparsity * (s_a * m_a).sum(dim=1))
        if pairing == "one-to-one":
            hinge = F.relu(MIL_MARGIN - max_a + max_n)
        else:
            hinge = F.relu(MIL_MARGIN - max_a[:, None] + max_n[None, :])
        return hinge.mean() + regulariser.mean()


def moving_average(scores: Tensor, e: int) -> Tensor:
    """Centred moving average ``[N, L] -> [N, L]`` over a window of ``2e + 1``, replicate padding at both ends.

    ``e = 0`` returns the scores unchanged (as float32).
    """
    if e < 0:
        raise ValueError(f"the moving-average half-window e must be >= 0, got {e}")
    if scores.dim() != 2:
        raise ValueError(f"scores must be [N, L], got {tuple(scores.shape)}")
    with _float32(scores.device):
        x = scores.float()
        if e == 0:
            return x.clone()
        # Repeating the edge values (rather than zero-padding) keeps a high score at a video's end from being
        # diluted by segments that do not exist.
        padded = torch.cat([x[:, :1].expand(-1, e), x, x[:, -1:].expand(-1, e)], dim=1)
        return padded.unfold(1, 2 * e + 1, 1).mean(dim=-1)


def refine_pseudo_labels(
    teacher_scores: Tensor, video_labels: Tensor, *, e: int = MOVING_AVERAGE_E, flat_eps: float = FLAT_EPS,
    min_max: bool = True, lengths: Tensor | None = None,
) -> Tensor:
    """Soft pseudo-labels ``y_hat`` ``[N, L]`` from the Teacher's segment scores ``[N, L]`` (method.md §5).

    Anomalous rows (``video_labels`` ``[N]``, 1 anomalous / 0 normal): moving average, then min-max normalised
    over the row; a row whose smoothed range is below ``flat_eps`` keeps its smoothed scores (nothing to
    stretch). Normal rows: all zeros. The labels are targets, so they are detached.
    Table 4's ablations: ``e = 0`` is "w/o moving average", ``min_max=False`` "w/o min-max normalisation".
    ``lengths`` (int ``[N]``; None: every row is whole): a row of length ``l < L`` is refined over its first ``l``
    segments alone (its own ends padded, its own min and max), the rest is 0.
    """
    if lengths is not None and bool((lengths < teacher_scores.shape[1]).any()):
        out = torch.zeros_like(teacher_scores, dtype=torch.float32)
        for length in torch.unique(lengths).tolist():
            rows = torch.nonzero(lengths == length).flatten().to(teacher_scores.device)
            out[rows, :length] = refine_pseudo_labels(teacher_scores[rows, :length], video_labels[rows], e=e,
                                                      flat_eps=flat_eps, min_max=min_max)
        return out
    with _float32(teacher_scores.device):
        smoothed = moving_average(teacher_scores.detach(), e)
        anomalous = _anomalous_rows(video_labels, len(smoothed))
        if not min_max:
            return torch.where(anomalous[:, None], smoothed, torch.zeros_like(smoothed))
        low = smoothed.min(dim=1, keepdim=True).values
        spread = smoothed.max(dim=1, keepdim=True).values - low
        # clamp_min keeps the unused branch of torch.where finite on flat rows.
        normalised = (smoothed - low) / spread.clamp_min(flat_eps)
        refined = torch.where(spread < flat_eps, smoothed, normalised)
        return torch.where(anomalous[:, None], refined, torch.zeros_like(refined))


def teacher_segment_labels(teacher_scores: Tensor, video_labels: Tensor, *, delta: float = TEACHER_DELTA,
                           mask: Tensor | None = None) -> Tensor:
    """Bool ``[N, L]``: a segment is anomalous iff its raw Teacher score is ``>= delta`` and its video is anomalous
    (and it is real, when a ``mask`` of the real segments is given)."""
    anomalous = _anomalous_rows(video_labels, len(teacher_scores))
    return (teacher_scores.detach().float() >= delta) & anomalous[:, None] & _valid(teacher_scores, mask)


def info_nce(z_teacher: Tensor, z_student: Tensor, anomalous: Tensor, *, tau: float) -> Tensor:
    """Cross-model InfoNCE of the feature-level distillation (paper eq. 7), a scalar.

    ``z_teacher``, ``z_student``: ``[M, p]`` (the batch's segments flattened; ``[..., p]`` is flattened too);
    ``anomalous``: bool ``[M]`` (or ``[...]``). For an anchor i the positive is ``(zT_i, zS_i)`` and the negatives
    are ``(zT_i, zS_k)`` for every k of the other class; the loss is the mean over all anchors of
    ``-log(e^{sim_ii/tau} / (e^{sim_ii/tau} + sum_k e^{sim_ik/tau}))`` with cosine similarity. When either class
    is empty there are no negatives: the result is 0, still attached to the graph (zero gradients).
    """
    if z_teacher.shape != z_student.shape:
        raise ValueError(
            f"teacher and student features differ in shape: {tuple(z_teacher.shape)} vs {tuple(z_student.shape)}"
        )
    with _float32(z_teacher.device):
        zt = z_teacher.float().reshape(-1, z_teacher.shape[-1])
        zs = z_student.float().reshape(-1, z_student.shape[-1])
        is_anomalous = anomalous.reshape(-1).bool()
        if len(is_anomalous) != len(zt):
            raise ValueError(f"{len(is_anomalous)} segment labels for {len(zt)} feature vectors")
        n_anomalous = int(is_anomalous.sum())
        if n_anomalous == 0 or n_anomalous == len(is_anomalous):
            return zt.sum() * 0.0 + zs.sum() * 0.0
        zt = zt / zt.norm(dim=1, keepdim=True).clamp_min(COSINE_EPS)
        zs = zs / zs.norm(dim=1, keepdim=True).clamp_min(COSINE_EPS)
        logits = (zt @ zs.T) / tau  # [M, M]: teacher anchor i against student feature k
        positive = logits.diagonal()
        # Column k enters row i's denominator iff it is the positive or a student feature of the other class.
        other_class = is_anomalous[:, None] != is_anomalous[None, :]
        keep = other_class | torch.eye(len(zt), dtype=torch.bool, device=zt.device)
        denominator = torch.logsumexp(logits.masked_fill(~keep, float("-inf")), dim=1)
        return (denominator - positive).mean()


def distillation_loss(
    student_scores: Tensor,
    pseudo_labels: Tensor,
    z_teacher: Tensor,
    z_student: Tensor,
    anomalous: Tensor,
    *,
    alpha: float = DISTILL_ALPHA,
    tau: float = DISTILL_TAU,
    bce_weight: float = DISTILL_BCE_WEIGHT,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """``L_d = bce_weight * BCE(student_scores, pseudo_labels) + alpha * tau^2 * info_nce(z_teacher, z_student,
    anomalous)``; ``bce_weight`` is 1 in the paper (0 and ``alpha = 0`` are Table 4's two ablations).

    ``student_scores``, ``pseudo_labels``: ``[N, L]`` (BCE is the mean over all segments); the InfoNCE inputs as
    in :func:`info_nce`, ``z`` ``[N * L, p]``, ``anomalous`` ``[N * L]``. ``mask`` (bool ``[N, L]``; None: all real)
    keeps padded segments out of both terms. Returns the loss tensor and ``{"bce", "nce", "total"}`` as Python
    floats (``nce`` is the unscaled InfoNCE).
    """
    if student_scores.shape != pseudo_labels.shape:
        raise ValueError(
            f"student scores {tuple(student_scores.shape)} and pseudo-labels {tuple(pseudo_labels.shape)} differ"
        )
    with _float32(student_scores.device):
        if mask is not None:
            real = _valid(student_scores, mask)
            student_scores, pseudo_labels = student_scores[real], pseudo_labels[real]
            keep = real.flatten()
            z_teacher, z_student, anomalous = z_teacher[keep], z_student[keep], anomalous.reshape(-1)[keep]
        bce = F.binary_cross_entropy(student_scores.float(), pseudo_labels.float())
        nce = info_nce(z_teacher, z_student, anomalous, tau=tau)
        total = bce_weight * bce + alpha * tau**2 * nce
    parts = {"bce": bce.item(), "nce": nce.item(), "total": total.item()}
    return total, parts
