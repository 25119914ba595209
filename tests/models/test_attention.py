"""Multi-backbone disentangled attention against hand computations with explicit loops (method.md §3.2-3.5)."""

from __future__ import annotations

import math

import pytest
import torch

from models.attention import MultiBackboneDisentangledAttention, relative_buckets

TERMS = ("self_c2c", "cross_c2c", "c2p", "p2c")
D_MODEL, N_HEADS, K = 8, 2, 2
D_HEAD = D_MODEL // N_HEADS
N, L = 2, 6  # L > 2k, so both clamps of gamma occur


def gamma(i: int, j: int, k: int) -> int:
    """The paper's eq. 1, written piecewise."""
    if i - j <= -k:
        return 0
    if i - j >= k:
        return 2 * k - 1
    return i - j + k


def make_attention(n_backbones: int, seed: int = 0, **terms: bool) -> MultiBackboneDisentangledAttention:
    torch.manual_seed(seed)
    attn = MultiBackboneDisentangledAttention(
        n_backbones, d_model=D_MODEL, n_heads=N_HEADS, k=K, attention_dropout=0.0, **terms
    ).double()
    # R is initialised at std 0.02; at unit scale the position terms are as large as the content terms, so a
    # wrong bucket cannot hide inside the tolerance.
    with torch.no_grad():
        attn.rel_embeddings.normal_()
    return attn.eval()


def make_inputs(n_backbones: int, n: int = N, length: int = L, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, length, D_MODEL, generator=gen, dtype=torch.float64) for _ in range(n_backbones)]


def linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    out = x @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


def loop_logits(attn, z, *, self_c2c=True, cross_c2c=True, c2p=True, p2c=True) -> torch.Tensor:
    """Unscaled A_t[i, j] of method.md §3.4, one head, one pair (i, j) at a time: [B, N, heads, L, L]."""
    n_backbones = len(z)
    n, length, _ = z[0].shape
    qc = [linear(z[t], attn.q_proj[t]) for t in range(n_backbones)]
    kc = [linear(z[t], attn.k_proj[t]) for t in range(n_backbones)]
    qr = linear(attn.rel_embeddings, attn.q_rel_proj)
    kr = linear(attn.rel_embeddings, attn.k_rel_proj)
    out = torch.zeros(n_backbones, n, N_HEADS, length, length, dtype=torch.float64)
    with torch.no_grad():
        for t in range(n_backbones):
            for b in range(n):
                for head in range(N_HEADS):
                    cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
                    for i in range(length):
                        for j in range(length):
                            q_i = qc[t][b, i, cols]
                            total = 0.0
                            if self_c2c:
                                total += torch.dot(q_i, kc[t][b, j, cols])
                            if cross_c2c:
                                for other in range(n_backbones):
                                    if other != t:
                                        total += torch.dot(q_i, kc[other][b, j, cols])
                            if c2p:
                                total += torch.dot(q_i, kr[gamma(i, j, K), cols])
                            if p2c:
                                total += torch.dot(kc[t][b, j, cols], qr[gamma(j, i, K), cols])
                            out[t, b, head, i, j] = total
    return out


def only(term: str) -> dict[str, bool]:
    return {name: name == term for name in TERMS}


# --- gamma -------------------------------------------------------------------------------------------------


def test_relative_buckets_explicit_values():
    expected = torch.tensor(
        [
            [2, 1, 0, 0, 0],
            [3, 2, 1, 0, 0],
            [3, 3, 2, 1, 0],
            [3, 3, 3, 2, 1],
            [3, 3, 3, 3, 2],
        ]
    )
    got = relative_buckets(5, 5, 2)
    assert got.dtype == torch.int64
    assert torch.equal(got, expected)


@pytest.mark.parametrize("k", [1, 2, 3, 25])
@pytest.mark.parametrize("n_query,n_key", [(7, 7), (4, 9), (9, 4), (1, 1)])
def test_relative_buckets_match_piecewise_definition(k, n_query, n_key):
    got = relative_buckets(n_query, n_key, k)
    assert got.shape == (n_query, n_key)
    for i in range(n_query):
        for j in range(n_key):
            assert got[i, j].item() == gamma(i, j, k), (i, j)
    assert got.min() >= 0 and got.max() <= 2 * k - 1


def test_relative_buckets_reject_k_below_one():
    with pytest.raises(ValueError):
        relative_buckets(3, 3, 0)


