"""LA-Net, the Locality-aware Attention Network of Pu & Wu (method.md §8).

``LANet(input_dims)``: the backbone features are concatenated and embedded (Linear, GELU, dropout), passed through
one post-norm self-attention block whose logits carry a learned locality bias, and scored by a causal temporal
convolution classifier with a sigmoid:

    logits_h[i, j] = q_i·k_j / sqrt(d_head) + bias_h[i, j],    bias_h[i, j] = -| w_h |i - j| - b_h |

With ``w_h > 0`` and ``b_h = 0`` the bias falls linearly with the distance, so closer snippets attend more; a
learned ``b_h > 0`` moves the preferred distance to ``b_h / w_h`` (the "re-calibrated location preference").

The paper's constants are not available; every default of ``LANetConfig`` is the project's choice (method.md §8).
Its losses (top-k BCE and Discriminative Dynamics Learning) are in ``models.dynamics``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import QUERY_BLOCK
from models.normalization import INPUT_NORMS, build_input_norms, set_input_statistics
from models.vad_model import ModelOutput

# QUERY_BLOCK (imported above, read at call time from this module's namespace) bounds the attention memory:
# logits are built for QUERY_BLOCK query rows at a time, N x heads x QUERY_BLOCK x L floats instead of
# N x heads x L x L (a 7000-snippet video would need 4 x 49M floats per video at once with 4 heads).


@dataclass(frozen=True)
class LANetConfig:
    """LA-Net hyper-parameters. The paper's constants are unavailable: every default here is the project's."""

    # Width and block sizes as the DAKD temporal layer (models.vad_model.ModelConfig), so the two models are
    # comparable at equal width; 4 heads because the only position signal is one scalar pair per head.
    d_model: int = 512
    n_heads: int = 4
    ffn_dim: int = 1024
    # Transformer-standard hidden and attention dropout (as the DAKD layer's).
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    # bias = -|w |i - j| - b|: w = 0.1 costs a neighbour 10 snippets away a factor e^-1 before learning, mild
    # enough that long-range correlations stay reachable; b = 0 starts with "nearest attends most".
    locality_w_init: float = 0.1
    locality_b_init: float = 0.0
    classifier_hidden: int = 128
    # Causal conv kernel (method.md §8): output t sees inputs t-8 .. t, left zero-padding kernel-1.
    classifier_kernel: int = 9
    # As the RTFM-family MIL heads (and the DAKD classifier).
    classifier_dropout: float = 0.6
    # As ModelConfig.input_norm (models.normalization): each backbone's features z-scored with training statistics.
    input_norm: str = "standardize"

    def __post_init__(self) -> None:
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"LANetConfig.input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")
        for name in ("d_model", "n_heads", "ffn_dim", "classifier_hidden", "classifier_kernel"):
            if getattr(self, name) < 1:
                raise ValueError(f"LANetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"LANetConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("dropout", "attention_dropout", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"LANetConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.layer_norm_eps > 0.0:
            raise ValueError(f"LANetConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        for name in ("locality_w_init", "locality_b_init"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"LANetConfig.{name} must be a finite number, got {getattr(self, name)}")


class LocalityAwareAttention(nn.Module):
    """Multi-head self-attention with a learned locality bias, ``[N, L, d] -> [N, L, d]``.

    Parameters: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (Linear ``d -> d`` with bias) and per head the
    scalars ``locality_w`` ``[heads]``, ``locality_b`` ``[heads]`` of the bias ``-|w_h |i - j| - b_h|``.
    The output projection is applied here (unlike ``MultiBackboneDisentangledAttention``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        attention_dropout: float,
        w_init: float,
        b_init: float,
    ) -> None:
        super().__init__()
        if d_model < 1 or n_heads < 1:
            raise ValueError(f"d_model and n_heads must be >= 1, got {d_model} and {n_heads}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.scale = math.sqrt(self.d_head)
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.locality_w = nn.Parameter(torch.full((n_heads,), float(w_init)))
        self.locality_b = nn.Parameter(torch.full((n_heads,), float(b_init)))
        self.dropout = nn.Dropout(attention_dropout)

    def locality_bias(self, n_query: int, n_key: int, *, query_offset: int = 0) -> Tensor:
        """``bias[h, r, c] = -|w_h |i - j| - b_h|`` with ``i = query_offset + r``, ``j = c``: ``[heads, R, L]``.

        In the dtype and on the device of ``locality_w``; differentiable in ``w`` and ``b``.
        """
        w = self.locality_w
        i = torch.arange(query_offset, query_offset + n_query, device=w.device).unsqueeze(1)
        j = torch.arange(n_key, device=w.device).unsqueeze(0)
        distance = (i - j).abs().to(w.dtype)  # [R, L]
        return -(w[:, None, None] * distance - self.locality_b[:, None, None]).abs()

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x`` ``[N, L, d]`` -> q, k, v, each ``[N, heads, L, d_head]``."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"attention input must be [N, L, {self.d_model}], got {tuple(x.shape)}")
        n, length, _ = x.shape

        def split(t: Tensor) -> Tensor:
            return t.reshape(n, length, self.n_heads, self.d_head).transpose(1, 2)

        return split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))

    def _logits(self, q: Tensor, k: Tensor, first_row: int = 0) -> Tensor:
        """Logits ``[N, heads, R, L]`` for the query rows ``first_row .. first_row + R`` (``q`` holds those rows)."""
        # Scaling q is cheaper than scaling the R x L logits.
        content = (q / self.scale) @ k.transpose(-1, -2)
        bias = self.locality_bias(q.shape[-2], k.shape[-2], query_offset=first_row)
        return content + bias.to(content.dtype)

    def attention_logits(self, x: Tensor) -> Tensor:
        """All logits at once, ``[N, heads, L, L]`` (O(L^2) memory: for inspection and tests, not long videos)."""
        q, k, _ = self._heads(x)
        return self._logits(q, k)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._heads(x)
        n, _, length, _ = q.shape
        blocks = []
        for first in range(0, length, QUERY_BLOCK):  # one block in training (L = 32), many on a whole video
            logits = self._logits(q[:, :, first:first + QUERY_BLOCK], k, first)
            blocks.append(self.dropout(torch.softmax(logits, dim=-1)) @ v)  # [N, heads, R, d_head]
        merged = torch.cat(blocks, dim=2).transpose(1, 2).reshape(n, length, self.d_model)
        return self.out_proj(merged)


