"""LA-Net (method.md §8) against hand computations with explicit loops, plus shapes, causality and a learning check."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.dynamics import lanet_loss, topk_count, topk_mean
from models.lanet import CausalConvClassifier, LANet, LANetConfig, LocalityAwareAttention
from models.vad_model import ModelOutput

D_MODEL, N_HEADS = 8, 2
D_HEAD = D_MODEL // N_HEADS
TINY = dict(d_model=16, n_heads=2, ffn_dim=32, classifier_hidden=8, classifier_kernel=3)


def make_attention(seed: int = 0, w=(0.3, 0.05), b=(0.0, 1.2)) -> LocalityAwareAttention:
    torch.manual_seed(seed)
    attn = LocalityAwareAttention(D_MODEL, N_HEADS, attention_dropout=0.0, w_init=0.1, b_init=0.0).double()
    with torch.no_grad():  # different slopes and offsets per head, so a head mix-up cannot pass
        attn.locality_w.copy_(torch.tensor(w))
        attn.locality_b.copy_(torch.tensor(b))
    return attn.eval()


def rand(*shape, seed=1, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def linear(x, layer):
    return x @ layer.weight.T + layer.bias


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: they gain nothing from intra-op threads, and on a busy 2-core machine OpenMP threads
    waiting for each other make a training step 10-20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- config -------------------------------------------------------------------------------------------------


def test_config_defaults():
    c = LANetConfig()
    assert (c.d_model, c.n_heads, c.ffn_dim, c.classifier_kernel, c.classifier_dropout) == (512, 4, 1024, 9, 0.6)
    assert (c.locality_w_init, c.locality_b_init) == (0.1, 0.0)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("d_model", 0, "d_model"),
        ("n_heads", 0, "n_heads"),
        ("ffn_dim", 0, "ffn_dim"),
        ("classifier_hidden", 0, "classifier_hidden"),
        ("classifier_kernel", 0, "classifier_kernel"),
        ("n_heads", 3, "divisible"),
        ("dropout", 1.0, "dropout"),
        ("attention_dropout", -0.1, "attention_dropout"),
        ("classifier_dropout", 1.5, "classifier_dropout"),
        ("layer_norm_eps", 0.0, "layer_norm_eps"),
        ("locality_w_init", math.nan, "locality_w_init"),
    ],
)
def test_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        LANetConfig(**{field: value})


# --- locality-aware attention -------------------------------------------------------------------------------


def test_locality_bias_matches_loops():
    attn = make_attention()
    length = 7
    bias = attn.locality_bias(length, length)
    assert bias.shape == (N_HEADS, length, length)
    w, b = attn.locality_w.tolist(), attn.locality_b.tolist()
    for h in range(N_HEADS):
        for i in range(length):
            for j in range(length):
                assert bias[h, i, j].item() == pytest.approx(-abs(w[h] * abs(i - j) - b[h]), abs=1e-12)
    # A block of query rows is the same rows of the whole matrix.
    torch.testing.assert_close(attn.locality_bias(3, length, query_offset=4), bias[:, 4:7])


def loop_attention(attn: LocalityAwareAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax_j(q_i·k_j / sqrt(d_head) - |w_h |i - j| - b_h|) v_j per head, heads concatenated, out_proj."""
    n, length, _ = x.shape
    q, k, v = linear(x, attn.q_proj), linear(x, attn.k_proj), linear(x, attn.v_proj)
    w, b = attn.locality_w.tolist(), attn.locality_b.tolist()
    merged = torch.zeros(n, length, D_MODEL, dtype=torch.float64)
    for batch in range(n):
        for h in range(N_HEADS):
            cols = slice(h * D_HEAD, (h + 1) * D_HEAD)
            for i in range(length):
                logits = [
                    torch.dot(q[batch, i, cols], k[batch, j, cols]).item() / math.sqrt(D_HEAD)
                    - abs(w[h] * abs(i - j) - b[h])
                    for j in range(length)
                ]
                top = max(logits)
                weights = [math.exp(z - top) for z in logits]
                total = sum(weights)
                for j in range(length):
                    merged[batch, i, cols] += weights[j] / total * v[batch, j, cols]
    return linear(merged, attn.out_proj)


def test_attention_output_matches_loops():
    attn = make_attention()
    x = rand(2, 6, D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), loop_attention(attn, x), rtol=1e-10, atol=1e-10)


def test_long_sequences_attend_in_query_blocks_with_the_same_result(monkeypatch):
    import models.lanet as lanet

    attn = make_attention(seed=3)
    x = rand(2, 23, D_MODEL, seed=4)
    with torch.no_grad():
        whole = attn(x)
        monkeypatch.setattr(lanet, "QUERY_BLOCK", 5)  # 23 rows: blocks of 5, 5, 5, 5, 3
        blocked = attn(x)
    torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-6)
    # And blocked rows are still the right rows (not, e.g., every block biased as if it started at 0).
    with torch.no_grad():
        torch.testing.assert_close(blocked, loop_attention(attn, x), rtol=1e-10, atol=1e-10)


