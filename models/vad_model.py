"""The DAKD Teacher / Student network (method.md §3-4).

``VADModel(input_dims)``: one projection MLP per backbone -> one Temporal Aggregation layer (multi-backbone
disentangled attention, DeBERTa-style post-norm block) -> segment classifier with a sigmoid.
The Teacher is ``VADModel([1024, 1024, 512])`` (I3D, S3D, CLIP); the Student is ``VADModel([512])`` (CLIP), for
which the cross term is empty and the logit scale is ``sqrt(3 d_head)``.

``ModelConfig.temporal`` swaps the temporal module for the paper's Table 1 / Table 4 comparisons and
``ModelConfig.projection = False`` gives Sultani's MIL MLP; the choices are described in ``models.temporal``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.attention import MultiBackboneDisentangledAttention
from models.normalization import INPUT_NORMS, build_input_norms, set_input_statistics
from models.temporal import (
    RECURRENT_CELLS,
    TEMPORAL_MODULES,
    BidirectionalRecurrent,
    MeanFusion,
    MultiheadSelfAttention,
    PostNormBlock,
    TemporalConv,
    mean_fusion,
)

CONTRASTIVE_IN = 512
CONTRASTIVE_HIDDEN = 512
CONTRASTIVE_OUT = 128


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; the defaults are the paper's, or marked as the project's choice."""

    d_model: int = 512
    projection_hidden: int = 512
    n_heads: int = 8
    k: int = 25
    ffn_dim: int = 1024
    # The paper is silent on dropout inside the TAM; these are DeBERTa's defaults (hidden and attention dropout).
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    classifier_hidden: int = 512
    classifier_bottleneck: int = 32
    classifier_dropout: float = 0.6
    self_c2c: bool = True
    cross_c2c: bool = True
    c2p: bool = True
    p2c: bool = True
    # The temporal module between projections and classifier (models.temporal); "tam" is the paper's.
    temporal: str = "tam"
    # False: no projection MLPs, the classifier reads the backbone feature (Sultani's MIL MLP); needs
    # temporal="none" and a single backbone.
    projection: bool = True
    # Kernel of the "cnn1d" module over time: odd, so 'same' padding keeps the L segments centred.
    conv_kernel: int = 3
    # Per-dimension z-score of each backbone's features with the training set's statistics (models.normalization);
    # "none" is the paper's (features as stored).
    input_norm: str = "standardize"
    # Backbone dropout (the project's): in training, each sample leaves out each backbone with this probability
    # (never all of them), so every backbone's path must score on its own and the fusion cannot come to lean on
    # one weak backbone. 0 is the paper's TAM; it has no effect with one backbone or in evaluation.
    backbone_dropout: float = 0.0

    def __post_init__(self) -> None:
        sizes = ("d_model", "projection_hidden", "n_heads", "k", "ffn_dim", "classifier_hidden",
                 "classifier_bottleneck")
        for name in sizes:
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"ModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("dropout", "attention_dropout", "classifier_dropout", "backbone_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"ModelConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not (self.self_c2c or self.cross_c2c or self.c2p or self.p2c):
            raise ValueError("ModelConfig switches every attention term off: enable at least one")
        if self.temporal not in TEMPORAL_MODULES:
            raise ValueError(
                f"ModelConfig.temporal must be one of {', '.join(TEMPORAL_MODULES)}, got {self.temporal!r}"
            )
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"ModelConfig.input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"ModelConfig.conv_kernel must be odd and >= 1 ('same' padding), got {self.conv_kernel}")
        if self.temporal in RECURRENT_CELLS and self.d_model % 2 != 0:
            raise ValueError(
                f"ModelConfig.temporal={self.temporal!r} is bidirectional with d_model / 2 units per direction: "
                f"d_model must be even, got {self.d_model}"
            )
        if not self.projection and self.temporal != "none":
            raise ValueError(
                "ModelConfig.projection=False (Sultani's MIL MLP on the raw backbone feature) needs "
                f"temporal='none' (and a single backbone), got temporal={self.temporal!r}"
            )


