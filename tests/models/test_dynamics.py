"""Discriminative Dynamics Learning losses and LA-Net's top-k BCE against explicit loops (method.md §8)."""

from __future__ import annotations

import math

import pytest
import torch

from models.dynamics import (
    ALIGN_WEIGHT,
    DDL_MARGIN,
    DDL_TOPK,
    RANK_WEIGHT,
    TOPK_DIVISOR,
    dynamics_alignment_loss,
    dynamics_ranking_loss,
    feature_dynamics,
    lanet_loss,
    score_dynamics,
    topk_bce_loss,
    topk_count,
    topk_mean,
)


def rand_scores(n, length, seed):
    return torch.rand(n, length, generator=torch.Generator().manual_seed(seed)) * 0.98 + 0.01


def rand_features(n, length, dim, seed):
    return torch.randn(n, length, dim, generator=torch.Generator().manual_seed(seed))


# --- loop references ------------------------------------------------------------------------------------------


def loop_topk_mean(row, k):
    return sum(sorted(row, reverse=True)[:k]) / k


def loop_bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def loop_score_dynamics(row):
    return [row[i + 1] - row[i] for i in range(len(row) - 1)]


def loop_feature_dynamics(bag):  # bag: L x D nested lists
    return [math.sqrt(sum((bag[i + 1][d] - bag[i][d]) ** 2 for d in range(len(bag[i])))) for i in range(len(bag) - 1)]


def loop_dynamics_magnitude(row, k):
    mags = [abs(x) for x in loop_score_dynamics(row)]
    return loop_topk_mean(mags, min(k, len(mags)))


def loop_ranking(a_rows, n_rows, k, margin):
    total, count = 0.0, 0
    for a in a_rows:
        for n in n_rows:
            total += max(0.0, margin - loop_dynamics_magnitude(a, k) + loop_dynamics_magnitude(n, k))
            count += 1
    return total / count


def loop_cosine(x, y):
    dot = sum(p * q for p, q in zip(x, y))
    nx, ny = math.sqrt(sum(p * p for p in x)), math.sqrt(sum(q * q for q in y))
    return dot / (max(nx, 1e-8) * max(ny, 1e-8))


def loop_alignment(feature_bags, score_rows):
    losses = []
    for bag, row in zip(feature_bags, score_rows):
        df = loop_feature_dynamics(bag)
        ds = [abs(x) for x in loop_score_dynamics(row)]
        losses.append(1.0 - loop_cosine(df, ds))
    return sum(losses) / len(losses)


# --- defaults and top-k -------------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones():
    assert (DDL_TOPK, DDL_MARGIN, RANK_WEIGHT, ALIGN_WEIGHT, TOPK_DIVISOR) == (3, 1.0, 0.1, 0.1, 16)


@pytest.mark.parametrize(
    "length,divisor,expected",
    [(32, 16, 3), (1, 16, 1), (15, 16, 1), (16, 16, 2), (6750, 16, 422), (5, 1, 5), (5, 2, 3), (4, 2, 3)],
)
def test_topk_count(length, divisor, expected):
    assert topk_count(length, divisor) == expected


def test_topk_count_default_divisor_and_errors():
    assert topk_count(48) == 4
    with pytest.raises(ValueError, match="length"):
        topk_count(0)
    with pytest.raises(ValueError, match="divisor"):
        topk_count(10, 0)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_topk_mean_matches_sorting(k):
    s = rand_scores(4, 7, 0)
    expected = [loop_topk_mean(row, k) for row in s.tolist()]
    torch.testing.assert_close(topk_mean(s, k), torch.tensor(expected), rtol=0, atol=1e-6)


def test_topk_mean_hand_values_and_errors():
    s = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.4, 0.4, 0.0, 1.0]])
    torch.testing.assert_close(topk_mean(s, 2), torch.tensor([0.8, 0.7]))
    with pytest.raises(ValueError, match="k"):
        topk_mean(s, 0)
    with pytest.raises(ValueError, match="k"):
        topk_mean(s, 5)
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        topk_mean(s[0], 1)