def test_locality_bias_makes_closer_snippets_attend_more():
    attn = make_attention(w=(0.5, 0.2), b=(0.0, 0.0))
    with torch.no_grad():  # identical content: every q·k is the same, only the bias differs
        attn.q_proj.weight.zero_()
        attn.k_proj.weight.zero_()
        probs = torch.softmax(attn.attention_logits(rand(1, 9, D_MODEL)), dim=-1)[0]  # [heads, L, L]
    for h in range(N_HEADS):
        for i in range(9):
            by_distance = {}
            for j in range(9):
                by_distance.setdefault(abs(i - j), []).append(probs[h, i, j].item())
            distances = sorted(by_distance)
            for d in distances:  # equal distance, equal weight (left and right)
                assert max(by_distance[d]) - min(by_distance[d]) < 1e-12
            weights = [by_distance[d][0] for d in distances]
            assert all(near > far for near, far in zip(weights, weights[1:])), (h, i, weights)
    # The steeper head is the more local one.
    assert probs[0, 4, 4] > probs[1, 4, 4]


def test_locality_offset_moves_the_preferred_distance():
    attn = make_attention(w=(0.5, 0.5), b=(1.0, 0.0))  # head 0 prefers |i - j| = b / w = 2
    with torch.no_grad():
        attn.q_proj.weight.zero_()
        attn.k_proj.weight.zero_()
        probs = torch.softmax(attn.attention_logits(rand(1, 9, D_MODEL)), dim=-1)[0]
    assert {int(probs[0, 4].argmax()), 8 - int(probs[0, 4].flip(0).argmax())} == {2, 6}
    assert int(probs[1, 4].argmax()) == 4


# --- causal classifier --------------------------------------------------------------------------------------


def test_classifier_matches_loops():
    torch.manual_seed(5)
    clf = CausalConvClassifier(d_model=3, hidden=4, kernel=3, dropout=0.0).double().eval()
    h = rand(2, 5, 3, seed=6)
    w1, b1 = clf.conv.weight, clf.conv.bias  # [hidden, d, kernel], [hidden]
    w2, b2 = clf.head.weight, clf.head.bias  # [1, hidden, 1], [1]
    expected = torch.zeros(2, 5, dtype=torch.float64)
    with torch.no_grad():
        for n in range(2):
            for t in range(5):
                logit = b2[0].item()
                for c in range(4):
                    pre = b1[c].item()
                    for m in range(3):
                        src = t - 2 + m  # kernel tap m sees time t - (kernel - 1) + m; before 0 is zero padding
                        if src >= 0:
                            pre += sum(w1[c, d, m].item() * h[n, src, d].item() for d in range(3))
                    logit += w2[0, c, 0].item() * max(pre, 0.0)
                expected[n, t] = 1.0 / (1.0 + math.exp(-logit))
        torch.testing.assert_close(clf(h), expected, rtol=1e-10, atol=1e-10)


def test_classifier_is_causal():
    torch.manual_seed(7)
    clf = CausalConvClassifier(d_model=16, hidden=8, kernel=9, dropout=0.6).eval()
    h = torch.randn(1, 20, 16)
    t = 11
    changed = h.clone()
    changed[:, t:] = torch.randn(1, 20 - t, 16) * 5
    with torch.no_grad():
        before, after = clf(h), clf(changed)
    assert torch.equal(before[:, :t], after[:, :t])
    assert not torch.allclose(before[:, t], after[:, t])  # the change is visible from t on
    # Only the last kernel inputs matter: changing time 0 leaves scores from t = 9 on untouched.
    early = h.clone()
    early[:, 0] += 3.0
    with torch.no_grad():
        moved = clf(early)
    assert torch.equal(moved[:, 9:], before[:, 9:]) and not torch.allclose(moved[:, :9], before[:, :9])


# --- the whole network ------------------------------------------------------------------------------------


def tiny(input_dims=(6, 4), seed=0, **overrides) -> LANet:
    torch.manual_seed(seed)
    return LANet(list(input_dims), LANetConfig(**{**TINY, **overrides}))


