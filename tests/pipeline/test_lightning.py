"""The lightning student, its score discriminators and the adversarial distillation losses (method.md §9)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import models.lightning_student as lightning
from models.lightning_student import (
    ADVERSARIAL_WEIGHT,
    LightningConfig,
    LightningOutput,
    LightningStudent,
    ScoreDiscriminator,
    adversarial_distillation_loss,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
    make_discriminators,
    regression_loss,
    snippet_input,
)

@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation, which on a busy 2-core machine
    (other test processes) costs 10-20x the arithmetic. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = LightningConfig(frames=4, size=16, channels=(4, 8), head_hidden=6, disc_channels=5, disc_kernel=3)


def snippets(n, length, config=TINY, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, length, config.input_dim), generator=gen, dtype=torch.uint8)


def bumps(n, length, seed):
    """Smooth teacher-like sequences: one Gaussian bump per row, random centre / width / height."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)
    centre = torch.rand(n, 1, generator=gen) * length
    width = 2.0 + torch.rand(n, 1, generator=gen) * length / 4
    height = 0.5 + 0.4 * torch.rand(n, 1, generator=gen)
    return 0.05 + height * torch.exp(-0.5 * ((t - centre) / width) ** 2)


# --- config ------------------------------------------------------------------------------------------------


def test_config_defaults():
    assert dataclasses.asdict(LightningConfig()) == dict(
        frames=8, size=64, channels=(16, 32, 64, 128), stem_kernel=(3, 5, 5), stem_stride=(1, 4, 4), head_hidden=32,
        disc_channels=32, disc_kernel=5, input_norm=True, batch_norm=True, pool="topk", pool_fraction=0.02,
        map_scores="head",
    )
    assert LightningConfig().input_dim == 8 * 64 * 64
    assert (lightning.ADVERSARIAL_WEIGHT, lightning.REGRESSION, lightning.REGRESSIONS) == (0.1, "l2", ("l1", "l2"))


def test_config_normalises_lists_to_tuples():
    config = LightningConfig(channels=[4, 8], stem_kernel=[1, 3, 3], stem_stride=[1, 2, 2])
    assert config == LightningConfig(channels=(4, 8), stem_kernel=(1, 3, 3), stem_stride=(1, 2, 2))
    hash(config)


@pytest.mark.parametrize(
    "bad",
    [
        dict(frames=0),
        dict(size=0),
        dict(channels=()),
        dict(channels=(4, 0)),
        dict(head_hidden=0),
        dict(disc_channels=0),
        dict(disc_kernel=0),
        dict(stem_kernel=(3, 3)),
        dict(stem_stride=(1, 0, 2)),
    ],
)
def test_invalid_config_raises(bad):
    with pytest.raises(ValueError):
        LightningConfig(**bad)


# --- input construction ------------------------------------------------------------------------------------


def test_snippet_input_frames_and_differences_by_hand():
    frames, size = 3, 2
    # Snippet 0: frame f is constant 10 * (f + 1) except pixel (row 1, col 0) which is 100 * f.
    x = torch.zeros(1, 2, frames * size * size, dtype=torch.uint8)
    for f in range(frames):
        x[0, 0, f * 4:(f + 1) * 4] = 10 * (f + 1)
        x[0, 0, f * 4 + 2] = 100 * f  # frame-major, then rows, then columns: index f*S*S + r*S + c
    x[0, 1] = torch.arange(12, dtype=torch.uint8) * 20
    out = snippet_input(x, frames, size)
    assert out.shape == (2, 2, frames, size, size)
    assert out.dtype == torch.float32
    expected_frames = torch.tensor(
        [[[10, 10], [0, 10]], [[20, 20], [100, 20]], [[30, 30], [200, 30]]], dtype=torch.float32
    ) / 255
    assert torch.allclose(out[0, 0], expected_frames)
    assert torch.equal(out[0, 1, 0], torch.zeros(size, size))
    assert torch.allclose(out[0, 1, 1], torch.tensor([[10.0, 10.0], [100.0, 10.0]]) / 255)
    assert torch.allclose(out[0, 1, 2], torch.tensor([[10.0, 10.0], [100.0, 10.0]]) / 255)
    # Second snippet: ramp 0, 20, ..., 220 -> each frame is 80 above the previous one everywhere.
    assert torch.allclose(out[1, 0].flatten(), torch.arange(12, dtype=torch.float32) * 20 / 255)
    assert torch.allclose(out[1, 1, 1:], torch.full((2, size, size), 80 / 255))