def test_topk_bce_by_hand():
    s = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.4, 0.4, 0.2, 0.6]])
    labels = torch.tensor([1, 0])
    # k = 2: top-2 means 0.8 and 0.5.
    expected = (loop_bce(0.8, 1) + loop_bce(0.5, 0)) / 2
    assert topk_bce_loss(s, labels, 2).item() == pytest.approx(expected, rel=1e-6)
    # Default k = 4 // 16 + 1 = 1: the maxima 0.9 and 0.6.
    assert topk_bce_loss(s, labels.bool()).item() == pytest.approx((loop_bce(0.9, 1) + loop_bce(0.6, 0)) / 2, rel=1e-6)


def test_topk_bce_default_k_on_long_rows():
    s, labels = rand_scores(3, 40, 2), torch.tensor([0.0, 1.0, 1.0])
    k = 40 // 16 + 1
    expected = sum(loop_bce(loop_topk_mean(row, k), y) for row, y in zip(s.tolist(), labels.tolist())) / 3
    assert topk_bce_loss(s, labels).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        topk_bce_loss(s, labels[:2])


# --- dynamics -----------------------------------------------------------------------------------------------


def test_score_dynamics_matches_loops():
    s = rand_scores(3, 6, 3)
    expected = [loop_score_dynamics(row) for row in s.tolist()]
    torch.testing.assert_close(score_dynamics(s), torch.tensor(expected), rtol=0, atol=1e-6)
    torch.testing.assert_close(score_dynamics(torch.tensor([[0.2, 0.7, 0.1]])), torch.tensor([[0.5, -0.6]]))
    assert score_dynamics(s[:, :1]).shape == (3, 0)


