"""Causal scoring: each snippet scored from itself and the past only, over a sliding window of the last W snippets.

Offline, a model with attention over time (teacher, student, LA-Net) sees the whole video, the future included. A
stream has no future, and a stream that runs for weeks cannot be attended over whole, so live each snippet t is
scored by the model over snippets ``max(0, t - W + 1) .. t`` and takes the score of the window's last position:
the cost per snippet stays bounded (W^2 attention entries) however long the stream runs. :func:`windowed_scores` is
the same rule over a whole feature array (streaming AUC on a test set, calibration), and :class:`WindowState` the
rule one snippet at a time (a live stream); they give the same scores.

The lightning student scores each snippet from its own frames: its window is 1 (``LIGHTNING_WINDOW``, its row's
``window`` in ``pipeline.methods``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from pipeline import methods
from pipeline.methods import LIGHTNING_WINDOW  # noqa: F401 (re-exported: benchmarks/streaming.py)

# The window of the attention models: the length of the sequences they are trained on (train.n_segments, 32),
# about 20 s at 25 fps. A run's own train.n_segments is used when it differs (default_window).
LIVE_WINDOW_DEFAULT = 32
WINDOWS_PER_PASS = 64  # full windows scored in one forward pass offline (bounds memory: 64 x W x D floats)


def default_window(stage: str, n_segments: int | None = None) -> int:
    """W for a run of ``stage``: its method's ``window`` (``pipeline.methods``: 1 for the lightning student), else
    the run's training sequence length (a stage no method is registered for, e.g. an export's label, takes that)."""
    method = methods.REGISTRY.get(stage)
    if method is None:
        return int(n_segments or LIVE_WINDOW_DEFAULT)
    return method.live_window(n_segments, LIVE_WINDOW_DEFAULT)


@torch.no_grad()
def score_last(model: nn.Module, windows: Sequence[Sequence[np.ndarray]], device="cpu") -> np.ndarray:
    """The score of each window's last snippet. ``windows``: per window, one float ``[w, crops, D_b]`` array per
    backbone, every window of one length w; each crop is scored as its own sequence and the crops averaged (as
    ``pipeline.evaluate.scoring.score_snippets``). Returns float32 ``[len(windows)]``."""
    n, crops = len(windows), windows[0][0].shape[1]
    scores = model(_crop_sequences(windows, device)).scores[:, -1].float().cpu().numpy()  # [n * crops]
    return scores.reshape(n, crops).mean(axis=1).astype(np.float32)


def _crop_sequences(windows: Sequence[Sequence[np.ndarray]], device) -> list[torch.Tensor]:
    """Windows of one length w (per window, one ``[w, crops, D_b]`` array per backbone) -> per backbone float32
    ``[n * crops, w, D_b]``: every crop of every window its own sequence, window-major."""
    inputs = []
    for b in range(len(windows[0])):
        x = np.stack([np.asarray(w[b], dtype=np.float32) for w in windows])  # [n, w, crops, D]
        x = np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(-1, x.shape[1], x.shape[3]))
        inputs.append(torch.from_numpy(x).to(device))
    return inputs


@torch.no_grad()
def score_last_maps(model: nn.Module, windows: Sequence[Sequence[np.ndarray]], device="cpu", *,
                    grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A map student's (the lightning student distilled from maps, method.md §9) score and anomaly map of each
    window's last snippet: (float32 ``[len(windows)]``, float32 ``[len(windows), rows, cols]`` on ``grid``, the
    run's). ``windows`` as :func:`score_last` takes them (windows of different lengths are scored in groups); the
    crops' scores and maps are averaged, as ``pipeline.evaluate.scoring.score_snippet_maps``."""
    scores = np.empty(len(windows), dtype=np.float32)
    maps = np.empty((len(windows), grid[0] * grid[1]), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_length.setdefault(len(w[0]), []).append(i)
    model = model.eval()
    for members in by_length.values():
        crops = windows[members[0]][0].shape[1]
        out = model(_crop_sequences([windows[i] for i in members], device))
        scores[members] = out.scores[:, -1].float().cpu().numpy().reshape(len(members), crops).mean(axis=1)
        maps[members] = out.cell_scores[:, -1].float().cpu().numpy().reshape(len(members), crops, -1).mean(axis=1)
    return scores, maps.reshape(len(windows), *grid)


def score_last_cells(model: nn.Module, windows: Sequence[Sequence[np.ndarray]],
                     grids: Sequence[tuple[int, int] | None], device="cpu", *, grid: tuple[int, int],
                     n_heads: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A spatial model's (``models.spatial.SpatialMIL``) score and anomaly map of each window's last snippet:
    (float32 ``[len(windows)]``, float32 ``[len(windows), rows, cols]`` on ``grid``, the run's). ``windows``: per
    window one array per backbone, ``[w, C_b, D_b]`` cells of the grid ``grids[b]`` (rows, cols), or, with
    ``grids[b]`` None, a global backbone's ``[w, crops, D_b]`` (crops averaged: one cell, as
    ``pipeline.features.VideoFeatures.load_cells``). Each window is scored as
    ``pipeline.evaluate.scoring.score_cells`` scores a whole video, so a window holding a whole video gives its
    offline scores and maps."""
    from pipeline.evaluate.scoring import score_cells

    if windows and len({len(window[0]) for window in windows}) == 1:
        return _score_last_cells_batched(model, windows, grids, device, grid)
    scores, maps = [], []
    for window in windows:
        arrays = [np.asarray(x, dtype=np.float32) if g is not None else x.mean(axis=1, keepdims=True, dtype=np.float32)
                  for x, g in zip(window, grids)]
        s, m = score_cells(model, arrays, [g or (1, 1) for g in grids], device, n_heads=n_heads, grid=grid)
        scores.append(s[-1])
        maps.append(m[-1])
    return np.asarray(scores, dtype=np.float32), np.stack(maps).astype(np.float32)


@torch.no_grad()
def _score_last_cells_batched(model: nn.Module, windows: Sequence[Sequence[np.ndarray]],
                              grids: Sequence[tuple[int, int] | None], device, grid: tuple[int, int]
                              ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_last_cells` for windows of one length, in one forward pass (``[n, w, C_b, D_b]`` per backbone,
    as :func:`score_last` batches a global run's windows): the same numbers as scoring them one by one, for a
    fraction of the time when several streams' windows arrive at once."""
    from models.spatial import to_grid

    target = tuple(grid)
    inputs = []
    for b, g in enumerate(grids):
        arrays = [np.asarray(w[b], dtype=np.float32) if g is not None
                  else w[b].mean(axis=1, keepdims=True, dtype=np.float32) for w in windows]
        cells = torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))  # [n, w, C_b, D_b]
        inputs.append(to_grid(cells, g or (1, 1), target).to(device))
    out = model.eval()(inputs)
    scores = out.scores.float()[:, -1].cpu().numpy()  # [n]
    maps = out.cell_scores.float()[:, -1].cpu().numpy()  # [n, C]
    if maps.shape[1] != target[0] * target[1]:  # every backbone global: one cell for the whole frame
        maps = np.broadcast_to(maps, (len(windows), target[0] * target[1]))
    return scores.astype(np.float32), np.ascontiguousarray(maps.reshape(len(windows), *target), dtype=np.float32)


