"""Discriminative Dynamics Learning (Pu & Wu) and LA-Net's base loss (method.md §8).

Dynamics are first differences along time. For a bag (video) of ``L`` snippet scores ``s`` and features ``f``:

    score dynamics    ds[i] = s[i+1] - s[i]                 [L - 1]
    feature dynamics  df[i] = ||f[i+1] - f[i]||_2           [L - 1]

- dynamics ranking loss: the top-k mean of ``|ds|`` of an anomalous bag should exceed a normal bag's by a margin;
- dynamics alignment loss: ``1 - cosine(df, |ds|)`` within each bag (the scores should change where the
  features change);
- base loss: BCE of the top-k mean score (``k = L // 16 + 1``) against the video label.

The paper's constants are not available; the defaults below are the project's (method.md §8). Every function
computes in float32 with autocast disabled, so calling it inside ``torch.autocast`` is safe.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

DDL_TOPK = 3  # score-dynamics magnitudes averaged per bag in the ranking loss
DDL_MARGIN = 1.0
# The two DDL weights are the project's (the paper's are unavailable). With the margin-1 hinge, which sigmoid
# scores can never satisfy, the ranking term is a constant push; at weight 1 it outweighed the top-k BCE early in
# training and, with the alignment term, inverted the scores of a 2-epoch run on the synthetic features (test AUC
# 0.12). At 0.1 each the same runs gave 0.91 after 2 epochs and 0.95 after 10 (BCE alone: 0.88, 0.95).
RANK_WEIGHT = 0.1
ALIGN_WEIGHT = 0.1
TOPK_DIVISOR = 16  # base loss: k = L // 16 + 1 (method.md §8)
COSINE_EPS = 1e-8  # as F.cosine_similarity's


def _float32(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast for ``device`` so the body runs in the precision of its (float32) inputs."""
    return torch.autocast(device_type=device.type, enabled=False)


def _check_scores(scores: Tensor, name: str = "scores") -> None:
    if scores.dim() != 2:
        raise ValueError(f"{name} must be [N, L], got {tuple(scores.shape)}")


def _zero(*tensors: Tensor) -> Tensor:
    """A float32 scalar 0 attached to the inputs' graphs (zero gradients), so ``backward()`` still works."""
    return sum((t.float().sum() * 0.0 for t in tensors), torch.zeros((), device=tensors[0].device))


def topk_count(length: int, divisor: int = TOPK_DIVISOR) -> int:
    """``k = length // divisor + 1``, capped at ``length`` (32 segments -> 3; a 7000-snippet video -> 438)."""
    if length < 1:
        raise ValueError(f"the sequence length must be >= 1, got {length}")
    if divisor < 1:
        raise ValueError(f"the top-k divisor must be >= 1, got {divisor}")
    return min(length // divisor + 1, length)


def topk_mean(scores: Tensor, k: int) -> Tensor:
    """Mean of the ``k`` largest scores of each row: ``[N, L] -> [N]`` (float32), ``1 <= k <= L``."""
    _check_scores(scores)
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"top-k needs 1 <= k <= L = {scores.shape[1]}, got k = {k}")
    with _float32(scores.device):
        return scores.float().topk(k, dim=1).values.mean(dim=1)


def topk_bce_loss(scores: Tensor, labels: Tensor, k: int | None = None) -> Tensor:
    """LA-Net's base loss, a scalar: ``BCE(topk_mean(scores, k), labels)`` averaged over the ``N`` videos.

    ``scores`` ``[N, L]`` in (0, 1); ``labels`` ``[N]`` video labels (bool, or 1 anomalous / 0 normal);
    ``k`` defaults to ``topk_count(L)``.
    """
    _check_scores(scores)
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels must have shape [{scores.shape[0]}], got {tuple(labels.shape)}")
    if k is None:
        k = topk_count(scores.shape[1])
    with _float32(scores.device):
        return F.binary_cross_entropy(topk_mean(scores, k), (labels != 0).float().to(scores.device))


def score_dynamics(scores: Tensor) -> Tensor:
    """``ds[:, i] = s[:, i+1] - s[:, i]``: ``[N, L] -> [N, L - 1]`` (float32; ``[N, 0]`` when ``L = 1``)."""
    _check_scores(scores)
    with _float32(scores.device):
        s = scores.float()
        return s[:, 1:] - s[:, :-1]


