"""The model a live watcher scores with: a trained run of a store (torch) or an export folder (onnxruntime, no store
needed on the camera box), behind one interface.

A :class:`LiveModel` says how frames must be decoded (``plans``: one short side and square flag per decode, as
the run's training features were decoded, see ``pipeline.extract.extractor.decode_groups``), embeds a batch of snippets
(``embed``: one uint8 ``[n, 16, H, W, 3]`` array per plan -> one float32 ``[n, crops, D_b]`` array per backbone)
and scores windows of features (``score``: the score of each window's last snippet, as
``pipeline.watch.scoring.score_last``; ``score_maps``: the same with the last snippet's anomaly map of a spatial
model, ``[rows, cols]`` per window, None for a global one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.watch.scoring import default_window, score_last, score_last_cells, score_last_maps

ENGINE_TORCH = "torch"
ENGINE_ONNX = "onnxruntime"


@dataclass(frozen=True)
class Plan:
    """One decode of the stream: frames resized to ``short_side`` (None: full size), squashed to a square when
    ``square``; ``backbones`` are the indices of the backbones fed by it."""

    short_side: int | None
    square: bool
    backbones: tuple[int, ...]


@dataclass
class LiveModel:
    """A model ready to score a stream. ``run``: its run key (None for an export without one); ``folder``: where
    its calibration is (``pipeline.runs.load_calibration``); ``window``: the snippets it attends
    over."""

    label: str
    run: str | None
    stage: str
    engine: str
    backbones: tuple[str, ...]
    plans: list[Plan]
    window: int
    folder: Path | None
    _backbones: list = field(default_factory=list, repr=False)  # torch: extractors.base.Backbone per backbone
    _network: torch.nn.Module | None = field(default=None, repr=False)
    _export: object = field(default=None, repr=False)  # onnx: pipeline.detect.detector.OnnxExport
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # torch, a spatial run or a map student: windows (as ``score``) -> (scores [n], the last snippets' maps
    # [n, rows, cols]); None: the run has no maps. The seam the spatial model's window scoring fills (an export's
    # maps come from its head).
    map_scorer: Callable[[Sequence[Sequence[np.ndarray]]], tuple[np.ndarray, np.ndarray]] | None = \
        field(default=None, repr=False)

    @property
    def grid(self) -> tuple[int, int] | None:
        """(rows, cols) of an export's maps; None for an export without maps or a torch run (its map scorer's maps
        carry their own shape)."""
        return self._export.scorer.grid if self.engine == ENGINE_ONNX else None

    def embed(self, snippets: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One uint8 ``[n, 16, H_p, W_p, 3]`` array per plan -> float32 ``[n, crops, D_b]`` per backbone."""
        out: list[np.ndarray | None] = [None] * len(self.backbones)
        for plan, frames in zip(self.plans, snippets):
            for b in plan.backbones:
                if self.engine == ENGINE_ONNX:
                    from pipeline.detect.detector import embed_chunk

                    out[b] = embed_chunk(list(frames), self._export)
                else:
                    out[b] = self._backbones[b].extract(torch.from_numpy(np.ascontiguousarray(frames))).numpy()
        return out

    def score_maps(self, windows: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, np.ndarray | None]:
        """(:meth:`score`'s float32 ``[len(windows)]``, each window's last snippet's anomaly map float32
        ``[len(windows), rows, cols]``, or None for a model without maps)."""
        if self.engine == ENGINE_ONNX and self._export.scorer.grid is not None:
            both = [self._export.scorer.score_crops_maps(w[0]) for w in windows]
            return (np.array([s[-1] for s, _ in both], dtype=np.float32),
                    np.stack([m[-1] for _, m in both]).astype(np.float32))
        if self.engine == ENGINE_TORCH and self.map_scorer is not None:
            scores, maps = self.map_scorer(windows)
            return np.asarray(scores, dtype=np.float32), np.asarray(maps, dtype=np.float32)
        return self.score(windows), None

    def score(self, windows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """float32 ``[len(windows)]``: each window's last snippet scored over the window. ``windows``: per window,
        one ``[w, crops, D_b]`` array per backbone; windows of different lengths are scored in groups."""
        out = np.empty(len(windows), dtype=np.float32)
        if self.engine == ENGINE_ONNX:
            for i, w in enumerate(windows):
                out[i] = self._export.scorer.score_crops(w[0])[-1]
            return out
        by_length: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            by_length.setdefault(len(w[0]), []).append(i)
        for members in by_length.values():
            out[members] = score_last(self._network, [windows[i] for i in members], self.device)
        return out


def from_run(store_dir, ref: str | None, *, weights: dict[str, str] | None = None, device: str = "auto",
             window: int | None = None) -> LiveModel:
    """A run of the store at ``store_dir`` (``ref`` None: its most recent student, as ``dakd detect``), with its
    backbones built as for its training features. The store is closed again: the camera loop needs only the
    weights. Raises UserError naming the store or run."""
    from extractors.device import auto_device
    from pipeline.defaults import DETECT_STAGE
    from pipeline.detect.detector import backbones_for
    from pipeline.extract.extractor import decode_groups
    from pipeline.runs import latest_run, load_run, open_run_store

    store = open_run_store(store_dir)
    try:
        dev = auto_device(device)
        run = load_run(store, ref or latest_run(store, DETECT_STAGE))
        built, settings = backbones_for(run, store, weights or {}, dev)
    finally:
        store.close()
    plans = [Plan(p.short_side, p.square, tuple(members))
             for p, members in decode_groups(built, settings["decode_resize"])]
    stage = run.checkpoint["stage"]
    model = LiveModel(f"{stage} {run.key[:12]}", run.key, stage, ENGINE_TORCH, tuple(run.backbones), plans,
                      window or default_window(stage, run.config.train.n_segments), run.folder, built,
                      run.model.to(dev).eval(), None, dev)
    if run.spatial:  # its backbones give cells (backbones_for builds them with the run's grid choice)
        model.map_scorer = cell_window_scorer(model, run.grid, run.attention_heads)
    elif run.map_student:  # its low-resolution frames give the maps themselves
        network, dev = model._network, model.device
        model.map_scorer = lambda windows: score_last_maps(network, windows, dev, grid=run.grid)
    return model


def cell_window_scorer(model: LiveModel, grid: tuple[int, int], n_heads: int):
    """A spatial run's :attr:`LiveModel.map_scorer`: windows of its backbones' cells -> (each window's last
    snippet's score ``[n]``, its map ``[n, rows, cols]`` on the run's ``grid``) by
    :func:`pipeline.watch.scoring.score_last_cells`. A grid backbone's cells are those of its last
    :meth:`embed` (``Backbone.last_grid``: a native grid follows the camera's frame size); a global backbone's crops
    are averaged into one cell."""
    def score(windows):
        grids = [b.last_grid if b.grid is not None else None for b in model._backbones]
        return score_last_cells(model._network, windows, grids, model.device, grid=grid, n_heads=n_heads)
    return score


def from_export(folder, *, window: int | None = None) -> LiveModel:
    """An export folder written by ``pipeline.export`` (a student: one backbone). ``window`` None: its training
    sequence length (``LIVE_WINDOW_DEFAULT``: export.json does not record it), at most the head's longest input.
    Raises UserError naming the folder."""
    from pipeline.detect.detector import load_export

    export = load_export(folder)
    w = min(window or default_window(export.model.stage), export.max_snippets)
    plan = Plan(export.short_side, export.square, (0,))
    return LiveModel(export.model.label, export.model.run, export.model.stage, ENGINE_ONNX, export.model.backbones,
                     [plan], w, Path(folder), _export=export)
