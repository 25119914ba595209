"""Training input of a spatial run (method.md §12): grid features pooled into segments, cell by cell.

Every backbone of a video is brought to the run's grid (``models.spatial.to_grid``: a global backbone stays one
cell, which broadcasts), its snippets pooled into segments as global features are (``data.segments``; a grid
feature's cells are pooled like crops), and the result kept twice: the cells' mean, ``[S, n_segments, D_b]``, the
wrapped network's input (exactly a global run's segments when the grids match), and the cells, ``[S, W, C_b, r_b]``,
standardised with the training cells' statistics and projected onto their principal components
(``models.spatial.CellReduction``), once, so that a step only slices them. ``W`` is the longest row's segment count:
the rows' padding past their lengths is never sliced into a model (``pipeline.train.objectives.forward_by_length``),
so the cells carry none of it beyond the longest row.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from data.segments import pool_segments, segment_count
from models.spatial import STD_FLOOR, CellReduction, SpatialConfig, SpatialMIL, principal_components, to_grid
from pipeline.features import FeatureSet, VideoFeatures
from pipeline.train.data import SegmentData, _Moments

# Rows of standardised segment cells the principal components are fitted on (a seeded, even draw when there are
# more): the covariance of 2,304 dimensions is well estimated from 32k rows, and the fit stays a second on a CPU.
PCA_SAMPLE = 32_768
PCA_SEED = 0  # the draw is the same for every training seed, so seeds compare
POOL_CHUNK = 16  # cells pooled at a time (float64 prefix sums of [T, cells, D] for a long video are large)


def run_grid(features: FeatureSet, backbones: tuple[str, ...]) -> tuple[int, int]:
    """(rows, cols) a run on ``features`` trains on: the most common grid of the first backbone whose features
    have more than one cell (ties: the first video's); ``(1, 1)`` when every backbone is global."""
    for b in backbones:
        counts = Counter(vf.grid(b) for vf in features.found)
        gridded = [(grid, n) for grid, n in counts.items() if grid[0] * grid[1] > 1]
        if gridded:
            return max(gridded, key=lambda item: item[1])[0]
    return (1, 1)


def video_cells(vf: VideoFeatures, backbones: tuple[str, ...], grid: tuple[int, int]) -> list[np.ndarray]:
    """One video's float32 ``[T_b, C_b, D_b]`` per backbone on ``grid`` (``C_b`` = its cells, or 1 for a global
    backbone)."""
    return [to_grid(torch.from_numpy(vf.load_cells(b)), vf.grid(b), grid).numpy() for b in backbones]


def _pool_cells(cells: np.ndarray, n_segments: int, stretch: bool) -> np.ndarray:
    """``[T, C, D]`` -> ``[L, C, D]`` segments, ``POOL_CHUNK`` cells at a time."""
    parts = [pool_segments(cells[:, i:i + POOL_CHUNK], n_segments, stretch=stretch)
             for i in range(0, cells.shape[1], POOL_CHUNK)]  # each [chunk, L, D]
    return np.concatenate(parts).transpose(1, 0, 2)


def build_cell_data(videos: list[VideoFeatures], backbones: tuple[str, ...], *, grid: tuple[int, int],
                    n_segments: int, stretch: bool, spatial: SpatialConfig,
                    model: SpatialMIL | None = None) -> SegmentData:
    """Pool every video's cells into segments and prepare them for a ``SpatialMIL`` (module docstring).

    ``model``: a trained spatial network (a frozen teacher) whose own cell reduction prepares the cells; None fits
    a new one (statistics over every snippet's cells, components on at most ``PCA_SAMPLE`` segment cells), which
    :func:`fit_model` then gives the network. ``statistics`` of the returned data are the inner network's input
    statistics: of the cells' mean (``pooled``) or of the cells (``cells`` mode)."""
    if not videos:
        raise ValueError("no videos to train on")
    pooled_moments = {b: _Moments() for b in backbones}
    cell_moments = {b: _Moments() for b in backbones}
    raw: dict[str, list[np.ndarray]] = {b: [] for b in backbones}
    lengths = []
    for vf in videos:
        arrays = video_cells(vf, backbones, grid)
        shortest = min(a.shape[0] for a in arrays)
        length = segment_count(shortest, n_segments, stretch=stretch)
        for b, a in zip(backbones, arrays):
            pooled_moments[b].add(a.mean(axis=1, keepdims=True))
            cell_moments[b].add(a)
            raw[b].append(_pool_cells(a[:shortest] if length < n_segments else a, n_segments, stretch))
        lengths.append(length)
    width = max(lengths)
    segments = {}
    for b in backbones:  # the cells' mean: the wrapped network's input, padded to n_segments as global segments
        means = np.zeros((len(videos), n_segments, raw[b][0].shape[-1]), dtype=np.float32)
        for i, cells in enumerate(raw[b]):
            means[i, :len(cells)] = cells.mean(axis=1)
        segments[b] = torch.from_numpy(means)
    cell_statistics = {b: m.mean_std() for b, m in cell_moments.items()}
    if spatial.temporal == "cells":  # the inner reads each cell: its input norm takes the cells' statistics
        cells = {b: _stack(raw[b], width, lambda x: x) for b in backbones}
        components = {b: None for b in backbones}
        statistics = cell_statistics
    else:
        if model is not None:
            reductions = dict(zip(backbones, model.reductions))
            components = {b: r.components.detach().clone() for b, r in reductions.items()}
        else:
            reductions, components = {}, {}
            for b in backbones:
                reductions[b], components[b] = _fit_reduction(raw[b], cell_statistics[b], spatial.reduce_dim)
        with torch.no_grad():
            cells = {b: _stack(raw[b], width, lambda x, r=reductions[b]: r(torch.from_numpy(x)).numpy())
                     for b in backbones}
        statistics = {b: m.mean_std() for b, m in pooled_moments.items()}
    return SegmentData(
        backbones=tuple(backbones), segments=segments,
        labels=torch.tensor([vf.entry.label for vf in videos], dtype=torch.int64),
        video=torch.arange(len(videos), dtype=torch.int64), videos=videos, crops_per_sample=1,
        lengths=None if min(lengths) == n_segments else torch.tensor(lengths, dtype=torch.int64),
        statistics=statistics, cells=cells, cell_statistics=cell_statistics, components=components, grid=grid)


def _stack(per_video: list[np.ndarray], width: int, transform) -> torch.Tensor:
    """Per video ``[L_v, C, D]`` -> ``[S, width, C, D']`` float32 (``transform``: ``[..., D] -> [..., D']``),
    zeros past each video's length."""
    first = transform(per_video[0][:1])
    out = np.zeros((len(per_video), width, *first.shape[1:]), dtype=np.float32)
    for i, cells in enumerate(per_video):
        out[i, :len(cells)] = transform(cells)
    return torch.from_numpy(out)


def _fit_reduction(per_video: list[np.ndarray], statistics: tuple[torch.Tensor, torch.Tensor],
                   reduce_dim: int) -> tuple[CellReduction, torch.Tensor | None]:
    """A :class:`CellReduction` with the cells' ``statistics`` and the principal components of the standardised
    segment cells (a seeded draw of at most ``PCA_SAMPLE`` rows); also returns the components (None: no
    reduction)."""
    dim = per_video[0].shape[-1]
    reduction = CellReduction(dim, reduce_dim)
    mean, std = statistics
    if not reduction.reduces:
        reduction.set_statistics(mean, std)
        return reduction, None
    rows = np.concatenate([cells.reshape(-1, dim) for cells in per_video])
    if len(rows) > PCA_SAMPLE:
        rows = rows[np.sort(np.random.default_rng(PCA_SEED).choice(len(rows), PCA_SAMPLE, replace=False))]
    standardised = (torch.from_numpy(rows) - mean) / std.clamp_min(STD_FLOOR)
    components = principal_components(standardised, reduction.out_dim)
    reduction.set_statistics(mean, std, components)
    return reduction, components


def fit_model(model: SpatialMIL, data: SegmentData) -> None:
    """Give a new spatial network the data's statistics: its inner's input norm and its cell reduction."""
    model.set_input_statistics(data.input_statistics())
    model.set_cell_reduction([data.cell_statistics[b] for b in data.backbones],
                             [data.components[b] for b in data.backbones])