def test_snippet_input_float_matches_uint8_and_rejects_wrong_length():
    x = snippets(2, 3)
    assert torch.allclose(snippet_input(x.float(), TINY.frames, TINY.size), snippet_input(x, TINY.frames, TINY.size))
    assert snippet_input(x.double(), TINY.frames, TINY.size).dtype == torch.float64
    with pytest.raises(ValueError):
        snippet_input(x[..., :-1], TINY.frames, TINY.size)


def test_snippet_input_is_differentiable_for_float_input_that_requires_grad():
    x = snippets(1, 2).double().requires_grad_(True)
    out = snippet_input(x, TINY.frames, TINY.size)
    assert torch.allclose(out, snippet_input(x.detach(), TINY.frames, TINY.size))
    out[:, 1].sum().backward()  # differences telescope: d/dx = (x[last] - x[0]) / 255 per pixel
    grad = x.grad.reshape(2, TINY.frames, -1)
    assert torch.allclose(grad[:, 0], torch.full_like(grad[:, 0], -1 / 255))
    assert torch.allclose(grad[:, -1], torch.full_like(grad[:, -1], 1 / 255))
    assert torch.equal(grad[:, 1:-1], torch.zeros_like(grad[:, 1:-1]))


# --- student -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_student_shapes_range_and_mean_of_heads(k):
    torch.manual_seed(0)
    model = LightningStudent(k, TINY).eval()
    out = model([snippets(2, 5)])
    assert isinstance(out, LightningOutput)
    assert out.h.shape == (2, 5, TINY.channels[-1])
    assert out.head_scores.shape == (2, 5, k)
    assert out.scores.shape == (2, 5)
    assert ((out.head_scores > 0) & (out.head_scores < 1)).all()
    assert torch.allclose(out.scores, out.head_scores.mean(dim=-1))
    assert (out.h >= 0).all()  # average of ReLU outputs
    assert len(model.heads) == k
    if k > 1:  # independently initialised heads disagree
        assert not torch.allclose(out.head_scores[..., 0], out.head_scores[..., 1])


def test_student_uint8_and_float_input_agree():
    torch.manual_seed(0)
    model = LightningStudent(2, TINY).eval()
    x = snippets(2, 4)
    a, b = model([x]), model([x.float()])
    assert torch.allclose(a.head_scores, b.head_scores, atol=1e-6)
    assert torch.allclose(a.h, b.h, atol=1e-6)


def test_student_snippets_are_independent_and_chunking_changes_nothing(monkeypatch):
    torch.manual_seed(0)
    model = LightningStudent(3, TINY).eval()
    x = snippets(3, 7)
    whole = model([x])
    monkeypatch.setattr(lightning, "LIGHTNING_CHUNK", 4)  # 21 snippets -> 6 chunks, the last one short
    chunked = model([x])
    assert torch.allclose(whole.h, chunked.h, atol=1e-6)
    assert torch.allclose(whole.head_scores, chunked.head_scores, atol=1e-6)
    # A snippet's score does not depend on its neighbours: scoring one row alone gives the same numbers.
    alone = model([x[1:2, 2:5]])
    assert torch.allclose(alone.head_scores, whole.head_scores[1:2, 2:5], atol=1e-6)


def test_student_encoder_is_strided_conv3d_on_two_channels():
    model = LightningStudent(1, TINY)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv3d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(2, 4), (4, 8)]
    assert convs[0].stride == TINY.stem_stride and convs[1].stride == (2, 2, 2)
    head = model.heads[0].net
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (8, 6, 1)