def test_feature_dynamics_matches_loops():
    f = rand_features(2, 5, 4, 4)
    expected = [loop_feature_dynamics(bag) for bag in f.tolist()]
    torch.testing.assert_close(feature_dynamics(f), torch.tensor(expected), rtol=1e-6, atol=1e-6)
    # A 3-4-5 triangle by hand, and a static step.
    f = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]]])
    torch.testing.assert_close(feature_dynamics(f), torch.tensor([[5.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\[N, L, D\]"):
        feature_dynamics(f[0])


def test_static_features_have_finite_gradients():
    f = torch.zeros(1, 4, 3, requires_grad=True)
    feature_dynamics(f).sum().backward()
    assert torch.isfinite(f.grad).all()


# --- dynamics ranking -------------------------------------------------------------------------------------


def test_ranking_loss_by_hand_all_pairs_and_hinge_clipping():
    # |ds| per bag and their top-2 means (k = 2):
    #   a0 = [0.0, 0.9, 0.1, 0.3] -> [0.9, 0.8, 0.2] -> 0.85
    #   a1 = [0.5, 0.5, 0.6, 0.6] -> [0.0, 0.1, 0.0] -> 0.05
    #   n0 = [0.2, 0.3, 0.2, 0.2] -> [0.1, 0.1, 0.0] -> 0.10
    #   n1 = [0.1, 0.5, 0.1, 0.1] -> [0.4, 0.4, 0.0] -> 0.40
    a = torch.tensor([[0.0, 0.9, 0.1, 0.3], [0.5, 0.5, 0.6, 0.6]])
    n = torch.tensor([[0.2, 0.3, 0.2, 0.2], [0.1, 0.5, 0.1, 0.1]])
    # margin 0.5: (a0, n0) -> max(0, 0.5 - 0.85 + 0.10) = 0 (clipped), (a0, n1) -> 0.05,
    #             (a1, n0) -> 0.55, (a1, n1) -> 0.85; all four pairs averaged.
    loss = dynamics_ranking_loss(a, n, k=2, margin=0.5)
    assert loss.item() == pytest.approx((0.0 + 0.05 + 0.55 + 0.85) / 4, abs=1e-6)
    # One-to-one pairing would give (0 + 0.85) / 2: the all-pairs average is what is implemented.
    assert loss.item() != pytest.approx(0.425, abs=1e-3)
    # Without clipping (margin 1 and |ds| < 1) it is margin - mean(m_a) + mean(m_n).
    assert dynamics_ranking_loss(a, n, k=2).item() == pytest.approx(1.0 - 0.45 + 0.25, abs=1e-6)


@pytest.mark.parametrize("k,margin", [(1, 1.0), (3, 0.2), (10, 0.05)])
def test_ranking_loss_matches_loops(k, margin):
    a, n = rand_scores(3, 8, 5), rand_scores(4, 8, 6)
    expected = loop_ranking(a.tolist(), n.tolist(), k, margin)
    assert dynamics_ranking_loss(a, n, k=k, margin=margin).item() == pytest.approx(expected, abs=1e-6)


def test_ranking_k_is_capped_at_the_number_of_differences():
    a, n = torch.tensor([[0.1, 0.9, 0.2]]), torch.tensor([[0.3, 0.3, 0.4]])
    # L - 1 = 2 differences: m_a = (0.8 + 0.7) / 2, m_n = (0.0 + 0.1) / 2.
    assert dynamics_ranking_loss(a, n, k=3).item() == pytest.approx(1.0 - 0.75 + 0.05, abs=1e-6)


def test_ranking_loss_gradient_pushes_anomalous_dynamics_up():
    a = rand_scores(2, 6, 7).requires_grad_()
    n = rand_scores(2, 6, 8).requires_grad_()
    loss = dynamics_ranking_loss(a, n)
    loss.backward()
    a2 = (a - 0.01 * a.grad).detach()
    n2 = (n - 0.01 * n.grad).detach()
    assert dynamics_ranking_loss(a2, n2).item() < loss.item()


@pytest.mark.parametrize(
    "a,n",
    [
        (rand_scores(2, 1, 0), rand_scores(3, 1, 1)),  # L = 1: no dynamics
        (rand_scores(0, 5, 0), rand_scores(3, 5, 1)),  # no anomalous bag
        (rand_scores(2, 5, 0), rand_scores(0, 5, 1)),  # no normal bag
    ],
)
def test_ranking_loss_degenerate_cases_are_zero_and_differentiable(a, n):
    a, n = a.clone().requires_grad_(), n.clone().requires_grad_()
    loss = dynamics_ranking_loss(a, n)
    assert loss.item() == 0.0 and loss.requires_grad and loss.dtype == torch.float32
    loss.backward()
    assert torch.equal(a.grad, torch.zeros_like(a)) and torch.equal(n.grad, torch.zeros_like(n))


def test_ranking_loss_validates():
    with pytest.raises(ValueError, match="length"):
        dynamics_ranking_loss(rand_scores(2, 5, 0), rand_scores(2, 6, 1))
    with pytest.raises(ValueError, match="scores_normal"):
        dynamics_ranking_loss(rand_scores(2, 5, 0), torch.rand(5))
    with pytest.raises(ValueError, match="top-k"):
        dynamics_ranking_loss(rand_scores(2, 5, 0), rand_scores(2, 5, 1), k=0)


# --- dynamics alignment -----------------------------------------------------------------------------------


def test_perfectly_aligned_dynamics_give_zero():
    s = torch.tensor([[0.1, 0.4, 0.35, 0.9, 0.9, 0.2]])
    direction = torch.tensor([0.6, -0.8, 0.0])  # unit vector
    # f[i] = 7 s[i] * direction: ||f[i+1] - f[i]|| = 7 |s[i+1] - s[i]|, a positive multiple of |ds|.
    f = 7.0 * s[..., None] * direction
    assert dynamics_alignment_loss(f, s).item() == pytest.approx(0.0, abs=1e-6)


def test_alignment_by_hand():
    # Bag 0: df = [1, 0] (one move, then still), |ds| = [0.2, 0.2] -> cos = 0.2 / (1 * 0.2 sqrt 2) = 1 / sqrt 2.
    # Bag 1: df = [0, 2], |ds| = [0, 0.5] -> cos = 1.
    f = torch.tensor([[[0.0], [1.0], [1.0]], [[3.0], [3.0], [1.0]]])
    s = torch.tensor([[0.2, 0.4, 0.2], [0.5, 0.5, 1.0]])
    expected = ((1.0 - 1.0 / math.sqrt(2.0)) + 0.0) / 2
    assert dynamics_alignment_loss(f, s).item() == pytest.approx(expected, abs=1e-6)


def test_alignment_matches_loops():
    f, s = rand_features(3, 9, 5, 9), rand_scores(3, 9, 10)
    expected = loop_alignment(f.tolist(), s.tolist())
    assert dynamics_alignment_loss(f, s).item() == pytest.approx(expected, abs=1e-6)


def test_alignment_flat_bags_are_finite_and_short_bags_are_zero():
    # Static features (df = 0) and flat scores (ds = 0): cosine 0, loss 1, finite gradients.
    s = torch.full((2, 5), 0.5, requires_grad=True)
    f = torch.zeros(2, 5, 3)
    loss = dynamics_alignment_loss(f, s)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    s1 = torch.rand(2, 1, requires_grad=True)
    loss1 = dynamics_alignment_loss(torch.rand(2, 1, 3), s1)
    assert loss1.item() == 0.0 and loss1.requires_grad
    loss1.backward()


def test_alignment_gradient_reaches_scores_and_improves_alignment():
    f, s = rand_features(2, 8, 4, 11), rand_scores(2, 8, 12).requires_grad_()
    loss = dynamics_alignment_loss(f, s)
    loss.backward()
    assert s.grad.abs().sum() > 0
    assert dynamics_alignment_loss(f, (s - 0.01 * s.grad).detach()).item() < loss.item()


def test_alignment_validates_shapes():
    with pytest.raises(ValueError, match="features"):
        dynamics_alignment_loss(torch.rand(2, 6, 3), torch.rand(2, 5))
    with pytest.raises(ValueError, match="features"):
        dynamics_alignment_loss(torch.rand(2, 5), torch.rand(2, 5))


# --- combination --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rank_weight,align_weight,topk", [(1.0, 1.0, None), (0.3, 2.5, 2), (0.0, 0.0, None)])
def test_lanet_loss_combines_the_parts_with_their_weights(rank_weight, align_weight, topk):
    s, f = rand_scores(4, 10, 13), rand_features(4, 10, 6, 14)
    labels = torch.tensor([1, 0, 1, 0])
    rows = s.tolist()
    k = topk if topk is not None else 10 // 16 + 1
    bce = sum(loop_bce(loop_topk_mean(r, k), y) for r, y in zip(rows, labels.tolist())) / 4
    rank = loop_ranking([rows[0], rows[2]], [rows[1], rows[3]], 2, 0.7)
    align = loop_alignment(f.tolist(), rows)
    total, parts = lanet_loss(
        s, f, labels, topk=topk, k_dynamics=2, margin=0.7, rank_weight=rank_weight, align_weight=align_weight
    )
    assert parts["bce"] == pytest.approx(bce, abs=1e-6)
    assert parts["rank"] == pytest.approx(rank, abs=1e-6)
    assert parts["align"] == pytest.approx(align, abs=1e-6)
    assert parts["total"] == pytest.approx(bce + rank_weight * rank + align_weight * align, abs=1e-5)
    assert total.item() == pytest.approx(parts["total"], abs=1e-7)
    assert all(isinstance(v, float) for v in parts.values())
    assert set(parts) == {"bce", "rank", "align", "total"}


def test_lanet_loss_defaults_and_one_sided_batch():
    s = rand_scores(3, 32, 15).requires_grad_()
    f = rand_features(3, 32, 4, 16)
    total, parts = lanet_loss(s, f, torch.tensor([1, 1, 1]))  # no normal video: rank = 0
    assert parts["rank"] == 0.0
    expected = topk_bce_loss(s, torch.ones(3), 3) + ALIGN_WEIGHT * dynamics_alignment_loss(f, s)
    assert total.item() == pytest.approx(expected.item(), abs=1e-6)
    total.backward()
    assert torch.isfinite(s.grad).all()
    with pytest.raises(ValueError, match="labels"):
        lanet_loss(s, f, torch.tensor([1, 0]))


def test_everything_runs_in_float32_under_autocast():
    s, f = rand_scores(4, 12, 17), rand_features(4, 12, 5, 18)
    labels = torch.tensor([1, 0, 1, 0])
    reference, reference_parts = lanet_loss(s, f, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, parts = lanet_loss(s, f, labels)
        assert total.dtype == torch.float32
        assert lanet_loss(s.bfloat16(), f.bfloat16(), labels)[0].dtype == torch.float32
        assert score_dynamics(s.bfloat16()).dtype == torch.float32
        assert feature_dynamics(f.bfloat16()).dtype == torch.float32
        assert topk_mean(s.bfloat16(), 2).dtype == torch.float32
    assert torch.equal(total, reference) and parts == reference_parts
