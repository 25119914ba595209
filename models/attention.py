"""Multi-backbone disentangled attention of the Temporal Aggregation Module (method.md §3.2-3.5).

For backbone ``t`` of ``B`` and one head, with ``gamma`` the relative-distance bucket:

    A_t[i, j] = Qc_t[i]·Kc_t[j]                  self content->content
              + sum_{h != t} Qc_t[i]·Kc_h[j]      cross content->content
              + Qc_t[i]·Kr[gamma(i, j)]           content->position
              + Kc_t[j]·Qr[gamma(j, i)]           position->content
    H_t = softmax(A_t / sqrt((B + 2) * d_head)) Vc_t,      H = mean_t H_t

With ``B = 1`` the cross sum is empty and this is DeBERTa's disentangled attention (scale ``sqrt(3 d_head)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

DEFAULT_D_MODEL = 512
DEFAULT_N_HEADS = 8
DEFAULT_K = 25
DEFAULT_ATTENTION_DROPOUT = 0.1

# DeBERTa's initializer range; the paper does not say how R is initialised.
REL_EMBEDDING_INIT_STD = 0.02
# The paper writes Qr = R Wq_r, Kr = R Wk_r as pure matrices. A bias on Wk_r would only add Qc_t[i]·b, constant
# along j and therefore cancelled by the softmax, so the relative projections carry no bias.
REL_PROJECTION_BIAS = False
# Query rows attended at once. Evaluation runs whole videos (UCF-Crime has one of 6750 snippets): all L x L
# logits at once would take B x heads x L^2 floats per map (4.4 GB at L = 6750 with B = 3, 8 heads); blocks of
# rows take B x heads x QUERY_BLOCK x L. Training sequences (L = 32) are one block.
QUERY_BLOCK = 256


def relative_buckets(n_query: int, n_key: int, k: int, device: torch.device | str | None = None, *,
                     query_offset: int = 0, key_offset: int = 0) -> Tensor:
    """Relative-distance buckets ``gamma(i, j) = clamp(i - j + k, 0, 2k - 1)`` (paper eq. 1).

    Returns a LongTensor ``[n_query, n_key]`` with entries in ``[0, 2k)``: distances ``i - j <= -k`` share
    bucket 0 and ``i - j >= k`` share bucket ``2k - 1``, so any sequence length works with ``2k`` embeddings.
    Row ``r`` is position ``i = query_offset + r`` and column ``c`` position ``j = key_offset + c`` (a block of
    a longer sequence).
    """
    if k < 1:
        raise ValueError(f"the maximum relative distance k must be >= 1, got {k}")
    i = torch.arange(query_offset, query_offset + n_query, device=device).unsqueeze(1)
    j = torch.arange(key_offset, key_offset + n_key, device=device).unsqueeze(0)
    return (i - j + k).clamp_(0, 2 * k - 1)


class MultiBackboneDisentangledAttention(nn.Module):
    """Disentangled self/cross attention over ``B`` time-aligned backbone sequences.

    Parameters: per backbone ``t`` the content projections ``q_proj[t]``, ``k_proj[t]``, ``v_proj[t]``
    (Linear ``d -> d`` with bias); shared by all backbones the relative embeddings ``rel_embeddings``
    ``[2k, d]`` and their projections ``q_rel_proj``, ``k_rel_proj`` (Linear ``d -> d``).

    The four terms can each be switched off (Table 5 ablation); a switched-off term contributes 0. The logits
    are always divided by ``sqrt((B + 2) * d_head)``, the constant of the paper's eq. 5, whichever terms are on:
    the ablation removes a term from the sum, it does not re-derive the normalisation.
    """

    def __init__(
        self,
        n_backbones: int,
        d_model: int = DEFAULT_D_MODEL,
        n_heads: int = DEFAULT_N_HEADS,
        k: int = DEFAULT_K,
        attention_dropout: float = DEFAULT_ATTENTION_DROPOUT,
        self_c2c: bool = True,
        cross_c2c: bool = True,
        c2p: bool = True,
        p2c: bool = True,
    ) -> None:
        super().__init__()
        if n_backbones < 1:
            raise ValueError(f"n_backbones must be >= 1, got {n_backbones}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if k < 1:
            raise ValueError(f"the maximum relative distance k must be >= 1, got {k}")
        # With one backbone the cross sum is empty: a configuration whose only term is cross attends uniformly.
        if not (self_c2c or c2p or p2c or (cross_c2c and n_backbones > 1)):
            raise ValueError(
                "every attention term is switched off (with one backbone the cross term contributes nothing): "
                "enable at least one of self_c2c, cross_c2c, c2p, p2c"
            )
        self.n_backbones = n_backbones
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.k = k
        self.self_c2c = self_c2c
        self.cross_c2c = cross_c2c and n_backbones > 1
        self.c2p = c2p
        self.p2c = p2c
        self.scale = math.sqrt((n_backbones + 2) * self.d_head)

        self.q_proj = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_backbones))
        self.k_proj = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_backbones))
        self.v_proj = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_backbones))
        self.rel_embeddings = nn.Parameter(torch.empty(2 * k, d_model))
        nn.init.normal_(self.rel_embeddings, std=REL_EMBEDDING_INIT_STD)
        self.q_rel_proj = nn.Linear(d_model, d_model, bias=REL_PROJECTION_BIAS)
        self.k_rel_proj = nn.Linear(d_model, d_model, bias=REL_PROJECTION_BIAS)
        self.dropout = nn.Dropout(attention_dropout)
        # Query rows per block in forward; None attends all rows at once (one L x L map: exact for any L, which an
        # exported graph needs, since tracing unrolls the block loop for the example's length only).
        self.query_block: int | None = QUERY_BLOCK

    def _split_heads(self, x: Tensor) -> Tensor:
        """``[..., L, d]`` -> ``[..., heads, L, d_head]``."""
        *lead, length, _ = x.shape
        return x.reshape(*lead, length, self.n_heads, self.d_head).transpose(-3, -2)

    def _content(self, z: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """z[t] ``[N, L, d]`` -> Qc, Kc, Vc, each ``[B, N, heads, L, d_head]``."""
        if len(z) != self.n_backbones:
            raise ValueError(f"expected {self.n_backbones} backbone sequences, got {len(z)}")
        x = torch.stack(list(z))  # [B, N, L, d]
        n, length = x.shape[1], x.shape[2]
        # One batched matmul for the q, k, v projections of all backbones instead of 3B small ones.
        weight = torch.cat(
            [torch.stack([lin.weight for lin in proj]) for proj in (self.q_proj, self.k_proj, self.v_proj)], dim=1
        )  # [B, 3d, d]
        bias = torch.cat(
            [torch.stack([lin.bias for lin in proj]) for proj in (self.q_proj, self.k_proj, self.v_proj)], dim=1
        )  # [B, 3d]
        qkv = torch.baddbmm(bias.unsqueeze(1), x.reshape(self.n_backbones, n * length, self.d_model),
                            weight.transpose(1, 2))  # [B, N*L, 3d]
        qkv = qkv.reshape(self.n_backbones, n, length, 3, self.n_heads, self.d_head)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each [B, N, heads, L, d_head]
        return q, k, v

    def _relative(self) -> tuple[Tensor, Tensor]:
        """Qr, Kr, each ``[heads, 2k, d_head]``."""
        qr = self._split_heads(self.q_rel_proj(self.rel_embeddings))
        kr = self._split_heads(self.k_rel_proj(self.rel_embeddings))
        return qr, kr

    def _logits(self, q: Tensor, k: Tensor, first_row: int = 0, keep: Tensor | None = None) -> Tensor:
        """Scaled logits ``[B, N, heads, R, L]`` of the query rows ``first_row .. first_row + R`` from Qc
        ``[B, N, heads, R, d_head]`` (those rows) and Kc ``[B, N, heads, L, d_head]`` (all positions).
        ``keep`` (float ``[B, N, 1, 1, 1]``, 1 = present): the cross term sums over the present backbones only."""
        n_rows, length = q.shape[-2], k.shape[-2]
        # Scaling q (and the p2c table) is cheaper than scaling the R x L logits, and linear in every term.
        q = q / self.scale
        if self.self_c2c or self.cross_c2c:
            # sum_h Qc_t·Kc_h over the chosen h is a single product with a summed key.
            present = k if keep is None else k * keep
            k_total = present.sum(dim=0, keepdim=True) if self.cross_c2c else None
            if self.self_c2c and self.cross_c2c:
                keys = k_total.expand_as(k)
            elif self.self_c2c:
                keys = k
            else:
                keys = k_total - k
            logits = q @ keys.transpose(-1, -2)
        else:
            logits = q.new_zeros(*q.shape[:-1], length)
        # In-place accumulation keeps one R x L tensor alive per term fewer; autograd allows it because no
        # backward here needs the accumulated logits.
        if self.c2p or self.p2c:
            qr, kr = self._relative()
            if self.c2p:
                # Qc_t[i]·Kr[b] for all 2k buckets, then pick b = gamma(i, j).
                c2p_table = q @ kr.transpose(-1, -2)  # [B, N, heads, R, 2k]
                rows = relative_buckets(n_rows, length, self.k, q.device, query_offset=first_row)  # gamma(i, j)
                logits.add_(torch.gather(c2p_table, -1, rows.expand(*q.shape[:-1], length)))
            if self.p2c:
                # Row j of the table holds Kc_t[j]·Qr[b]; gathering b = gamma(j, i) gives [j, i], transposed to [i, j].
                p2c_table = (k @ qr.transpose(-1, -2)) / self.scale  # [B, N, heads, L, 2k]
                cols = relative_buckets(length, n_rows, self.k, q.device, key_offset=first_row)  # gamma(j, i)
                logits.add_(torch.gather(p2c_table, -1, cols.expand(*k.shape[:-1], n_rows)).transpose(-1, -2))
        return logits

    def attention_logits(self, z: Sequence[Tensor]) -> Tensor:
        """z[t] ``[N, L, d]`` -> logits ``[B, N, heads, L, L]``, already divided by ``sqrt((B + 2) d_head)``."""
        q, k, _ = self._content(z)
        return self._logits(q, k)

    def forward(self, z: Sequence[Tensor], keep: Tensor | None = None) -> Tensor:
        """z[t] ``[N, L, d]`` -> ``H = mean_t softmax(A_t) Vc_t`` with heads merged, ``[N, L, d]``.

        ``keep`` (bool ``[N, B]``, backbone dropout in training; None: every backbone present): for each row, the
        backbones left out are absent from the cross term and from the mean. The output projection is not
        applied here; it belongs to the layer.
        """
        q, k, v = self._content(z)
        weight = None if keep is None else keep.t().to(q.dtype)[:, :, None, None, None]  # [B, N, 1, 1, 1]
        if self.query_block is None:
            h = self.dropout(torch.softmax(self._logits(q, k, keep=weight), dim=-1)) @ v
        else:
            blocks = []
            for first in range(0, q.shape[-2], self.query_block):  # one block unless the sequence is long
                rows = q[..., first:first + self.query_block, :]
                probs = self.dropout(torch.softmax(self._logits(rows, k, first, keep=weight), dim=-1))
                blocks.append(probs @ v)  # [B, N, heads, R, d_head]
            h = torch.cat(blocks, dim=-2)  # [B, N, heads, L, d_head]
        h = h.mean(dim=0) if weight is None else (h * weight).sum(dim=0) / weight.sum(dim=0)  # [N, heads, L, dh]
        n, _, length, _ = h.shape
        return h.transpose(1, 2).reshape(n, length, self.d_model)