def test_student_default_config():
    torch.manual_seed(0)
    model = LightningStudent(3).eval()
    with torch.inference_mode():
        out = model([snippets(1, 3, LightningConfig())])
    assert out.h.shape == (1, 3, 128)
    assert out.head_scores.shape == (1, 3, 3)
    assert out.scores.shape == (1, 3)
    assert torch.isfinite(out.scores).all()


def test_student_rejects_bad_input():
    model = LightningStudent(2, TINY)
    x = snippets(1, 2)
    with pytest.raises(ValueError):
        model([x, x])
    with pytest.raises(ValueError):
        model([x[0]])
    with pytest.raises(ValueError):
        model([x[..., :-3]])
    with pytest.raises(ValueError):
        LightningStudent(0, TINY)


def test_student_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = LightningStudent(2, TINY)
    model([snippets(2, 3)]).head_scores.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- discriminator -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 7, 32])
def test_discriminator_any_length(length):
    torch.manual_seed(0)
    disc = ScoreDiscriminator(5, 3)
    logits = disc(torch.rand(4, length))
    assert logits.shape == (4,)
    assert torch.isfinite(logits).all()


def test_discriminator_layers_and_manual_forward():
    torch.manual_seed(0)
    disc = ScoreDiscriminator(6, 5)
    c1, _, c2, _ = disc.net
    assert (c1.in_channels, c1.out_channels, c1.kernel_size, c1.padding, c1.stride) == (1, 6, (5,), (2,), (1,))
    assert (c2.in_channels, c2.out_channels, c2.kernel_size, c2.padding, c2.stride) == (6, 6, (5,), (2,), (2,))
    s = torch.rand(3, 11)
    y = torch.nn.functional.leaky_relu(torch.nn.functional.conv1d(s[:, None], c1.weight, c1.bias, padding=2), 0.2)
    y = torch.nn.functional.leaky_relu(torch.nn.functional.conv1d(y, c2.weight, c2.bias, stride=2, padding=2), 0.2)
    expected = y.mean(dim=-1) @ disc.out.weight.T + disc.out.bias
    assert torch.allclose(disc(s), expected.squeeze(-1), atol=1e-6)
    with pytest.raises(ValueError):
        disc(torch.rand(3, 0))


def test_make_discriminators_follows_config():
    discs = make_discriminators(3, TINY)
    assert len(discs) == 3
    assert all(d.net[0].out_channels == 5 and d.net[0].kernel_size == (3,) for d in discs)


# --- losses by hand ----------------------------------------------------------------------------------------


def softplus(x):
    return math.log1p(math.exp(x))


def test_regression_loss_by_hand():
    s = torch.tensor([[0.2, 0.9], [0.5, 0.1]])
    t = torch.tensor([[0.5, 0.4], [0.5, 0.0]])
    assert regression_loss(s, t, "l1").item() == pytest.approx((0.3 + 0.5 + 0.0 + 0.1) / 4)
    assert regression_loss(s, t, "l2").item() == pytest.approx((0.09 + 0.25 + 0.0 + 0.01) / 4)
    assert regression_loss(s, t).item() == pytest.approx(regression_loss(s, t, "l2").item())
    with pytest.raises(ValueError):
        regression_loss(s, t, "huber")
    with pytest.raises(ValueError):
        regression_loss(s, t[:, :1])


def test_discriminator_and_generator_losses_by_hand():
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([-3.0, 0.25])
    # BCE with logits: target 1 -> softplus(-x), target 0 -> softplus(x).
    real_term = sum(softplus(-x) for x in real.tolist()) / 3
    fake_term = sum(softplus(x) for x in fake.tolist()) / 2
    assert discriminator_loss(real, fake).item() == pytest.approx(0.5 * (real_term + fake_term), rel=1e-6)
    assert generator_loss(fake).item() == pytest.approx(sum(softplus(-x) for x in fake.tolist()) / 2, rel=1e-6)
    assert discriminator_accuracy(real, fake) == pytest.approx(3 / 5)