def test_forward_is_embedding_post_norm_block_and_classifier():
    model = tiny(dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0).double().eval()
    feats = [rand(2, 7, 6, seed=8), rand(2, 7, 4, seed=9)]
    layer = model.temporal
    with torch.no_grad():
        x = F.gelu(linear(torch.cat(feats, dim=-1), model.embedding[0]))
        x = F.layer_norm(x + layer.attention(x), (16,), layer.attn_norm.weight, layer.attn_norm.bias, 1e-5)
        ffn = linear(F.gelu(linear(x, layer.ffn[0])), layer.ffn[2])
        h = F.layer_norm(x + ffn, (16,), layer.ffn_norm.weight, layer.ffn_norm.bias, 1e-5)
        out = model(feats)
    assert isinstance(out, ModelOutput)
    torch.testing.assert_close(out.h, h, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.scores, model.classifier(h), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("length", [1, 2, 32, 41])
def test_tiny_shapes_and_deterministic_eval(length):
    model = tiny().eval()
    feats = [torch.randn(3, length, 6), torch.randn(3, length, 4)]
    with torch.no_grad():
        out, again = model(feats), model(feats)
    assert out.h.shape == (3, length, 16) and out.scores.shape == (3, length)
    assert ((out.scores > 0) & (out.scores < 1)).all()
    assert torch.equal(out.scores, again.scores) and torch.equal(out.h, again.h)


def test_default_size_forward():
    torch.manual_seed(0)
    model = LANet([1024, 1024, 512]).eval()
    feats = [torch.randn(2, 5, 1024), torch.randn(2, 5, 1024), torch.randn(2, 5, 512)]
    with torch.no_grad():
        out = model(feats)
    assert out.h.shape == (2, 5, 512) and out.scores.shape == (2, 5)
    assert model.temporal.attention.locality_w.shape == (4,)
    assert model.classifier.conv.kernel_size == (9,)


def test_feature_shapes_are_validated_by_index():
    model = tiny()
    with pytest.raises(ValueError, match="expected 2 feature tensors"):
        model([torch.randn(1, 4, 6)])
    with pytest.raises(ValueError, match=r"features\[1\]"):
        model([torch.randn(1, 4, 6), torch.randn(1, 4, 5)])
    with pytest.raises(ValueError, match=r"features\[1\]"):
        model([torch.randn(1, 4, 6), torch.randn(1, 3, 4)])
    with pytest.raises(ValueError, match=r"features\[0\]"):
        model([torch.randn(4, 6), torch.randn(4, 4)])
    with pytest.raises(ValueError, match=r"features\[0\]"):
        model([torch.randn(1, 0, 6), torch.randn(1, 0, 4)])
    with pytest.raises(ValueError, match="at least one"):
        LANet([])


def test_parameter_groups_partition_the_parameters():
    model = tiny()
    temporal, other = model.temporal_parameters(), model.other_parameters()
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    assert not ids(temporal) & ids(other)
    assert ids(temporal) | ids(other) == ids(model.parameters())
    assert len(temporal) + len(other) == len(list(model.parameters()))
    attention = model.temporal.attention
    assert {id(attention.locality_w), id(attention.locality_b)} <= ids(temporal)
    assert ids(model.temporal.attn_norm.parameters()) <= ids(temporal)
    assert ids(model.embedding.parameters()) | ids(model.classifier.parameters()) == ids(other)


def test_gradients_reach_the_locality_parameters():
    model = tiny(locality_b_init=0.5)
    feats = [torch.randn(4, 12, 6), torch.randn(4, 12, 4)]
    out = model(feats)
    loss, _ = lanet_loss(out.scores, torch.cat(feats, -1), torch.tensor([1, 0, 1, 0]))
    loss.backward()
    attention = model.temporal.attention
    for p in (attention.locality_w, attention.locality_b):
        assert p.grad is not None and torch.isfinite(p.grad).all() and (p.grad != 0).all()
    assert all(p.grad is not None for p in model.parameters())


def make_toy_set(n_per_class: int, length: int, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Two backbones of noise; anomalous bags get a feature bump on a random window of 5 snippets."""
    gen = torch.Generator().manual_seed(seed)
    n = 2 * n_per_class
    a = torch.randn(n, length, 6, generator=gen)
    b = torch.randn(n, length, 4, generator=gen)
    labels = torch.tensor([1] * n_per_class + [0] * n_per_class)
    for row in range(n_per_class):
        start = int(torch.randint(0, length - 5, (1,), generator=gen))
        a[row, start:start + 5] += 2.0
        b[row, start:start + 5] -= 2.0
    return [a, b], labels


def test_training_separates_anomalous_from_normal_videos():
    torch.manual_seed(0)
    model = LANet([6, 4], LANetConfig(**TINY))
    feats, labels = make_toy_set(16, 32, seed=10)
    inputs = torch.cat(feats, dim=-1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        optimiser.zero_grad()
        loss, _ = lanet_loss(model(feats).scores, inputs, labels)
        loss.backward()
        optimiser.step()
    test_feats, test_labels = make_toy_set(16, 32, seed=11)
    model.eval()
    with torch.no_grad():
        video = topk_mean(model(test_feats).scores, topk_count(32))
    anomalous, normal = video[test_labels == 1], video[test_labels == 0]
    # Every held-out anomalous video outranks every normal one.
    assert anomalous.min() > normal.max(), (anomalous, normal)
    assert anomalous.mean() - normal.mean() > 0.2, (anomalous, normal)
