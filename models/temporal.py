"""Alternative temporal modules for ``VADModel`` (paper Table 1 comparison, Table 4 "w/o TAM").

``ModelConfig.temporal`` picks the module between the projections and the classifier; each maps the ``B``
projected sequences ``Z_t`` ``[N, L, d]`` to ``h`` ``[N, L, d]``, for any ``L >= 1``:

- ``tam`` (default): the Temporal Aggregation layer over the B sequences (``models.vad_model``), unchanged.

Every other module first fuses the B sequences into their mean ``x = mean_t Z_t`` ``[N, L, d]`` (the fusion the
TAM's residual uses, so the comparison isolates the temporal mixing), then:

- ``disentangled``: ``TemporalAggregationLayer(1, config)`` on ``[x]``: DeBERTa's disentangled attention (no
  cross term, logits scaled by ``sqrt(3 d_head)``); the c2p / p2c / self_c2c switches still apply.
- ``mha``: ``nn.MultiheadAttention`` (no position information) as the mixing sublayer of a post-norm block:
  ``x = LN(x + Dropout(mha(x, x, x)))``, then the TAM's FFN sublayer ``LN(x + Dropout(FFN(x)))`` with
  FFN ``d -> ffn_dim -> d`` (GELU).
- ``lstm`` / ``gru`` / ``rnn`` (tanh): one bidirectional layer with ``d / 2`` hidden units per direction (d
  even), the two directions concatenated back to ``d``, in the same post-norm block.
- ``cnn1d``: ``Conv1d(d, d, conv_kernel, padding=conv_kernel // 2)`` over time then ReLU, in the same block.
- ``none`` (Table 4 "w/o TAM"): ``h = x``; no temporal parameters at all.

``ModelConfig.projection = False`` (only with ``none`` and one backbone) drops the projection MLPs too, so the
classifier reads the backbone feature ``[N, L, D]`` directly: Sultani et al.'s MIL MLP ``D -> 512 -> 32 -> 1``.

This module holds the building blocks that need no ``ModelConfig``; ``models.vad_model`` assembles them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

# ModelConfig.temporal's choices (described above); "tam" and "disentangled" are built in models.vad_model.
TEMPORAL_MODULES = ("tam", "disentangled", "mha", "lstm", "gru", "rnn", "cnn1d", "none")
RECURRENT_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # nn.RNN's default nonlinearity is tanh


def mean_fusion(z: Sequence[Tensor], keep: Tensor | None = None) -> Tensor:
    """B sequences ``[N, L, d]`` -> their mean ``[N, L, d]`` (one sequence is returned as it is). ``keep`` (bool
    ``[N, B]``, backbone dropout): each row's mean over its present backbones only."""
    if len(z) == 1:
        return z[0]
    stacked = torch.stack(list(z))  # [B, N, L, d]
    if keep is None:
        return stacked.mean(dim=0)
    weight = keep.t().to(stacked.dtype)[:, :, None, None]  # [B, N, 1, 1]
    return (stacked * weight).sum(dim=0) / weight.sum(dim=0)


class MeanFusion(nn.Module):
    """Mean of the B sequences, then a single-sequence module: list of B ``[N, L, d]`` -> ``module(x)``.

    Gives the non-TAM modules the TAM's interface (a list of B sequences). Holds no parameters of its own, so
    ``MeanFusion(nn.Identity())`` is the parameter-free ``none`` module.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, z: Sequence[Tensor], keep: Tensor | None = None) -> Tensor:
        return self.module(mean_fusion(z, keep))


class PostNormBlock(nn.Module):
    """DeBERTa-style post-norm block around a temporal mixer: ``[N, L, d] -> [N, L, d]``.

    ``x = LN(x + Dropout(mixer(x)))``, then ``LN(x + Dropout(FFN(x)))`` with FFN ``d -> ffn_dim -> d`` (GELU):
    the TAM layer's structure with its attention replaced by ``mixer`` (any ``[N, L, d] -> [N, L, d]`` module).
    """

    def __init__(self, mixer: nn.Module, d_model: int, ffn_dim: int, dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        self.mixer = mixer
        self.mix_dropout = nn.Dropout(dropout)
        self.mix_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, d_model))
        self.ffn_dropout = nn.Dropout(dropout)
        self.ffn_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = self.mix_norm(x + self.mix_dropout(self.mixer(x)))
        return self.ffn_norm(x + self.ffn_dropout(self.ffn(x)))


class MultiheadSelfAttention(nn.Module):
    """Standard multi-head self-attention over time, ``[N, L, d] -> [N, L, d]`` (includes its output projection).

    Carries no position information, so it is equivariant to permutations of the time axis.
    """

    def __init__(self, d_model: int, n_heads: int, attention_dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=attention_dropout, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        # need_weights=False lets PyTorch use its fused attention, which does not keep the L x L map of a
        # whole evaluation video in memory.
        return self.attention(x, x, x, need_weights=False)[0]


class BidirectionalRecurrent(nn.Module):
    """One bidirectional LSTM / GRU / tanh-RNN layer, ``[N, L, d] -> [N, L, d]``.

    ``d / 2`` hidden units per direction, so the concatenated directions are ``d`` wide and fit the residual.
    """

    def __init__(self, kind: str, d_model: int) -> None:
        super().__init__()
        if kind not in RECURRENT_CELLS:
            raise ValueError(f"unknown recurrent cell {kind!r}; choose one of {', '.join(RECURRENT_CELLS)}")
        if d_model % 2 != 0:
            raise ValueError(f"a bidirectional {kind} needs an even d_model (d/2 per direction), got {d_model}")
        self.rnn = RECURRENT_CELLS[kind](d_model, d_model // 2, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]


class TemporalConv(nn.Module):
    """1D convolution over time then ReLU, ``[N, L, d] -> [N, L, d]``; odd kernel, 'same' zero padding."""

    def __init__(self, d_model: int, kernel: int) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"the temporal convolution needs an odd kernel >= 1 ('same' padding), got {kernel}")
        self.conv = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        # Conv1d wants channels before time: [N, L, d] -> [N, d, L] and back.
        return torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
