"""VADModel wiring, full-size Teacher / Student shapes, parameter groups and gradients (method.md §3-4)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from models.vad_model import (
    Classifier,
    ContrastiveHead,
    ModelConfig,
    ModelOutput,
    ProjectionMLP,
    TemporalAggregationLayer,
    VADModel,
)

TINY = ModelConfig(
    d_model=16, projection_hidden=12, n_heads=2, k=3, ffn_dim=20, classifier_hidden=10, classifier_bottleneck=6
)
TINY_DIMS = (7, 5, 9)
TEACHER_DIMS = (1024, 1024, 512)
STUDENT_DIMS = (512,)


def features(dims, n=2, length=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, length, dim, generator=gen, dtype=dtype) for dim in dims]


def test_config_defaults_are_the_specified_values():
    assert dataclasses.asdict(ModelConfig()) == dict(
        d_model=512, projection_hidden=512, n_heads=8, k=25, ffn_dim=1024, dropout=0.1, attention_dropout=0.1,
        layer_norm_eps=1e-5, classifier_hidden=512, classifier_bottleneck=32, classifier_dropout=0.6,
        self_c2c=True, cross_c2c=True, c2p=True, p2c=True, temporal="tam", projection=True, conv_kernel=3,
        input_norm="standardize", backbone_dropout=0.0,
    )


@pytest.mark.parametrize(
    "bad",
    [
        dict(d_model=10, n_heads=3),
        dict(k=0),
        dict(dropout=1.0),
        dict(self_c2c=False, cross_c2c=False, c2p=False, p2c=False),
    ],
)
def test_invalid_config_raises(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_projection_mlp_is_linear_relu_linear():
    torch.manual_seed(0)
    mlp = ProjectionMLP(7, 12, 16)
    x = torch.randn(2, 5, 7)
    first, second = mlp.net[0], mlp.net[2]
    expected = torch.clamp(x @ first.weight.T + first.bias, min=0) @ second.weight.T + second.bias
    assert mlp(x).shape == (2, 5, 16)
    assert torch.allclose(mlp(x), expected, atol=1e-6)


def test_classifier_computation_and_range():
    torch.manual_seed(0)
    clf = Classifier(TINY).eval()
    h = torch.randn(3, 5, TINY.d_model)
    l1, l2, l3 = (m for m in clf.net if isinstance(m, torch.nn.Linear))
    assert (l1.in_features, l1.out_features, l2.out_features, l3.out_features) == (16, 10, 6, 1)
    hidden = torch.relu(torch.relu(h @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias)
    expected = torch.sigmoid(hidden @ l3.weight.T + l3.bias).squeeze(-1)
    scores = clf(h)
    assert scores.shape == (3, 5)
    assert torch.allclose(scores, expected, atol=1e-6)
    assert ((scores > 0) & (scores < 1)).all()
    clf.train()  # dropout 0.6 between the layers is active in training
    assert not torch.allclose(clf(h), clf(h))


def test_temporal_layer_is_post_norm_with_mean_residual():
    torch.manual_seed(0)
    layer = TemporalAggregationLayer(3, TINY).eval()
    z = features([TINY.d_model] * 3, n=2, length=6)
    d, eps = TINY.d_model, TINY.layer_norm_eps
    attended = layer.attention(z) @ layer.out_proj.weight.T + layer.out_proj.bias
    x = F.layer_norm(torch.stack(z).mean(0) + attended, (d,), layer.attn_norm.weight, layer.attn_norm.bias, eps)
    up, down = layer.ffn[0], layer.ffn[2]
    ffn = F.gelu(x @ up.weight.T + up.bias) @ down.weight.T + down.bias
    expected = F.layer_norm(x + ffn, (d,), layer.ffn_norm.weight, layer.ffn_norm.bias, eps)
    assert (up.out_features, down.in_features) == (TINY.ffn_dim, TINY.ffn_dim)
    assert torch.allclose(layer(z), expected, atol=1e-5)


def test_model_wiring():
    torch.manual_seed(0)
    model = VADModel(TINY_DIMS, TINY).eval()
    f = features(TINY_DIMS)
    out = model(f)
    assert isinstance(out, ModelOutput)
    h = model.temporal([proj(x) for proj, x in zip(model.projections, f)])
    assert torch.allclose(out.h, h, atol=1e-6)
    assert torch.allclose(out.scores, model.classifier(h), atol=1e-6)


def test_model_rejects_wrong_inputs():
    model = VADModel(TINY_DIMS, TINY)
    with pytest.raises(ValueError):
        model(features(TINY_DIMS[:2]))
    with pytest.raises(ValueError):
        model(features((7, 5, 8)))
    mismatched = features(TINY_DIMS)
    mismatched[1] = mismatched[1][:, :4]
    with pytest.raises(ValueError):
        model(mismatched)


def test_parameter_groups_partition_the_model():
    model = VADModel(TINY_DIMS, TINY)
    temporal = {id(p) for p in model.temporal_parameters()}
    other = {id(p) for p in model.other_parameters()}
    everything = [id(p) for p in model.parameters()]
    assert len(temporal) == len(model.temporal_parameters()) and len(other) == len(model.other_parameters())
    assert temporal.isdisjoint(other)
    assert temporal | other == set(everything)
    assert len(temporal) + len(other) == len(everything)
    assert id(model.temporal.attention.rel_embeddings) in temporal
    assert id(model.temporal.ffn_norm.weight) in temporal
    assert id(model.projections[0].net[0].weight) in other
    assert id(model.classifier.net[0].weight) in other


def test_gradients_reach_every_parameter():
    config = dataclasses.replace(TINY, dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0)
    torch.manual_seed(0)
    model = VADModel(TINY_DIMS, config).train()
    out = model(features(TINY_DIMS, n=3, length=10))
    weights = torch.randn(out.h.shape, generator=torch.Generator().manual_seed(1))
    (out.scores.sum() + (out.h * weights).sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_runs_under_bfloat16_autocast():
    torch.manual_seed(0)
    model = VADModel(TINY_DIMS, TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(features(TINY_DIMS))
        out.scores.float().sum().backward()
    assert torch.isfinite(out.scores.float()).all()
    assert model.temporal.attention.rel_embeddings.grad is not None


def test_full_size_teacher_and_student():
    torch.manual_seed(0)
    teacher = VADModel(TEACHER_DIMS)
    student = VADModel(STUDENT_DIMS)
    assert teacher.temporal.attention.d_head == 64
    assert teacher.temporal.attention.scale == pytest.approx(math.sqrt(5 * 64))
    assert student.temporal.attention.scale == pytest.approx(math.sqrt(3 * 64))
    assert teacher.temporal.attention.rel_embeddings.shape == (50, 512)
    assert len(teacher.temporal.attention.q_proj) == 3 and len(student.temporal.attention.q_proj) == 1

    out = teacher(features(TEACHER_DIMS, n=2, length=32))
    assert out.h.shape == (2, 32, 512) and out.scores.shape == (2, 32)
    assert ((out.scores > 0) & (out.scores < 1)).all()
    out = student(features(STUDENT_DIMS, n=2, length=32))
    assert out.h.shape == (2, 32, 512) and out.scores.shape == (2, 32)

    # Evaluation scores the full snippet sequence of one video.
    teacher.eval(), student.eval()
    with torch.no_grad():
        out = teacher(features(TEACHER_DIMS, n=1, length=300))
        assert out.h.shape == (1, 300, 512) and out.scores.shape == (1, 300)
        out = student(features(STUDENT_DIMS, n=1, length=300))
        assert out.h.shape == (1, 300, 512) and out.scores.shape == (1, 300)
        assert torch.isfinite(out.scores).all()


def test_contrastive_head():
    assert ContrastiveHead()(torch.randn(2, 32, 512)).shape == (2, 32, 128)
    torch.manual_seed(0)
    head = ContrastiveHead(6, 5, 4)
    x = torch.randn(3, 6)
    first, second = head.net[0], head.net[2]
    expected = torch.relu(x @ first.weight.T + first.bias) @ second.weight.T + second.bias
    assert torch.allclose(head(x), expected, atol=1e-6)
