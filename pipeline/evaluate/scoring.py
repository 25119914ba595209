"""Score every snippet of a video with a trained model (method.md §7: full length, crops averaged), and a spatial
run's cells into per-snippet anomaly maps (method.md §12, :func:`score_cells`)."""

from __future__ import annotations

import numpy as np
import torch

from models.attention import QUERY_BLOCK
from models.spatial import SpatialMIL, grid_of, to_grid
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


def align_cells(features: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Cut every backbone's cells ``[T_b, C_b, D_b]`` to the shortest T (cells are never averaged here: see
    :func:`score_cells`). Returns (features ``[T, C_b, D_b]``, snippets dropped from the longest)."""
    lengths = [f.shape[0] for f in features]
    return [f[:min(lengths)] for f in features], max(lengths) - min(lengths)


def _row_budget(n_snippets: int, n_heads: int, n_backbones: int) -> int:
    """Sequences of ``n_snippets`` scored at once within ``ATTENTION_MEMORY_BUDGET``."""
    per_row = 4 * LIVE_MAPS * n_heads * n_backbones * min(n_snippets, QUERY_BLOCK) * n_snippets
    return max(1, ATTENTION_MEMORY_BUDGET // max(per_row, 1))


@torch.no_grad()
def score_cells(model, features: list[np.ndarray], grids: list[tuple[int, int]], device: torch.device,
                precision: str = "fp32", n_heads: int = 8,
                grid: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One video's snippet scores float32 ``[T]`` and anomaly maps float32 ``[T, rows, cols]``.

    ``features``: per backbone (the model's order) its cells ``[T, C_b, D_b]``, cut to one T (:func:`align_cells`),
    with ``grids[b] = (rows_b, cols_b)`` (``(1, 1)`` for a global feature, whose crops are averaged). A spatial
    model (``SpatialMIL``) brings every backbone to ``grid`` (default the first backbone's with more than one cell;
    evaluation passes the run's grid, as training did) and returns its snippet scores and cell scores, which equal
    :func:`score_snippets` on the same cells. Any other model scores the cells' mean (the global feature) and its
    maps are ``[T, 1, 1]``, the scores.
    """
    if not isinstance(model, SpatialMIL):
        scores = score_snippets(model, [f.mean(axis=1, keepdims=True, dtype=np.float32) for f in features], device,
                                precision, n_heads=n_heads)
        return scores, scores[:, None, None].copy()
    target = tuple(grid or grid_of(grids))
    cells = [to_grid(torch.from_numpy(np.ascontiguousarray(f)).float(), g, target)
             for f, g in zip(features, grids)]  # [T, C_b, D_b]
    n_snippets = cells[0].shape[0]
    model = model.eval()
    inputs = [x.unsqueeze(0).to(device) for x in cells]  # [1, T, C_b, D_b]
    count = max(x.shape[2] for x in inputs)
    with autocast(device, precision):
        out = model(inputs, cell_chunk=_row_budget(n_snippets, n_heads, len(inputs)))
    scores = out.scores.float()[0].cpu().numpy()
    maps = out.cell_scores.float()[0].cpu().numpy()  # [T, C]
    if count != target[0] * target[1]:  # every backbone global: one cell for the whole frame
        maps = np.broadcast_to(maps, (n_snippets, target[0] * target[1]))
    return scores, np.ascontiguousarray(maps.reshape(n_snippets, *target))