def feature_dynamics(features: Tensor) -> Tensor:
    """``df[:, i] = ||f[:, i+1] - f[:, i]||_2``: ``[N, L, D] -> [N, L - 1]`` (float32)."""
    if features.dim() != 3:
        raise ValueError(f"features must be [N, L, D], got {tuple(features.shape)}")
    with _float32(features.device):
        f = features.float()
        # vector_norm's gradient at a zero difference is 0 (not NaN), so static stretches are safe.
        return torch.linalg.vector_norm(f[:, 1:] - f[:, :-1], dim=-1)


def dynamics_ranking_loss(
    scores_anomalous: Tensor, scores_normal: Tensor, *, k: int = DDL_TOPK, margin: float = DDL_MARGIN
) -> Tensor:
    """Dynamics ranking loss, a scalar.

    ``scores_anomalous`` ``[Na, L]``, ``scores_normal`` ``[Nn, L]``. Per bag ``m`` = mean of the ``k`` largest
    ``|ds|`` (``k`` capped at ``L - 1``); the loss is ``max(0, margin - m_a + m_n)`` averaged over all ``Na * Nn``
    pairs. When ``L < 2`` (no dynamics) or a side is empty it is 0, still attached to the inputs' graphs.

    With scores in (0, 1) every ``|ds| < 1``, so at the default margin 1 the hinge never clips: the loss is then
    ``1 - mean(m_a) + mean(m_n)``, a constant push apart.
    """
    _check_scores(scores_anomalous, "scores_anomalous")
    _check_scores(scores_normal, "scores_normal")
    if scores_anomalous.shape[1] != scores_normal.shape[1]:
        raise ValueError(
            f"anomalous and normal bags differ in length: {scores_anomalous.shape[1]} vs {scores_normal.shape[1]}"
        )
    if k < 1:
        raise ValueError(f"the dynamics top-k must be >= 1, got {k}")
    length = scores_anomalous.shape[1]
    with _float32(scores_anomalous.device):
        if length < 2 or len(scores_anomalous) == 0 or len(scores_normal) == 0:
            return _zero(scores_anomalous, scores_normal)
        k = min(k, length - 1)
        m_a = topk_mean(score_dynamics(scores_anomalous).abs(), k)  # [Na]
        m_n = topk_mean(score_dynamics(scores_normal).abs(), k)  # [Nn]
        return F.relu(margin - m_a[:, None] + m_n[None, :]).mean()


def dynamics_alignment_loss(features: Tensor, scores: Tensor, *, eps: float = COSINE_EPS) -> Tensor:
    """Dynamics alignment loss, a scalar: the mean over bags of ``1 - cosine(df, |ds|)``.

    ``features`` ``[N, L, D]``, ``scores`` ``[N, L]``. The cosine is scale-invariant, so this aligns the
    normalised feature-dynamics and score-dynamics sequences; each norm is clamped at ``eps`` (as
    ``F.cosine_similarity``), so a bag with no feature or no score change has cosine 0. 0 when ``L < 2``.
    ``features`` are used as given (not detached here): pass the model's input features, detached, as
    ``lanet_loss`` expects; gradients then reach the scores only.
    """
    _check_scores(scores)
    if features.dim() != 3 or features.shape[:2] != scores.shape:
        raise ValueError(
            f"features must be [N, L, D] with N, L of scores {tuple(scores.shape)}, got {tuple(features.shape)}"
        )
    with _float32(scores.device):
        if scores.shape[1] < 2 or scores.shape[0] == 0:
            return _zero(features, scores)
        return _alignment_per_bag(features, scores, eps).mean()