def test_losses_are_float32_under_autocast():
    s = torch.rand(2, 6, 2, dtype=torch.bfloat16)
    t = torch.rand(2, 6, 2)
    discs = make_discriminators(2, TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, _ = adversarial_distillation_loss(s, t, discs)
        assert total.dtype == torch.float32
        assert regression_loss(s[..., 0], t[..., 0]).dtype == torch.float32
        assert generator_loss(torch.randn(3, dtype=torch.bfloat16)).dtype == torch.float32


def test_adversarial_loss_value_and_parts():
    torch.manual_seed(0)
    s, t = torch.rand(3, 8, 2), torch.rand(3, 8, 2)
    discs = make_discriminators(2, TINY)
    for kind in ("l1", "l2"):
        total, parts = adversarial_distillation_loss(s, t, discs, regression=kind, adversarial_weight=0.3)
        reg = [regression_loss(s[..., k], t[..., k], kind) for k in range(2)]
        gen = [generator_loss(discs[k](s[..., k])) for k in range(2)]
        disc = [discriminator_loss(discs[k](t[..., k]), discs[k](s[..., k])) for k in range(2)]
        expected = sum(r + 0.3 * g for r, g in zip(reg, gen)) / 2 + sum(disc) / 2
        assert total.item() == pytest.approx(expected.item(), rel=1e-6)
        assert set(parts) == {"regression", "generator", "discriminator", "total"}
        assert parts["regression"] == pytest.approx((sum(reg) / 2).item(), rel=1e-6)
        assert parts["generator"] == pytest.approx((sum(gen) / 2).item(), rel=1e-6)
        assert parts["discriminator"] == pytest.approx((sum(disc) / 2).item(), rel=1e-6)
        assert parts["total"] == pytest.approx(total.item(), rel=1e-6)
    with pytest.raises(ValueError):
        adversarial_distillation_loss(s, t, discs, regression="huber")
    with pytest.raises(ValueError):
        adversarial_distillation_loss(s, t, make_discriminators(3, TINY))
    with pytest.raises(ValueError):
        adversarial_distillation_loss(s, t[:, :4], discs)


# --- gradient routing --------------------------------------------------------------------------------------


def test_gradient_routing_separates_the_two_players():
    torch.manual_seed(0)
    k, w = 3, 0.4
    discs = make_discriminators(k, TINY)
    d_params = list(discs.parameters())
    s = (torch.rand(4, 10, k) * 0.9 + 0.05).requires_grad_(True)
    t = torch.rand(4, 10, k)

    total, _ = adversarial_distillation_loss(s, t, discs, regression="l2", adversarial_weight=w)
    got_d = torch.autograd.grad(total, d_params, retain_graph=True)
    got_s = torch.autograd.grad(total, s)

    # The discriminators' objective alone (student scores detached by hand).
    disc_only = sum(discriminator_loss(discs[i](t[..., i]), discs[i](s[..., i].detach())) for i in range(k)) / k
    want_d = torch.autograd.grad(disc_only, d_params)
    # The student's objective alone (the ordinary, undetached discriminator: only the gradient w.r.t. s is used).
    student_only = sum(
        regression_loss(s[..., i], t[..., i], "l2") + w * generator_loss(discs[i](s[..., i])) for i in range(k)
    ) / k
    want_s = torch.autograd.grad(student_only, s)[0]

    for g, e in zip(got_d, want_d):
        assert torch.allclose(g, e, atol=1e-7, rtol=1e-5)
    assert torch.allclose(got_s[0], want_s, atol=1e-7, rtol=1e-5)
    # Both terms carry gradient, so the checks above would see a wrongly routed term.
    assert sum(g.abs().sum() for g in want_d) > 0
    reg_only = torch.autograd.grad(sum(regression_loss(s[..., i], t[..., i], "l2") for i in range(k)) / k, s)[0]
    assert not torch.allclose(want_s, reg_only, atol=1e-6)


def test_teacher_scores_receive_no_gradient():
    discs = make_discriminators(1, TINY)
    s = torch.rand(2, 6, 1, requires_grad=True)
    t = torch.rand(2, 6, 1, requires_grad=True)
    total, _ = adversarial_distillation_loss(s, t, discs)
    total.backward()
    assert t.grad is None
    assert s.grad is not None


# --- the toy two-player game -------------------------------------------------------------------------------


def test_frozen_student_discriminator_learns_to_tell_bumps_from_noise():
    torch.manual_seed(0)
    n, length, k = 16, 24, 2
    teacher = torch.stack([bumps(n, length, seed=1), bumps(n, length, seed=2)], dim=-1)
    student = torch.rand(n, length, k, generator=torch.Generator().manual_seed(3))  # frozen, noisy sequences
    discs = make_discriminators(k, LightningConfig(disc_channels=16, disc_kernel=5))
    optimiser = torch.optim.Adam(discs.parameters(), lr=1e-2)

    def accuracy():
        with torch.no_grad():
            return sum(discriminator_accuracy(d(teacher[..., i]), d(student[..., i])) for i, d in enumerate(discs)) / k

    before = accuracy()
    first = None
    for _ in range(60):
        total, parts = adversarial_distillation_loss(student, teacher, discs)
        first = parts["discriminator"] if first is None else first
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    _, parts = adversarial_distillation_loss(student, teacher, discs)
    after = accuracy()
    assert parts["discriminator"] < first
    assert after > before
    assert after >= 0.95


def test_frozen_discriminator_student_loss_falls():
    torch.manual_seed(0)
    n, length, k, w = 4, 12, 2, ADVERSARIAL_WEIGHT
    x = snippets(n, length, seed=5)
    teacher = torch.stack([bumps(n, length, seed=6), bumps(n, length, seed=7)], dim=-1)
    model = LightningStudent(k, TINY)
    discs = make_discriminators(k, TINY)
    d_before = [p.detach().clone() for p in discs.parameters()]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    def student_loss():
        with torch.no_grad():
            _, parts = adversarial_distillation_loss(model([x]).head_scores, teacher, discs)
        return parts["regression"] + w * parts["generator"]

    before = student_loss()
    for _ in range(40):
        total, _ = adversarial_distillation_loss(model([x]).head_scores, teacher, discs, adversarial_weight=w)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    after = student_loss()
    assert after < 0.8 * before
    # The discriminators got gradients but were not stepped: frozen.
    assert all(torch.equal(a, b) for a, b in zip(d_before, discs.parameters()))


# --- the map student (method.md §9: distilling the teachers' anomaly maps) -----------------------------------

GRID = (3, 5)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("map_scores", lightning.MAP_SCORES)
def test_map_student_shapes_and_where_its_scores_come_from(k, map_scores):
    torch.manual_seed(0)
    model = LightningStudent(k, dataclasses.replace(TINY, map_scores=map_scores), grid=GRID, k_top=3).eval()
    out = model([snippets(2, 5)])
    assert out.h.shape == (2, 5, TINY.channels[-1])
    assert out.head_maps.shape == (2, 5, k, 15) and out.cell_scores.shape == (2, 5, 15)
    assert ((out.head_maps > 0) & (out.head_maps < 1)).all()
    top3 = out.head_maps.topk(3, dim=-1).values.mean(-1)
    if map_scores == "cells":  # each map head's 3 highest cells
        assert model.score_heads is None
        assert torch.allclose(out.head_scores, top3, atol=1e-6)
    else:  # a score head per teacher on the embedding, as the score-sequence student's
        assert len(model.score_heads) == k
        by_head = torch.stack([head(out.h) for head in model.score_heads], dim=-1)
        assert torch.allclose(out.head_scores, by_head, atol=1e-6)
        assert not torch.allclose(out.head_scores, top3, atol=1e-3)
    assert torch.allclose(out.scores, out.head_scores.mean(-1), atol=1e-6)
    assert torch.allclose(out.cell_scores, out.head_maps.mean(2), atol=1e-6)
    # snippets stay independent: one row alone gives the same maps
    alone = model([snippets(2, 5)[1:2, 1:3]])
    assert torch.allclose(alone.head_maps, out.head_maps[1:2, 1:3], atol=1e-6)


def test_map_student_reads_the_map_layer_and_the_global_embedding():
    config = LightningConfig(frames=4, size=16, channels=(4, 6, 8), head_hidden=6, disc_channels=5, disc_kernel=3)
    model = LightningStudent(1, config, grid=GRID)
    assert model.map_layer == lightning.MAP_LAYER == 1
    head = model.heads[0].net
    # the cells: layer 1's 6 channels pooled to the grid, and the snippet's 8-d embedding appended to each
    assert (head[0].in_channels, head[0].out_channels, head[2].out_channels) == (6 + 8, 6, 1)
    # a two-layer student takes its last layer (MAP_LAYER clipped)
    assert LightningStudent(1, TINY, grid=GRID).map_layer == 1
    assert LightningStudent(1, LightningConfig(frames=4, size=16, channels=(4,)), grid=GRID).map_layer == 0
    torch.manual_seed(0)
    model([snippets(1, 2, config)]).head_maps.sum().backward()
    for name, p in model.named_parameters():  # the layers past the map layer's too, through the embedding
        if not name.startswith("score_heads."):  # the score heads read the embedding only, not the maps
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_score_sequence_student_is_unchanged_without_a_grid():
    torch.manual_seed(0)
    model = LightningStudent(2, TINY)
    assert model.grid is None
    assert all(isinstance(h, lightning.ScoreHead) for h in model.heads)
    names = {n.split(".")[0] for n, _ in model.state_dict().items()}
    assert names == {"encoder", "heads"}
    out = model.eval()([snippets(1, 3)])
    assert out.head_maps is None and out.cell_scores is None
    with pytest.raises(ValueError):
        LightningStudent(1, TINY, grid=(0, 3))
    with pytest.raises(ValueError):
        LightningStudent(1, TINY, grid=GRID, k_top=0)


@pytest.mark.parametrize("shape", [(4, 1, 1, 1), (3, 7, 3, 5), (2, 32, 7, 11)])
def test_map_discriminator_any_shape(shape):
    torch.manual_seed(0)
    disc = lightning.MapDiscriminator(5, 3)
    logits = disc(torch.rand(*shape))
    assert logits.shape == (shape[0],) and torch.isfinite(logits).all()
    with pytest.raises(ValueError):
        disc(torch.rand(3, 4, 5))
    discs = lightning.make_map_discriminators(3, TINY)
    assert len(discs) == 3 and all(d.net[0].out_channels == 5 and d.net[0].kernel_size == (3, 3, 3) for d in discs)


def _maps_and_scores(n, length, k, seed):
    gen = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, length, k, GRID[0] * GRID[1], generator=gen) * 0.9 + 0.05
    return maps, maps.topk(3, dim=-1).values.mean(-1)


