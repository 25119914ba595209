"""Score every snippet of a video with a trained model (method.md §7: full length, crops averaged)."""

from __future__ import annotations

import numpy as np
import torch

from models.attention import QUERY_BLOCK
from models.vad_model import VADModel
from pipeline.precision import autocast

# Crops are scored as a batch of sequences, in chunks whose attention maps fit this budget: a sequence holds
# about LIVE_MAPS float maps of backbones x heads x min(T, QUERY_BLOCK) x T at a time (see models.attention).
ATTENTION_MEMORY_BUDGET = 2**30  # bytes
LIVE_MAPS = 4  # logits, the two gathered position tables, softmax probabilities


def align_snippets(features: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Cut every backbone's ``[T_b, crops_b, D_b]`` to the shortest T (imported features of different sources can
    differ by a snippet). When crop counts differ, every backbone's crops are averaged to one.
    Returns (features ``[T, crops, D_b]``, snippets dropped from the longest)."""
    lengths = [f.shape[0] for f in features]
    t = min(lengths)
    out = [f[:t] for f in features]
    if len({f.shape[1] for f in out}) > 1:
        out = [f.mean(axis=1, keepdims=True) for f in out]
    return out, max(lengths) - t


@torch.no_grad()
def score_snippets(model: VADModel, features: list[np.ndarray], device: torch.device, precision: str = "fp32",
                   n_heads: int = 8) -> np.ndarray:
    """float32 ``[T]``: per-snippet scores of one video, each crop scored as its own sequence, then averaged.

    features: one ``[T, crops, D_b]`` array per backbone, in the model's backbone order, already aligned.
    """
    n_snippets, crops = features[0].shape[:2]
    per_row = 4 * LIVE_MAPS * n_heads * len(features) * min(n_snippets, QUERY_BLOCK) * n_snippets
    chunk = max(1, min(crops, ATTENTION_MEMORY_BUDGET // max(per_row, 1)))
    model = model.eval()
    total = torch.zeros(n_snippets, dtype=torch.float64)
    for start in range(0, crops, chunk):
        inputs = [torch.from_numpy(np.ascontiguousarray(f[:, start:start + chunk].transpose(1, 0, 2)))
                  .float().to(device) for f in features]  # [chunk, T, D_b]
        with autocast(device, precision):
            scores = model(inputs).scores  # [chunk, T]
        total += scores.float().sum(0).double().cpu()
    return (total / crops).float().numpy()

