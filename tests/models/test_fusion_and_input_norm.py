"""Backbone dropout in the TAM and the mean fusion, and input standardisation with the training set's statistics."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.normalization import InputStandardizer
from models.vad_model import ModelConfig, VADModel

TINY = ModelConfig(d_model=16, projection_hidden=12, n_heads=2, k=3, ffn_dim=20, classifier_hidden=10,
                   classifier_bottleneck=6, dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0)
DIMS = (7, 5, 9)


def _features(n=4, length=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, length, d, generator=gen) for d in DIMS]


@pytest.mark.parametrize("temporal", ["tam", "gru", "none"])
def test_a_dropped_backbone_has_no_influence_on_its_row(temporal):
    """With only backbone 0 kept in a row, the other backbones' inputs of that row cannot change its output."""
    torch.manual_seed(0)
    model = VADModel(DIMS, dataclasses.replace(TINY, temporal=temporal)).eval()
    f = _features()
    z = [proj(norm(x)) for proj, norm, x in zip(model.projections, model.input_norms, f)]
    keep = torch.tensor([[True, False, False], [True, True, True], [False, True, True], [True, False, True]])
    out = model.temporal(z, keep)
    other = [z[0], torch.randn_like(z[1]) * 5, torch.randn_like(z[2]) * 5]
    again = model.temporal(other, keep)
    torch.testing.assert_close(out[0], again[0])  # row 0 keeps backbone 0 alone
    assert not torch.allclose(out[1], again[1])  # row 1 keeps all: it does depend on them
    # keeping everything is the paper's fusion exactly
    torch.testing.assert_close(model.temporal(z, torch.ones(4, 3, dtype=torch.bool)), model.temporal(z))


def test_backbone_dropout_acts_in_training_only_and_never_drops_every_backbone():
    torch.manual_seed(1)
    model = VADModel(DIMS, dataclasses.replace(TINY, backbone_dropout=0.9))
    keeps = torch.stack([model._backbone_dropout(64, torch.device("cpu")) for _ in range(20)])
    assert keeps.any(dim=-1).all()  # at least one backbone per row
    expected = 0.1 + 0.9 ** 3 / 3  # each backbone kept with 1 - 0.9, plus one of 3 in rows that dropped all
    assert abs(float(keeps.float().mean()) - expected) < 0.04
    model.eval()
    assert model._backbone_dropout(64, torch.device("cpu")) is None
    f = _features()
    torch.testing.assert_close(model(f).scores, model(f).scores)  # deterministic in evaluation
    # p = 0 (the default) draws no random numbers: training stays reproducible seed for seed
    plain = VADModel(DIMS, TINY).train()
    state = torch.random.get_rng_state()
    assert plain._backbone_dropout(8, torch.device("cpu")) is None
    assert torch.equal(state, torch.random.get_rng_state())


def test_standardisation_makes_the_model_blind_to_each_dimension_s_scale_and_offset():
    torch.manual_seed(2)
    f = _features()
    scale = [torch.rand(d) * 10 + 0.1 for d in DIMS]
    shift = [torch.randn(d) * 3 for d in DIMS]
    stats = [(x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).std(0, unbiased=False)) for x in f]
    a = VADModel(DIMS, TINY).eval()
    b = VADModel(DIMS, TINY).eval()
    b.load_state_dict(a.state_dict())
    a.set_input_statistics(stats)
    b.set_input_statistics([(m * s + o, sd * s) for (m, sd), s, o in zip(stats, scale, shift)])
    moved = [x * s + o for x, s, o in zip(f, scale, shift)]
    torch.testing.assert_close(a(f).scores, b(moved).scores, atol=1e-5, rtol=1e-4)
    # the statistics are buffers: they travel in the state dict (checkpoints, exports)
    assert torch.equal(a.state_dict()["input_norms.0.mean"], stats[0][0])


def test_input_norm_none_is_the_identity_and_a_constant_dimension_is_safe():
    model = VADModel(DIMS, dataclasses.replace(TINY, input_norm="none"))
    model.set_input_statistics([(torch.ones(d), torch.ones(d)) for d in DIMS])  # ignored: no standardiser
    assert not any(isinstance(m, InputStandardizer) for m in model.modules())
    norm = InputStandardizer(3)
    norm.set_statistics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 2.0]))
    assert torch.isfinite(norm(torch.tensor([[1.0, 2.0, 5.0]]))).all()
    with pytest.raises(ValueError, match="input_norm"):
        ModelConfig(input_norm="batch")