@torch.no_grad()
def score_snippets(model: VADModel, features: list[np.ndarray], device: torch.device, precision: str = "fp32",
                   n_heads: int = 8) -> np.ndarray:
    """float32 ``[T]``: per-snippet scores of one video, each crop scored as its own sequence, then averaged.

    features: one ``[T, crops, D_b]`` array per backbone, in the model's backbone order, already aligned. For a
    spatial model (``SpatialMIL``) the second axis holds the cells (``VideoFeatures.load_cells``, one count or 1
    per backbone) and the scores are :func:`score_cells`'s.
    """
    if isinstance(model, SpatialMIL):
        counts = {f.shape[1] for f in features} - {1}
        if len(counts) > 1:
            raise ValueError(f"backbones with different cell counts {sorted(counts)}: score them with score_cells, "
                             "which takes their grids")
        count = counts.pop() if counts else 1
        return score_cells(model, features, [(1, f.shape[1]) for f in features], device, precision, n_heads,
                           grid=(1, count))[0]
    n_snippets, crops = features[0].shape[:2]
    chunk = min(crops, _row_budget(n_snippets, n_heads, len(features)))
    model = model.eval()
    total = torch.zeros(n_snippets, dtype=torch.float64)
    for start in range(0, crops, chunk):
        inputs = [torch.from_numpy(np.ascontiguousarray(f[:, start:start + chunk].transpose(1, 0, 2)))
                  .float().to(device) for f in features]  # [chunk, T, D_b]
        with autocast(device, precision):
            scores = model(inputs).scores  # [chunk, T]
        total += scores.float().sum(0).double().cpu()
    return (total / crops).float().numpy()


@torch.no_grad()
def score_snippet_maps(model, features: list[np.ndarray], device: torch.device, precision: str = "fp32",
                       grid: tuple[int, int] = (1, 1)) -> tuple[np.ndarray, np.ndarray]:
    """A map student's (``models.lightning_student.LightningStudent`` with a grid) snippet scores float32 ``[T]`` and
    anomaly maps float32 ``[T, rows, cols]`` of one video: ``features`` as :func:`score_snippets` takes them (one
    ``[T, crops, D_b]`` per backbone; the low-resolution frames, one crop), each crop scored as its own sequence and
    the crops' scores and maps averaged. The model's outputs carry ``cell_scores [N, L, rows * cols]``."""
    n_snippets, crops = features[0].shape[:2]
    model = model.eval()
    scores = torch.zeros(n_snippets, dtype=torch.float64)
    maps = torch.zeros(n_snippets, grid[0] * grid[1], dtype=torch.float64)
    for crop in range(crops):
        inputs = [torch.from_numpy(np.ascontiguousarray(f[:, crop]))[None].float().to(device)
                  for f in features]  # [1, T, D_b]
        with autocast(device, precision):
            out = model(inputs)
        scores += out.scores.float()[0].double().cpu()
        maps += out.cell_scores.float()[0].double().cpu()
    return (scores / crops).float().numpy(), (maps / crops).float().numpy().reshape(n_snippets, *grid)


def score_video(run, features, device: torch.device, precision: str = "fp32") -> tuple[np.ndarray, np.ndarray, int]:
    """One stored video scored by a run as evaluation scores it. ``run``: a ``pipeline.runs.LoadedRun`` (its model
    on ``device``); ``features``: the video's ``pipeline.features.VideoFeatures``. A spatial run scores the cells on
    its grid (:func:`score_cells`), a map student its frames with their maps on its grid
    (:func:`score_snippet_maps`), any other run the stored features (:func:`score_snippets`, maps ``[T, 1, 1]``).
    Returns (scores float32 ``[T]``, maps float32 ``[T, rows, cols]``, snippets cut from the longest backbone)."""
    if run.spatial:
        cells, grids = run.scoring_inputs(features)
        arrays, dropped = align_cells(cells)
        scores, maps = score_cells(run.model, arrays, grids, device, precision, n_heads=run.attention_heads,
                                   grid=run.grid)
        return scores, maps, dropped
    arrays, dropped = align_snippets([features.load(b) for b in run.backbones])
    if run.map_student:
        scores, maps = score_snippet_maps(run.model, arrays, device, precision, grid=run.grid)
        return scores, maps, dropped
    scores = score_snippets(run.model, arrays, device, precision, n_heads=run.attention_heads)
    return scores, scores[:, None, None].copy(), dropped