# --- logits, term by term --------------------------------------------------------------------------------


@pytest.mark.parametrize("term", TERMS)
def test_each_term_alone_matches_loops(term):
    attn = make_attention(3, **only(term))
    z = make_inputs(3)
    expected = loop_logits(attn, z, **only(term)) / math.sqrt((3 + 2) * D_HEAD)
    got = attn.attention_logits(z)
    assert got.shape == (3, N, N_HEADS, L, L)
    assert torch.allclose(got, expected, rtol=0, atol=1e-10)
    assert expected.abs().max() > 0.1  # the term is really there


@pytest.mark.parametrize(
    "terms",
    [
        dict(self_c2c=True, cross_c2c=True, c2p=True, p2c=True),
        dict(self_c2c=True, cross_c2c=True, c2p=False, p2c=False),
        dict(self_c2c=False, cross_c2c=True, c2p=True, p2c=False),
        dict(self_c2c=True, cross_c2c=False, c2p=False, p2c=True),
    ],
)
def test_term_combinations_match_loops(terms):
    attn = make_attention(3, **terms)
    z = make_inputs(3)
    expected = loop_logits(attn, z, **terms) / math.sqrt(5 * D_HEAD)
    assert torch.allclose(attn.attention_logits(z), expected, rtol=0, atol=1e-10)