def lanet_loss(
    scores: Tensor,
    features: Tensor,
    labels: Tensor,
    *,
    topk: int | None = None,
    k_dynamics: int = DDL_TOPK,
    margin: float = DDL_MARGIN,
    rank_weight: float = RANK_WEIGHT,
    align_weight: float = ALIGN_WEIGHT,
    lengths: Tensor | None = None,
    topk_divisor: int = TOPK_DIVISOR,
) -> tuple[Tensor, dict[str, float]]:
    """``topk_bce + rank_weight * ranking(anomalous, normal) + align_weight * alignment(features, scores)``.

    ``scores`` ``[N, L]`` (the model's), ``features`` ``[N, L, D]`` (its input features, detached; with several
    backbones their concatenation along D), ``labels`` ``[N]`` (1 anomalous / 0 normal). The ranking loss pairs
    every anomalous row with every normal row of the batch. ``lengths`` (int ``[N]``; None: every row is whole):
    rows padded past their length, whose terms are then computed over their first ``lengths[i]`` segments, with
    ``k = lengths[i] // topk_divisor + 1`` (``topk`` is for whole rows). Returns the loss tensor and
    ``{"bce", "rank", "align", "total"}`` as Python floats (the parts unweighted).
    """
    _check_scores(scores)
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels must have shape [{scores.shape[0]}], got {tuple(labels.shape)}")
    if lengths is not None and bool((lengths < scores.shape[1]).any()):
        return _lanet_loss_by_length(scores, features, labels, lengths, topk_divisor=topk_divisor,
                                     k_dynamics=k_dynamics, margin=margin, rank_weight=rank_weight,
                                     align_weight=align_weight)
    with _float32(scores.device):
        anomalous = (labels != 0).to(scores.device)
        bce = topk_bce_loss(scores, labels, topk if topk is not None else topk_count(scores.shape[1], topk_divisor))
        rank = dynamics_ranking_loss(scores[anomalous], scores[~anomalous], k=k_dynamics, margin=margin)
        align = dynamics_alignment_loss(features, scores)
        total = bce + rank_weight * rank + align_weight * align
    parts = {"bce": bce.item(), "rank": rank.item(), "align": align.item(), "total": total.item()}
    return total, parts


def _lanet_loss_by_length(scores: Tensor, features: Tensor, labels: Tensor, lengths: Tensor, *, topk_divisor: int,
                          k_dynamics: int, margin: float, rank_weight: float,
                          align_weight: float) -> tuple[Tensor, dict[str, float]]:
    """:func:`lanet_loss` of rows of several lengths: each row's top-k mean, dynamics magnitude and alignment over
    its own segments (rows of one length at a time), then the same three means as for whole rows."""
    with _float32(scores.device):
        n = scores.shape[0]
        top = torch.zeros(n, device=scores.device)
        dyn = torch.zeros(n, device=scores.device)
        align = torch.zeros(n, device=scores.device)
        has_dynamics = torch.zeros(n, dtype=torch.bool, device=scores.device)
        for length in torch.unique(lengths).tolist():
            rows = torch.nonzero(lengths == length).flatten().to(scores.device)
            s = scores[rows, :length].float()
            top[rows] = topk_mean(s, topk_count(length, topk_divisor))
            if length >= 2:
                dyn[rows] = topk_mean(score_dynamics(s).abs(), min(k_dynamics, length - 1))
                align[rows] = _alignment_per_bag(features[rows, :length], s)
                has_dynamics[rows] = True
        anomalous = (labels != 0).to(scores.device)
        bce = F.binary_cross_entropy(top, anomalous.float())
        a, nn_ = anomalous & has_dynamics, ~anomalous & has_dynamics
        rank = (F.relu(margin - dyn[a][:, None] + dyn[nn_][None, :]).mean() if a.any() and nn_.any()
                else _zero(scores))
        align_mean = align[has_dynamics].mean() if has_dynamics.any() else _zero(scores)
        total = bce + rank_weight * rank + align_weight * align_mean
    parts = {"bce": bce.item(), "rank": rank.item(), "align": align_mean.item(), "total": total.item()}
    return total, parts


def _alignment_per_bag(features: Tensor, scores: Tensor, eps: float = COSINE_EPS) -> Tensor:
    """``1 - cosine(df, |ds|)`` per bag: features ``[N, L, D]``, scores ``[N, L]`` (L >= 2) -> ``[N]``."""
    df = feature_dynamics(features)  # [N, L-1]
    ds = score_dynamics(scores).abs()  # [N, L-1]
    df = df / torch.linalg.vector_norm(df, dim=1, keepdim=True).clamp_min(eps)
    ds = ds / torch.linalg.vector_norm(ds, dim=1, keepdim=True).clamp_min(eps)
    return 1.0 - (df * ds).sum(dim=1)
