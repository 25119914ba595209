"""MIL ranking loss and the bi-level distillation losses against explicit loops (method.md §3, §5)."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import (
    distillation_loss,
    info_nce,
    mil_ranking_loss,
    moving_average,
    refine_pseudo_labels,
    teacher_segment_labels,
)


def rand_scores(n, length, seed):
    return torch.rand(n, length, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.98 + 0.01


# --- MIL ranking ------------------------------------------------------------------------------------------


def loop_pair_loss(a, n, smoothness, sparsity):
    hinge = max(0.0, 1.0 - max(a) + max(n))
    smooth = sum((a[i] - a[i + 1]) ** 2 for i in range(len(a) - 1))
    return hinge + smoothness * smooth + sparsity * sum(a)


@pytest.mark.parametrize("pairing", ["one-to-one", "all-pairs"])
@pytest.mark.parametrize("smoothness,sparsity", [(8e-5, 8e-5), (0.3, 0.05)])
def test_mil_ranking_loss_matches_loops(pairing, smoothness, sparsity):
    s_a, s_n = rand_scores(4, 6, 0), rand_scores(3, 6, 1)
    a_rows, n_rows = s_a.tolist(), s_n.tolist()
    if pairing == "one-to-one":
        pairs = [(a_rows[i], n_rows[i]) for i in range(3)]
    else:
        pairs = [(a, n) for a in a_rows for n in n_rows]
    expected = sum(loop_pair_loss(a, n, smoothness, sparsity) for a, n in pairs) / len(pairs)
    got = mil_ranking_loss(s_a, s_n, pairing=pairing, smoothness=smoothness, sparsity=sparsity)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_mil_default_pairing_is_one_to_one_and_unknown_raises():
    s_a, s_n = rand_scores(4, 5, 2), rand_scores(3, 5, 3)
    assert mil_ranking_loss(s_a, s_n).item() == pytest.approx(mil_ranking_loss(s_a, s_n, pairing="one-to-one").item())
    assert mil_ranking_loss(s_a, s_n).item() != pytest.approx(mil_ranking_loss(s_a, s_n, pairing="all-pairs").item())
    with pytest.raises(ValueError):
        mil_ranking_loss(s_a, s_n, pairing="random")


def test_mil_pairings_agree_for_equal_bag_counts():
    # Scores in (0, 1) keep 1 - max s_a + max s_n > 0, so the hinge never clips and is linear in the maxima:
    # its mean over one-to-one pairs equals its mean over all pairs whenever Na == Nn.
    s_a, s_n = rand_scores(3, 5, 2), rand_scores(3, 5, 3)
    one = mil_ranking_loss(s_a, s_n, pairing="one-to-one", smoothness=0.1, sparsity=0.1)
    every = mil_ranking_loss(s_a, s_n, pairing="all-pairs", smoothness=0.1, sparsity=0.1)
    assert one.item() == pytest.approx(every.item(), rel=1e-6)


def test_mil_loss_is_float32_under_autocast_and_backprops():
    s_a = rand_scores(2, 4, 4).to(torch.bfloat16).requires_grad_()
    s_n = rand_scores(2, 4, 5).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mil_ranking_loss(s_a, s_n)
    assert loss.dtype == torch.float32
    loss.backward()
    assert s_a.grad is not None and s_a.grad.abs().sum() > 0


# --- pseudo-labels ----------------------------------------------------------------------------------------


def loop_moving_average(row, e):
    length = len(row)
    return [sum(row[min(max(i + m, 0), length - 1)] for m in range(-e, e + 1)) / (2 * e + 1) for i in range(length)]


@pytest.mark.parametrize("e,length", [(1, 7), (2, 9), (3, 4), (5, 3)])
def test_moving_average_matches_loops_with_replicate_padding(e, length):
    scores = rand_scores(3, length, e)
    got = moving_average(scores, e)
    assert got.shape == scores.shape and got.dtype == torch.float32
    for r, row in enumerate(scores.tolist()):
        assert got[r].tolist() == pytest.approx(loop_moving_average(row, e), rel=1e-6)


def test_moving_average_e0_is_identity_and_negative_raises():
    scores = rand_scores(2, 5, 7)
    assert torch.allclose(moving_average(scores, 0), scores.float())
    with pytest.raises(ValueError):
        moving_average(scores, -1)


def test_refine_pseudo_labels_matches_loops():
    scores = rand_scores(4, 8, 8)
    scores[2] = 0.3  # an anomalous video the teacher scores flat
    labels = torch.tensor([1, 0, 1, 1])
    got = refine_pseudo_labels(scores, labels, e=2)
    assert got.shape == (4, 8)
    for r, row in enumerate(scores.tolist()):
        if labels[r] == 0:
            expected = [0.0] * 8
        else:
            smooth = loop_moving_average(row, 2)
            low, high = min(smooth), max(smooth)
            expected = smooth if high - low < 1e-6 else [(s - low) / (high - low) for s in smooth]
        assert got[r].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6), r
    assert got[0].min() == 0 and got[0].max() == pytest.approx(1.0)
    assert torch.allclose(got[2], torch.full((8,), 0.3))


def test_refine_pseudo_labels_accepts_bool_labels_and_e():
    scores = rand_scores(2, 6, 9)
    by_int = refine_pseudo_labels(scores, torch.tensor([1, 0]), e=1)
    by_bool = refine_pseudo_labels(scores, torch.tensor([True, False]), e=1)
    assert torch.equal(by_int, by_bool)
    assert not torch.allclose(by_int, refine_pseudo_labels(scores, torch.tensor([1, 0]), e=0))


def test_teacher_segment_labels():
    scores = torch.tensor([[0.95, 0.9, 0.89, 0.1], [0.99, 0.95, 0.2, 0.91]])
    got = teacher_segment_labels(scores, torch.tensor([1, 0]), delta=0.9)
    assert got.dtype == torch.bool
    assert got.tolist() == [[True, True, False, False], [False, False, False, False]]
    assert teacher_segment_labels(scores, torch.tensor([1, 1]), delta=0.5).tolist() == [
        [True, True, True, False],
        [True, True, False, True],
    ]


# --- InfoNCE ----------------------------------------------------------------------------------------------


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def loop_info_nce(zt, zs, anomalous, tau):
    terms = []
    for i in range(len(zt)):
        positive = math.exp(cosine(zt[i], zs[i]) / tau)
        negatives = sum(math.exp(cosine(zt[i], zs[k]) / tau) for k in range(len(zt)) if anomalous[k] != anomalous[i])
        terms.append(-math.log(positive / (positive + negatives)))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0])
def test_info_nce_matches_loops(tau):
    gen = torch.Generator().manual_seed(0)
    zt, zs = torch.randn(7, 5, generator=gen), torch.randn(7, 5, generator=gen)
    anomalous = torch.tensor([True, False, False, True, False, False, True])
    got = info_nce(zt, zs, anomalous, tau=tau)
    assert got.item() == pytest.approx(loop_info_nce(zt.tolist(), zs.tolist(), anomalous.tolist(), tau), rel=1e-5)


def test_info_nce_flattens_segment_axes():
    gen = torch.Generator().manual_seed(1)
    zt, zs = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, 4, generator=gen)
    anomalous = torch.tensor([[True, False, False], [False, True, False]])
    flat = info_nce(zt.reshape(6, 4), zs.reshape(6, 4), anomalous.reshape(6), tau=0.5)
    assert info_nce(zt, zs, anomalous, tau=0.5).item() == pytest.approx(flat.item())


@pytest.mark.parametrize("all_anomalous", [True, False])
def test_info_nce_is_zero_and_differentiable_when_a_side_is_empty(all_anomalous):
    zt = torch.randn(5, 4, requires_grad=True)
    zs = torch.randn(5, 4, requires_grad=True)
    loss = info_nce(zt, zs, torch.full((5,), all_anomalous), tau=1.0)
    assert loss.item() == 0.0
    loss.backward()
    assert zt.grad is not None and zs.grad is not None
    assert zt.grad.abs().sum() == 0 and zs.grad.abs().sum() == 0


def test_info_nce_is_stable_for_small_tau():
    zt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    zs = torch.tensor([[-1.0, 0.0], [0.0, -1.0]])
    loss = info_nce(zt, zs, torch.tensor([True, False]), tau=1e-3)
    # sim(i, i) = -1, sim(i, other) = 0: loss = log(1 + e^{1000}) ~ 1000 without overflow.
    assert loss.item() == pytest.approx(1000.0, rel=1e-6)


# --- distillation -----------------------------------------------------------------------------------------


def distill_inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    student = torch.rand(2, 4, generator=gen) * 0.98 + 0.01
    labels = torch.rand(2, 4, generator=gen)
    labels[1] = 0
    zt, zs = torch.randn(8, 6, generator=gen), torch.randn(8, 6, generator=gen)
    anomalous = torch.tensor([True, True, False, False, False, False, False, True])
    return student, labels, zt, zs, anomalous


def test_distillation_bce_matches_loops():
    student, labels, zt, zs, anomalous = distill_inputs()
    _, parts = distillation_loss(student, labels, zt, zs, anomalous)
    pairs = list(zip(student.flatten().tolist(), labels.flatten().tolist()))
    expected = -sum(y * math.log(s) + (1 - y) * math.log(1 - s) for s, y in pairs) / len(pairs)
    assert parts["bce"] == pytest.approx(expected, rel=1e-5)
    assert set(parts) == {"bce", "nce", "total"} and all(isinstance(v, float) for v in parts.values())


@pytest.mark.parametrize("tau", [0.5, 2.0, 10.0])
def test_distillation_scales_nce_by_alpha_tau_squared(tau):
    student, labels, zt, zs, anomalous = distill_inputs()
    alpha = 7.5
    total, parts = distillation_loss(student, labels, zt, zs, anomalous, alpha=alpha, tau=tau)
    nce = info_nce(zt, zs, anomalous, tau=tau).item()
    assert nce > 0
    assert parts["nce"] == pytest.approx(nce)
    assert total.item() == pytest.approx(parts["total"])
    assert total.item() - parts["bce"] == pytest.approx(alpha * tau**2 * nce, rel=1e-5)


def test_distillation_defaults_are_alpha_7_5_tau_10():
    student, labels, zt, zs, anomalous = distill_inputs(3)
    total, parts = distillation_loss(student, labels, zt, zs, anomalous)
    expected = parts["bce"] + 7.5 * 100.0 * info_nce(zt, zs, anomalous, tau=10.0).item()
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_distillation_under_autocast_matches_float32():
    student, labels, zt, zs, anomalous = distill_inputs(4)
    reference, _ = distillation_loss(student, labels, zt, zs, anomalous)
    student_bf16 = student.to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, _ = distillation_loss(student_bf16, labels, zt.bfloat16(), zs.bfloat16(), anomalous)
    assert total.dtype == torch.float32
    assert total.item() == pytest.approx(reference.item(), rel=2e-2)
    total.backward()
    assert student_bf16.grad is not None


def test_table4_switches_of_the_pseudo_labels_and_the_bce_term():
    scores = torch.tensor([[0.2, 0.4, 0.9, 0.3], [0.5, 0.5, 0.6, 0.1]])
    labels = torch.tensor([1, 0])
    # w/o min-max: the smoothed scores themselves; normal rows still all zeros
    raw = refine_pseudo_labels(scores, labels, e=0, min_max=False)
    assert torch.equal(raw[0], scores[0]) and torch.equal(raw[1], torch.zeros(4))
    smoothed = refine_pseudo_labels(scores, labels, e=1, min_max=False)[0]
    assert torch.allclose(smoothed, torch.tensor([(0.2 + 0.2 + 0.4) / 3, (0.2 + 0.4 + 0.9) / 3,
                                                  (0.4 + 0.9 + 0.3) / 3, (0.9 + 0.3 + 0.3) / 3]))
    # w/o moving average: e = 0, min-max still applied
    assert torch.allclose(refine_pseudo_labels(scores, labels, e=0)[0], (scores[0] - 0.2) / 0.7)
    # w/o L_bce: only the InfoNCE term remains
    s, y = torch.full((2, 4), 0.3), torch.zeros(2, 4)
    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    anomalous = torch.tensor([True, False] * 4)
    full, parts = distillation_loss(s, y, z, z.flip(0), anomalous, alpha=1.0, tau=2.0)
    no_bce, parts0 = distillation_loss(s, y, z, z.flip(0), anomalous, alpha=1.0, tau=2.0, bce_weight=0.0)
    assert torch.isclose(no_bce, full - parts["bce"]) and torch.isclose(no_bce, torch.tensor(4.0 * parts0["nce"]))