def test_all_terms_are_the_sum_of_the_single_terms():
    full = make_attention(3)
    z = make_inputs(3)
    total = torch.zeros_like(full.attention_logits(z))
    for term in TERMS:
        single = make_attention(3, seed=123, **only(term))
        single.load_state_dict(full.state_dict())
        total += single.attention_logits(z)
    assert torch.allclose(full.attention_logits(z), total, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n_backbones", [1, 2, 3])
def test_scale_is_sqrt_of_b_plus_two_times_d_head(n_backbones):
    attn = make_attention(n_backbones)
    z = make_inputs(n_backbones)
    raw = loop_logits(attn, z)
    scale = {1: math.sqrt(3 * 4), 2: math.sqrt(4 * 4), 3: math.sqrt(5 * 4)}[n_backbones]  # d_head = 4
    assert attn.scale == pytest.approx(scale)
    assert torch.allclose(attn.attention_logits(z) * scale, raw, rtol=0, atol=1e-10)


def test_scale_does_not_change_when_terms_are_switched_off():
    attn = make_attention(2, self_c2c=True, cross_c2c=False, c2p=False, p2c=False)
    assert attn.scale == pytest.approx(math.sqrt(4 * D_HEAD))


def test_sequences_longer_than_2k_and_not_32():
    attn = make_attention(2)
    for length in (1, 3, 2 * K + 5):
        z = make_inputs(2, n=1, length=length)
        expected = loop_logits(attn, z) / math.sqrt(4 * D_HEAD)
        assert torch.allclose(attn.attention_logits(z), expected, rtol=0, atol=1e-10)


# --- B = 1 is plain disentangled attention ----------------------------------------------------------------


def deberta_logits(q, k, qr, kr, k_max):
    """DeBERTa's c2c + c2p + p2c for one head, q/k [L, dh], qr/kr [2k, dh], via materialised relative tables."""
    length, d_head = q.shape
    rel = torch.arange(length)[:, None] - torch.arange(length)[None, :]  # i - j
    kr_ij = kr[(rel + k_max).clamp(0, 2 * k_max - 1)]  # Kr[delta(i, j)], [L, L, dh]
    qr_ji = qr[(-rel + k_max).clamp(0, 2 * k_max - 1)]  # Qr[delta(j, i)] at [i, j]
    c2c = q @ k.T
    c2p = (q[:, None, :] * kr_ij).sum(-1)
    p2c = (k[None, :, :] * qr_ji).sum(-1)
    return (c2c + c2p + p2c) / math.sqrt(3 * d_head)


def test_single_backbone_is_plain_disentangled_attention():
    attn = make_attention(1)
    (z,) = make_inputs(1)
    qc, kc, vc = (linear(z, proj[0]) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    qr = linear(attn.rel_embeddings, attn.q_rel_proj)
    kr = linear(attn.rel_embeddings, attn.k_rel_proj)
    expected_logits = torch.zeros(1, N, N_HEADS, L, L, dtype=torch.float64)
    expected_out = torch.zeros(N, L, D_MODEL, dtype=torch.float64)
    with torch.no_grad():
        for b in range(N):
            for head in range(N_HEADS):
                cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
                logits = deberta_logits(qc[b, :, cols], kc[b, :, cols], qr[:, cols], kr[:, cols], K)
                expected_logits[0, b, head] = logits
                expected_out[b, :, cols] = torch.softmax(logits, dim=-1) @ vc[b, :, cols]
    assert torch.allclose(attn.attention_logits([z]), expected_logits, rtol=0, atol=1e-10)
    assert torch.allclose(attn([z]), expected_out, rtol=0, atol=1e-10)

    # The cross switch is irrelevant with one backbone.
    no_cross = make_attention(1, seed=5, cross_c2c=False)
    no_cross.load_state_dict(attn.state_dict())
    assert torch.allclose(no_cross.attention_logits([z]), expected_logits, rtol=0, atol=1e-10)


# --- forward ----------------------------------------------------------------------------------------------


def loop_forward(attn, z) -> torch.Tensor:
    """softmax over j, weighted sum of V rows, mean over backbones, heads side by side: [N, L, d]."""
    n_backbones = len(z)
    scaled = loop_logits(attn, z) / math.sqrt((n_backbones + 2) * D_HEAD)
    vc = [linear(z[t], attn.v_proj[t]) for t in range(n_backbones)]
    out = torch.zeros(N, L, D_MODEL, dtype=torch.float64)
    with torch.no_grad():
        for b in range(N):
            for head in range(N_HEADS):
                cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
                for i in range(L):
                    acc = torch.zeros(D_HEAD, dtype=torch.float64)
                    for t in range(n_backbones):
                        row = scaled[t, b, head, i]
                        weights = [math.exp(row[j] - row.max()) for j in range(L)]
                        norm = sum(weights)
                        for j in range(L):
                            acc += weights[j] / norm * vc[t][b, j, cols]
                    out[b, i, cols] = acc / n_backbones
    return out


def test_forward_matches_loop_softmax_then_values_then_backbone_mean():
    torch.manual_seed(0)
    attn = MultiBackboneDisentangledAttention(3, d_model=D_MODEL, n_heads=N_HEADS, k=K, attention_dropout=0.5)
    attn = attn.double()
    with torch.no_grad():
        attn.rel_embeddings.normal_()
    z = make_inputs(3)
    attn.eval()
    got = attn(z)
    assert got.shape == (N, L, D_MODEL)
    assert torch.allclose(got, loop_forward(attn, z), rtol=0, atol=1e-10)
    # In training mode the dropout on the attention probabilities is active.
    attn.train()
    assert not torch.allclose(attn(z), got)


# --- configuration errors ---------------------------------------------------------------------------------


def test_all_terms_off_raises():
    with pytest.raises(ValueError, match="switched off"):
        MultiBackboneDisentangledAttention(3, d_model=D_MODEL, n_heads=N_HEADS, k=K, **{t: False for t in TERMS})


def test_cross_term_alone_with_one_backbone_raises():
    with pytest.raises(ValueError):
        MultiBackboneDisentangledAttention(1, d_model=D_MODEL, n_heads=N_HEADS, k=K, **only("cross_c2c"))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        MultiBackboneDisentangledAttention(2, d_model=10, n_heads=3)
    attn = make_attention(2)
    with pytest.raises(ValueError):
        attn(make_inputs(3))


def test_buckets_of_a_block_are_the_block_of_the_full_matrix():
    from models.attention import relative_buckets

    full = relative_buckets(20, 20, 3)
    assert torch.equal(relative_buckets(5, 20, 3, query_offset=7), full[7:12])
    assert torch.equal(relative_buckets(20, 5, 3, key_offset=7), full[:, 7:12])


def test_long_sequences_attend_in_query_blocks_with_the_same_result():
    import models.attention as attention

    torch.manual_seed(0)
    module = attention.MultiBackboneDisentangledAttention(2, d_model=8, n_heads=2, k=3).eval()
    assert module.query_block == attention.QUERY_BLOCK
    z = [torch.randn(2, 23, 8), torch.randn(2, 23, 8)]
    with torch.no_grad():
        whole = module(z)  # one block
        module.query_block = 5  # 23 rows: blocks of 5, 5, 5, 5, 3
        blocked = module(z)
        module.query_block = None  # all rows at once, without the block loop (what an export traces)
        unblocked = module(z)
    torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(unblocked, whole, rtol=1e-6, atol=1e-6)