def test_map_loss_value_and_parts():
    torch.manual_seed(0)
    m, s = _maps_and_scores(3, 6, 2, 1)
    u, t = _maps_and_scores(3, 6, 2, 2)
    discs = lightning.make_map_discriminators(2, TINY)
    total, parts = lightning.map_distillation_loss(m, s, u, t, discs, GRID, regression="l1", adversarial_weight=0.3)
    grid = lambda x, i: x[:, :, i].reshape(3, 6, *GRID)  # noqa: E731
    map_reg = [regression_loss(grid(m, i), grid(u, i), "l1") for i in range(2)]
    reg = [map_reg[i] + regression_loss(s[..., i], t[..., i], "l1") for i in range(2)]
    gen = [generator_loss(discs[i](grid(m, i))) for i in range(2)]
    disc = [discriminator_loss(discs[i](grid(u, i)), discs[i](grid(m, i))) for i in range(2)]
    expected = sum(r + 0.3 * g for r, g in zip(reg, gen)) / 2 + sum(disc) / 2
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["map_regression"] == pytest.approx((sum(map_reg) / 2).item(), rel=1e-6)
    assert parts["regression"] == pytest.approx((sum(reg) / 2).item(), rel=1e-6)
    assert parts["discriminator"] == pytest.approx((sum(disc) / 2).item(), rel=1e-6)
    with pytest.raises(ValueError):
        lightning.map_distillation_loss(m, s, u, t, discs, (5, 3 + 1))
    with pytest.raises(ValueError):
        lightning.map_distillation_loss(m, s[:, :4], u, t, discs, GRID)
    with pytest.raises(ValueError):
        lightning.map_distillation_loss(m, s, u, t, lightning.make_map_discriminators(3, TINY), GRID)