class LocalityAwareLayer(nn.Module):
    """Post-norm block ``[N, L, d] -> [N, L, d]``:

    ``x = LN(x + Dropout(attn(x)))``, then ``x = LN(x + Dropout(FFN(x)))`` with FFN ``d -> ffn_dim -> d`` (GELU).
    """

    def __init__(self, config: LANetConfig) -> None:
        super().__init__()
        self.attention = LocalityAwareAttention(
            config.d_model,
            config.n_heads,
            attention_dropout=config.attention_dropout,
            w_init=config.locality_w_init,
            b_init=config.locality_b_init,
        )
        self.attn_dropout = nn.Dropout(config.dropout)
        self.attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(config.d_model, config.ffn_dim), nn.GELU(), nn.Linear(config.ffn_dim, config.d_model)
        )
        self.ffn_dropout = nn.Dropout(config.dropout)
        self.ffn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attn_norm(x + self.attn_dropout(self.attention(x)))
        return self.ffn_norm(x + self.ffn_dropout(self.ffn(x)))


class CausalConvClassifier(nn.Module):
    """Causal temporal classifier ``h [N, L, d] -> scores [N, L]`` in (0, 1).

    ``Conv1d(d, hidden, kernel)`` on the sequence left-padded with ``kernel - 1`` zeros (score t sees
    ``h[t - kernel + 1 .. t]`` only), ReLU, dropout, ``Conv1d(hidden, 1, 1)``, sigmoid. Any ``L >= 1``.
    """

    def __init__(self, d_model: int, hidden: int, kernel: int, dropout: float) -> None:
        super().__init__()
        if kernel < 1:
            raise ValueError(f"the classifier kernel must be >= 1, got {kernel}")
        self.kernel = kernel
        self.conv = nn.Conv1d(d_model, hidden, kernel)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv1d(hidden, 1, 1)

    def forward(self, h: Tensor) -> Tensor:
        if h.dim() != 3 or h.shape[-1] != self.conv.in_channels:
            raise ValueError(f"classifier input must be [N, L, {self.conv.in_channels}], got {tuple(h.shape)}")
        # Padding only on the left is what makes it causal; a symmetric padding would let t see t + 4.
        x = F.pad(h.transpose(1, 2), (self.kernel - 1, 0))  # [N, d, kernel - 1 + L]
        x = self.dropout(torch.relu(self.conv(x)))  # [N, hidden, L]
        return torch.sigmoid(self.head(x).squeeze(1))  # [N, L]