class ProjectionMLP(nn.Module):
    """Per-backbone projection ``[N, L, in_dim] -> [N, L, out_dim]``: Linear, ReLU, Linear."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Classifier(nn.Module):
    """Segment classifier ``h [N, L, in_dim] -> scores [N, L]`` in (0, 1).

    ``in_dim -> hidden -> bottleneck -> 1``, ReLU and dropout after each hidden layer (as RTFM's and Sultani's MIL
    heads), sigmoid at the end. ``in_dim`` defaults to ``config.d_model``; without projections it is the
    backbone's feature width.
    """

    def __init__(self, config: ModelConfig, in_dim: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.d_model if in_dim is None else in_dim, config.classifier_hidden),
            nn.ReLU(),
            nn.Dropout(config.classifier_dropout),
            nn.Linear(config.classifier_hidden, config.classifier_bottleneck),
            nn.ReLU(),
            nn.Dropout(config.classifier_dropout),
            nn.Linear(config.classifier_bottleneck, 1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return torch.sigmoid(self.net(h).squeeze(-1))


class TemporalAggregationLayer(nn.Module):
    """One DeBERTa-style post-norm layer over ``B`` backbone sequences: list of B ``[N, L, d]`` -> ``[N, L, d]``.

    attention -> output projection -> dropout -> + mean_t Z_t -> LayerNorm
    -> FFN (d -> ffn_dim, GELU, -> d) -> dropout -> + residual -> LayerNorm.
    """

    def __init__(self, n_backbones: int, config: ModelConfig) -> None:
        super().__init__()
        self.attention = MultiBackboneDisentangledAttention(
            n_backbones,
            d_model=config.d_model,
            n_heads=config.n_heads,
            k=config.k,
            attention_dropout=config.attention_dropout,
            self_c2c=config.self_c2c,
            cross_c2c=config.cross_c2c,
            c2p=config.c2p,
            p2c=config.p2c,
        )
        self.out_proj = nn.Linear(config.d_model, config.d_model)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(config.d_model, config.ffn_dim), nn.GELU(), nn.Linear(config.ffn_dim, config.d_model)
        )
        self.ffn_dropout = nn.Dropout(config.dropout)
        self.ffn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, z: Sequence[Tensor], keep: Tensor | None = None) -> Tensor:
        """``keep``: bool ``[N, B]``, the backbones present in each row (backbone dropout; None: all)."""
        # The aggregated output replaces B inputs, so the residual is their mean (the paper's H is a mean too).
        residual = mean_fusion(z, keep)
        x = self.attn_norm(residual + self.attn_dropout(self.out_proj(self.attention(z, keep))))
        return self.ffn_norm(x + self.ffn_dropout(self.ffn(x)))


class DisentangledLayer(nn.Module):
    """The ``disentangled`` module's layer: ``TemporalAggregationLayer`` with B = 1 on one sequence,
    ``[N, L, d] -> [N, L, d]`` (plain DeBERTa attention, logits scaled by ``sqrt(3 d_head)``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer = TemporalAggregationLayer(1, config)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer([x])


def build_temporal(n_backbones: int, config: ModelConfig) -> nn.Module:
    """The temporal module ``config.temporal``: list of B ``[N, L, d]`` -> ``[N, L, d]`` (see models.temporal).

    ``tam`` is the bare ``TemporalAggregationLayer`` (its state-dict keys are those of every earlier checkpoint);
    the others fuse the B sequences into their mean first (``MeanFusion``).
    """
    if config.temporal == "tam":
        return TemporalAggregationLayer(n_backbones, config)
    if config.temporal == "none":
        return MeanFusion(nn.Identity())
    if config.temporal == "disentangled":
        return MeanFusion(DisentangledLayer(config))
    if config.temporal == "mha":
        mixer = MultiheadSelfAttention(config.d_model, config.n_heads, config.attention_dropout)
    elif config.temporal in RECURRENT_CELLS:
        mixer = BidirectionalRecurrent(config.temporal, config.d_model)
    elif config.temporal == "cnn1d":
        mixer = TemporalConv(config.d_model, config.conv_kernel)
    else:  # ModelConfig validates the name; this guards a choice added there but not here
        raise ValueError(f"unknown temporal module {config.temporal!r}")
    return MeanFusion(
        PostNormBlock(mixer, config.d_model, config.ffn_dim, config.dropout, config.layer_norm_eps)
    )


@dataclass
class ModelOutput:
    # [N, L, d] representation after the temporal layer (the distillation features); [N, L, D] of the single
    # backbone when the model has no projection (Sultani's MIL MLP).
    h: Tensor
    scores: Tensor  # [N, L] segment anomaly scores in (0, 1)


class VADModel(nn.Module):
    """Projections -> temporal module (``config.temporal``, default the Temporal Aggregation layer) -> classifier.

    ``forward(features)``: ``features[t]`` ``[N, L, input_dims[t]]`` for any ``L`` (32 segments in training, the
    full snippet sequence of one video in evaluation) -> ``ModelOutput(h [N, L, d], scores [N, L])``.
    With ``config.projection = False`` (one backbone, ``temporal="none"``) ``h`` is the feature itself,
    ``[N, L, input_dims[0]]``.
    """

    def __init__(self, input_dims: Sequence[int], config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        if len(input_dims) < 1:
            raise ValueError("VADModel needs at least one backbone input dimension")
        self.input_dims = tuple(int(dim) for dim in input_dims)
        self.config = config
        self.input_norms = build_input_norms(config.input_norm, self.input_dims)
        if config.projection:
            self.projections = nn.ModuleList(
                ProjectionMLP(dim, config.projection_hidden, config.d_model) for dim in self.input_dims
            )
            classifier_in = config.d_model
        else:
            # Without projections the widths of several backbones would not match, and a mean of unrelated
            # feature spaces is not Sultani's baseline.
            if len(self.input_dims) != 1:
                raise ValueError(
                    "ModelConfig.projection=False (Sultani's MIL MLP on the raw backbone feature) needs exactly "
                    f"one backbone, got {len(self.input_dims)} input dims {self.input_dims}"
                )
            # Identity keeps forward uniform and adds no parameters or state-dict keys.
            self.projections = nn.ModuleList([nn.Identity()])
            classifier_in = self.input_dims[0]
        # Attribute name "temporal" is part of the checkpoint format (state-dict keys "temporal.*").
        self.temporal = build_temporal(len(self.input_dims), config)
        self.classifier = Classifier(config, in_dim=classifier_in)

    def forward(self, features: Sequence[Tensor]) -> ModelOutput:
        if len(features) != len(self.input_dims):
            raise ValueError(f"expected {len(self.input_dims)} feature tensors, got {len(features)}")
        lead = features[0].shape[:-1]
        for t, (x, dim) in enumerate(zip(features, self.input_dims)):
            if x.dim() != 3 or x.shape[-1] != dim or x.shape[:-1] != lead:
                raise ValueError(
                    f"features[{t}] has shape {tuple(x.shape)}; "
                    f"expected [N, L, {dim}] with the same N, L as features[0]"
                )
        z = [proj(norm(x)) for proj, norm, x in zip(self.projections, self.input_norms, features)]
        h = self.temporal(z, self._backbone_dropout(lead[0], z[0].device))
        return ModelOutput(h=h, scores=self.classifier(h))

    def _backbone_dropout(self, n: int, device: torch.device) -> Tensor | None:
        """Bool ``[N, B]`` of the backbones each training row keeps (at least one), or None when nothing is left
        out (evaluation, one backbone, ``backbone_dropout = 0``)."""
        p, b = self.config.backbone_dropout, len(self.input_dims)
        if not self.training or p == 0.0 or b == 1:
            return None
        keep = torch.rand(n, b, device=device) >= p
        lonely = ~keep.any(dim=1)  # rows that dropped every backbone keep one, drawn uniformly
        keep[lonely, torch.randint(0, b, (int(lonely.sum()),), device=device)] = True
        return keep

    def set_input_statistics(self, statistics: Sequence[tuple[Tensor, Tensor]]) -> None:
        """Per backbone ``(mean [D_t], std [D_t])`` of the training features, for ``input_norm="standardize"``."""
        set_input_statistics(self.input_norms, statistics)

    def temporal_parameters(self) -> list[nn.Parameter]:
        """Parameters of the temporal module (for the TAM: attention incl. relative embeddings, output projection,
        FFN, norms); an empty list for ``temporal="none"``."""
        return list(self.temporal.parameters())

    def other_parameters(self) -> list[nn.Parameter]:
        """Projection MLPs and classifier; with ``temporal_parameters`` a partition of ``parameters()``."""
        return list(self.projections.parameters()) + list(self.classifier.parameters())


class ContrastiveHead(nn.Module):
    """Feature-distillation head ``g`` (``g_T`` / ``g_S``): ``[..., d_in] -> [..., d_out]``, Linear-ReLU-Linear."""

    def __init__(
        self, d_in: int = CONTRASTIVE_IN, hidden: int = CONTRASTIVE_HIDDEN, d_out: int = CONTRASTIVE_OUT
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)