def test_map_loss_routes_gradients_to_the_two_players_on_maps():
    torch.manual_seed(0)
    k, w = 2, 0.4
    discs = lightning.make_map_discriminators(k, TINY)
    d_params = list(discs.parameters())
    m, s = _maps_and_scores(4, 8, k, 3)
    m.requires_grad_(True)
    s.requires_grad_(True)
    u, t = _maps_and_scores(4, 8, k, 4)

    total, _ = lightning.map_distillation_loss(m, s, u, t, discs, GRID, adversarial_weight=w)
    got_d = torch.autograd.grad(total, d_params, retain_graph=True)
    got_m, got_s = torch.autograd.grad(total, (m, s))

    grid = lambda x, i: x[:, :, i].reshape(4, 8, *GRID)  # noqa: E731
    disc_only = sum(discriminator_loss(discs[i](grid(u, i)), discs[i](grid(m, i).detach())) for i in range(k)) / k
    want_d = torch.autograd.grad(disc_only, d_params)
    student_only = sum(regression_loss(grid(m, i), grid(u, i)) + regression_loss(s[..., i], t[..., i])
                       + w * generator_loss(discs[i](grid(m, i))) for i in range(k)) / k
    want_m, want_s = torch.autograd.grad(student_only, (m, s))

    for g, e in zip(got_d, want_d):
        assert torch.allclose(g, e, atol=1e-7, rtol=1e-5)
    assert torch.allclose(got_m, want_m, atol=1e-7, rtol=1e-5)
    assert torch.allclose(got_s, want_s, atol=1e-7, rtol=1e-5)
    # the adversarial term reaches the maps (so a wrongly routed generator term would show) and the discriminators
    # get a gradient of their own
    assert sum(g.abs().sum() for g in want_d) > 0
    reg_only = torch.autograd.grad(sum(regression_loss(grid(m, i), grid(u, i)) for i in range(k)) / k, m)[0]
    assert not torch.allclose(want_m, reg_only, atol=1e-6)