def windowed_scores(model: nn.Module, features: list[np.ndarray], window: int, device="cpu",
                    score_windows: Callable[[list[list[np.ndarray]]], np.ndarray] | None = None) -> np.ndarray:
    """float32 ``[T]``: snippet t scored by ``model`` over snippets ``max(0, t - window + 1) .. t``.

    features: one ``[T, crops, D_b]`` array per backbone, in the model's backbone order, aligned.
    score_windows: how a list of windows of one length is scored, each its last snippet's score (float32
    ``[len(windows)]``); default :func:`score_last` (a spatial run's: :func:`windowed_cell_scores`).
    """
    if window < 1:
        raise ValueError(f"the window must be at least 1 snippet, got {window}")
    model = model.eval()
    score_last_of = score_windows or (lambda windows: score_last(model, windows, device))
    t_total = features[0].shape[0]
    out = np.empty(t_total, dtype=np.float32)
    for t in range(min(window - 1, t_total)):  # the first snippets: windows still growing, one length each
        out[t] = score_last_of([[f[:t + 1] for f in features]])[0]
    full = list(range(window - 1, t_total))  # windows of the whole length, batched
    for start in range(0, len(full), WINDOWS_PER_PASS):
        ends = full[start:start + WINDOWS_PER_PASS]
        out[ends] = score_last_of([[f[e - window + 1:e + 1] for f in features] for e in ends])
    return out


def windowed_cell_scores(model: nn.Module, cells: list[np.ndarray], grids: Sequence[tuple[int, int]], window: int,
                         device="cpu", *, grid: tuple[int, int], n_heads: int = 8) -> np.ndarray:
    """float32 ``[T]``: a spatial model's :func:`windowed_scores`, each window scored by :func:`score_last_cells`
    on the run's ``grid``, as ``dakd watch`` scores a spatial run (``pipeline.watch.model.cell_window_scorer``).
    ``cells``: per backbone ``[T, C_b, D_b]`` on ``grids[b]``, aligned (a global backbone one cell, as
    ``pipeline.detect.detector.stored_inputs`` reads them)."""
    return windowed_scores(model, cells, window, device, lambda windows: score_last_cells(
        model, windows, grids, device, grid=grid, n_heads=n_heads)[0])


class WindowState:
    """One stream's last ``window`` snippets of features, per backbone (a ring buffer: memory stays flat)."""

    def __init__(self, n_backbones: int, window: int):
        self.window = window
        self.rows: list[deque] = [deque(maxlen=window) for _ in range(n_backbones)]

    def push(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Add one snippet's features (``[crops, D_b]`` per backbone); returns the window ``[w, crops, D_b]`` per
        backbone, the new snippet last."""
        for rows, f in zip(self.rows, features):
            rows.append(f)
        return [np.stack(rows) for rows in self.rows]