class LANet(nn.Module):
    """Embedding -> locality-aware attention block -> causal conv classifier.

    ``forward(features)``: ``features[b]`` ``[N, L, input_dims[b]]`` for any ``L >= 1`` (32 segments in training,
    a whole video in evaluation) -> ``ModelOutput(h [N, L, d_model], scores [N, L])``.
    """

    def __init__(self, input_dims: Sequence[int], config: LANetConfig = LANetConfig()) -> None:
        super().__init__()
        if len(input_dims) < 1:
            raise ValueError("LANet needs at least one backbone input dimension")
        self.input_dims = tuple(int(dim) for dim in input_dims)
        if min(self.input_dims) < 1:
            raise ValueError(f"backbone input dimensions must be >= 1, got {self.input_dims}")
        self.config = config
        self.input_norms = build_input_norms(config.input_norm, self.input_dims)
        # One embedding of the concatenated backbones (not one per backbone): the locality attention has no
        # cross-backbone term, so fusion happens here.
        self.embedding = nn.Sequential(
            nn.Linear(sum(self.input_dims), config.d_model), nn.GELU(), nn.Dropout(config.dropout)
        )
        self.temporal = LocalityAwareLayer(config)
        self.classifier = CausalConvClassifier(
            config.d_model, config.classifier_hidden, config.classifier_kernel, config.classifier_dropout
        )

    def forward(self, features: Sequence[Tensor]) -> ModelOutput:
        if len(features) != len(self.input_dims):
            raise ValueError(f"expected {len(self.input_dims)} feature tensors, got {len(features)}")
        lead = features[0].shape[:-1]
        for b, (x, dim) in enumerate(zip(features, self.input_dims)):
            if x.dim() != 3 or x.shape[-1] != dim or x.shape[:-1] != lead or x.shape[1] < 1:
                raise ValueError(
                    f"features[{b}] has shape {tuple(x.shape)}; "
                    f"expected [N, L, {dim}] with L >= 1 and the same N, L as features[0]"
                )
        x = self.embedding(torch.cat([norm(x) for norm, x in zip(self.input_norms, features)], dim=-1))
        h = self.temporal(x)
        return ModelOutput(h=h, scores=self.classifier(h))

    def set_input_statistics(self, statistics: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Per backbone ``(mean [D_b], std [D_b])`` of the training features, for ``input_norm="standardize"``."""
        set_input_statistics(self.input_norms, statistics)

    def temporal_parameters(self) -> list[nn.Parameter]:
        """The attention block: q/k/v/out projections, locality ``w`` and ``b``, FFN, both LayerNorms."""
        return list(self.temporal.parameters())

    def other_parameters(self) -> list[nn.Parameter]:
        """Embedding and classifier; with ``temporal_parameters`` a partition of ``parameters()``."""
        return list(self.embedding.parameters()) + list(self.classifier.parameters())