def test_the_map_student_learns_to_follow_a_planted_teacher_map():
    """A bright square at a random place of each snippet's dark frames; the teacher's map is 1 on the cell under
    it and 0 elsewhere. After training on the regression alone the student's highest cell is the square's on
    held-out snippets."""
    config = LightningConfig(frames=2, size=16, channels=(8, 16), stem_kernel=(1, 3, 3), stem_stride=(1, 2, 2),
                             head_hidden=16)
    grid, side = (2, 2), 4

    def planted(n, seed):
        gen = torch.Generator().manual_seed(seed)
        frames = torch.full((n, config.frames, config.size, config.size), 20.0)
        maps = torch.zeros(n, grid[0] * grid[1])
        for i in range(n):
            r, c = (int(v) for v in torch.randint(0, config.size - side + 1, (2,), generator=gen))
            frames[i, :, r:r + side, c:c + side] = 230.0
            cell_r, cell_c = (r + side // 2) * grid[0] // config.size, (c + side // 2) * grid[1] // config.size
            maps[i, cell_r * grid[1] + cell_c] = 1.0
        return frames.reshape(1, n, -1), maps.reshape(1, n, 1, -1)

    torch.manual_seed(0)
    model = LightningStudent(1, config, grid=grid, k_top=1)
    x, target = planted(64, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = regression_loss(model([x]).head_maps, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    held_x, held_target = planted(32, 2)
    with torch.no_grad():
        maps = model.eval()([held_x]).cell_scores[0]  # [32, 4]
    hits = (maps.argmax(-1) == held_target[0, :, 0].argmax(-1)).float().mean().item()
    assert hits >= 0.9
