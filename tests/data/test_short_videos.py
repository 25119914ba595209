"""Videos shorter than the 32 training segments keep their snippets (``train.stretch_short_videos = false``): rows
padded past their length, models run on the rows of one length at a time, and every loss over real segments only.
Each padded computation is checked against the same computation on the unpadded rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from data.segments import pool_segments, segment_count
from models.dynamics import lanet_loss
from models.lanet import LANet, LANetConfig
from models.losses import distillation_loss, mil_ranking_loss, refine_pseudo_labels
from models.vad_model import ModelConfig, VADModel
from pipeline.train.objectives import forward_by_length, padding_mask

TINY = ModelConfig(d_model=16, projection_hidden=12, n_heads=2, k=3, ffn_dim=20, classifier_hidden=10,
                   classifier_bottleneck=6)
L = 8  # the padded length in these tests (n_segments)
LENGTHS = torch.tensor([8, 3, 5, 3, 8, 1])


def _padded(dim: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(LENGTHS), L, dim, generator=gen)
    return x * padding_mask(LENGTHS, L, "cpu")[..., None]  # zeros past each row's length, as SegmentData


def test_a_short_video_keeps_its_snippets_unless_stretched():
    x = np.arange(5, dtype=np.float32).reshape(5, 1, 1)
    assert segment_count(5, 32) == 5 and segment_count(5, 32, stretch=True) == 32 and segment_count(40, 32) == 32
    np.testing.assert_array_equal(pool_segments(x, 32, stretch=False)[0, :, 0], [0, 1, 2, 3, 4])
    assert pool_segments(x, 32, stretch=True).shape == (1, 32, 1)
    long = np.arange(64, dtype=np.float32).reshape(64, 1, 1)
    np.testing.assert_array_equal(pool_segments(long, 32, stretch=False), pool_segments(long, 32, stretch=True))


@pytest.mark.parametrize("network", ["tam", "gru", "cnn1d", "lanet"])
def test_forward_by_length_equals_each_row_on_its_own(network):
    torch.manual_seed(0)
    dims = (7, 5)
    if network == "lanet":
        model = LANet(dims, LANetConfig(d_model=16, n_heads=2, ffn_dim=20, classifier_hidden=8)).eval()
    else:
        model = VADModel(dims, dataclasses.replace(TINY, temporal=network)).eval()
    features = [_padded(d, seed=i) for i, d in enumerate(dims)]
    out = forward_by_length(model, features, LENGTHS)
    for r, length in enumerate(LENGTHS.tolist()):
        alone = model([f[r:r + 1, :length] for f in features])
        torch.testing.assert_close(out.scores[r, :length], alone.scores[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(out.h[r, :length], alone.h[0], atol=1e-6, rtol=0)
        assert torch.all(out.scores[r, length:] == 0)
    # rows that are all whole take the single forward pass, unchanged
    whole = torch.full((len(LENGTHS),), L)
    torch.testing.assert_close(forward_by_length(model, features, whole).scores, model(features).scores)


def _rows(scores: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    return [scores[r, :n] for r, n in enumerate(lengths.tolist())]


def test_masked_mil_loss_equals_the_loss_of_the_unpadded_bags():
    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(len(LENGTHS), L, generator=gen)
    mask = padding_mask(LENGTHS, L, "cpu")
    scores = torch.where(mask, scores, torch.full_like(scores, 0.99))  # padding that would win every max
    a, n = scores[:3], scores[3:]
    loss = mil_ranking_loss(a, n, mask_anomalous=mask[:3], mask_normal=mask[3:], pairing="all-pairs")
    # by hand over the real segments: hinge of the maxes, smoothness and sparsity of the anomalous bags
    bags_a, bags_n = _rows(a, LENGTHS[:3]), _rows(n, LENGTHS[3:])
    hinge = torch.stack([torch.relu(1 - x.max() + y.max()) for x in bags_a for y in bags_n]).mean()
    reg = torch.stack([8e-5 * (x[1:] - x[:-1]).pow(2).sum() + 8e-5 * x.sum() for x in bags_a]).mean()
    torch.testing.assert_close(loss, hinge + reg)


def test_pseudo_labels_of_a_short_row_use_its_own_segments():
    gen = torch.Generator().manual_seed(2)
    scores = torch.rand(len(LENGTHS), L, generator=gen)
    labels = torch.tensor([1, 1, 1, 0, 1, 1])
    refined = refine_pseudo_labels(scores, labels, lengths=LENGTHS)
    for r, n in enumerate(LENGTHS.tolist()):
        alone = refine_pseudo_labels(scores[r:r + 1, :n], labels[r:r + 1])
        torch.testing.assert_close(refined[r, :n], alone[0])
        assert torch.all(refined[r, n:] == 0)


def test_distillation_loss_leaves_the_padding_out():
    gen = torch.Generator().manual_seed(3)
    n_rows = len(LENGTHS)
    student = torch.rand(n_rows, L, generator=gen) * 0.98 + 0.01
    pseudo = torch.rand(n_rows, L, generator=gen)
    zt, zs = torch.randn(n_rows * L, 4, generator=gen), torch.randn(n_rows * L, 4, generator=gen)
    anomalous = torch.rand(n_rows * L, generator=gen) > 0.5
    mask = padding_mask(LENGTHS, L, "cpu")
    loss, _ = distillation_loss(student, pseudo, zt, zs, anomalous, alpha=7.5, tau=10.0, mask=mask)
    keep = mask.flatten()
    reference, _ = distillation_loss(student[mask][None], pseudo[mask][None], zt[keep], zs[keep], anomalous[keep],
                                     alpha=7.5, tau=10.0)
    torch.testing.assert_close(loss, reference)


def test_lanet_loss_by_length_equals_its_terms_on_each_bag():
    gen = torch.Generator().manual_seed(4)
    scores = torch.rand(len(LENGTHS), L, generator=gen)
    features = torch.randn(len(LENGTHS), L, 6, generator=gen)
    labels = torch.tensor([1, 0, 1, 0, 1, 0])
    total, parts = lanet_loss(scores, features, labels, lengths=LENGTHS, topk_divisor=4)
    # whole rows of equal length give the same result through both paths
    same = torch.full((len(LENGTHS),), L)
    reference, _ = lanet_loss(scores, features, labels, topk=L // 4 + 1)
    torch.testing.assert_close(lanet_loss(scores, features, labels, lengths=same, topk_divisor=4)[0], reference)
    # the top-k BCE term by hand: k = length // 4 + 1 over each row's real segments
    tops = torch.stack([scores[r, :n].topk(n // 4 + 1).values.mean() for r, n in enumerate(LENGTHS.tolist())])
    bce = torch.nn.functional.binary_cross_entropy(tops, labels.float())
    assert parts["bce"] == pytest.approx(float(bce), abs=1e-6)
    assert np.isfinite(parts["rank"]) and np.isfinite(parts["align"]) and torch.isfinite(total)


def test_bag_scores_average_the_top_k_real_segments():
    from models.losses import bag_scores

    scores = torch.tensor([[0.1, 0.9, 0.5, 0.99], [0.2, 0.4, 0.99, 0.99]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    torch.testing.assert_close(bag_scores(scores, mask, 3), torch.tensor([0.5, 0.3]))  # a short row: all it has
    torch.testing.assert_close(bag_scores(scores, mask, 1), torch.tensor([0.9, 0.4]))
    torch.testing.assert_close(bag_scores(scores, None, 2), torch.tensor([0.945, 0.99]))
    with pytest.raises(ValueError, match="top-k"):
        bag_scores(scores, mask, 0)
