"""Export a single-backbone run (the student: backbone + temporal head) to TorchScript and ONNX.

    dakd export RUN --store DIR [--out DIR] [--weights NAME=PATH] [--max-snippets 8192]   (pipeline.cli.export)

The model is two graphs, so that a long video is scored in bounded memory, as the project's own path does it:

- the backbone, :class:`SnippetEmbedder`: preprocessed snippets float ``[n, 3, F, c, c]`` (one crop each; the
  output of ``Backbone.preprocess``) -> features ``[n, D]``, run a batch at a time;
- the head, :class:`HeadScorer`: ONE video's features ``[T, D]`` -> per-snippet scores ``[T]`` in (0, 1).

A spatial run (``models.spatial.SpatialMIL`` over grid features, method.md §12) keeps its backbone's grid: the
backbone graph gives each snippet's cells ``[n, C, D]`` (the grid choice of the run's training features, its cells
row-major) and the head, :class:`CellHeadScorer`, takes ONE video's cells ``[T, C, D]`` to two outputs, the scores
``[T]`` and the anomaly maps ``[T, rows, cols]`` on the run's grid (``export.json``: ``"outputs": ["scores",
"maps"]`` and ``"grid"``, ``pipeline.detect.onnx_scorer.maps_export_entries``); the check compares both.

Preprocessing (frame choice, resize, crop, normalisation of the uint8 frames) stays outside the graphs: it is
``extractors.base.preprocess_snippets``. Several crops are scored one sequence per crop and averaged, as
``pipeline.evaluate.scoring.score_snippets`` does (:meth:`OnnxScorer.score_crops`).

Any length: the eager attention attends its query rows in blocks of ``models.attention.QUERY_BLOCK`` in a Python
loop, which tracing would unroll for the example's length only. The head is therefore traced with the blocks off
(``query_block = None``: every row at once, the same softmax per row), a graph exact for every T; every export
checks it against the eager, blocked model on features longer than two blocks. Its memory grows as heads x T^2
floats per attention map, so an export accepts at most ``--max-snippets`` (default ``DEFAULT_MAX_SNIPPETS``,
above UCF-Crime's longest video) and refuses longer videos with :class:`TooManySnippets`.

Written to ``--out`` (default ``<run folder>/export``): ``student.torchscript.pt`` (``torch.jit.load``; one module
taking ``[T, 3, F, c, c]``, running the backbone in batches, with the length check), ``backbone.onnx`` and
``head.onnx`` (opset 17, dynamic ``n`` / ``T``; the bound in the head's metadata ``max_snippets``) and
``export.json`` (run, backbone, shapes, T range, tolerance and the measured differences). An export whose
TorchScript or ONNX scores differ from the eager model's by more than ``TOLERANCE`` raises ``ValueError`` and
leaves no ``export.json``.

``export.json`` also holds everything needed to go from a video file to the graphs' input without the store, the
run or the backbone's weights (``python -m pipeline.detect VIDEO --onnx DIR``): ``preprocessing``,
``frame_indices`` and ``crops`` (for ``extractors.base.preprocess_snippets``), and ``decode``, how the run's
training features were decoded (``{"backend", "short_side", "filter"}``, plus ``square`` and a non-default
``timeline`` when set, from the store's extractor params; null when the store has none, e.g. imported features),
so that deployed videos are decoded the same way, on the same timeline (``data.decode``).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from data.decode import short_side_size
from data.decode import SNIPPET_FRAMES
from extractors.base import Backbone
from extractors.views import GRID_NATIVE
from models.attention import QUERY_BLOCK, MultiBackboneDisentangledAttention
from models.spatial import SpatialMIL
from models.vad_model import VADModel
from pipeline.atomic import atomic_write_json
from pipeline.detect.onnx_scorer import (BACKBONE_ONNX, DEFAULT_BATCH, EXPORT_JSON, FEATURES_NAME, HEAD_ONNX,
                                         INPUT_NAME, MAPS_NAME, METADATA_MAX_SNIPPETS, OUTPUT_NAME, TOLERANCE,
                                         TORCHSCRIPT_FILE, OnnxScorer, maps_export_entries)
from pipeline import defaults
from pipeline.errors import UsageError, UserError
from pipeline.runs import CALIBRATION_FILE, LoadedRun, load_calibration, load_run, training_backbone
from pipeline.store import FeatureStore, StoreReadOnly, open_store

OPSET = 17  # the legacy (TorchScript-based) exporter; the torch.export-based one fixed T to the example's length
# Longest video (snippets) an export accepts by default: above UCF-Crime's longest (6750). The head's attention
# then holds heads x T^2 floats per map, 2.1 GB for 8 heads at T = 8192; --max-snippets moves the bound.
DEFAULT_MAX_SNIPPETS = defaults.DEFAULT_MAX_SNIPPETS
DEFAULT_EXAMPLE_SNIPPETS = 32  # lowered to max_snippets when that is smaller
DEFAULT_CHECK_LENGTHS = (1, 5, 33)  # backbone + head; each lowered to max_snippets when larger
# The head alone, on features: longer than two of the eager model's attention blocks, so the check compares the
# unblocked graph with the blocked eager path (lowered to max_snippets when larger).
HEAD_CHECK_LENGTH = 2 * QUERY_BLOCK + 3


def pool_matrix(size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """float32 ``[R * C, h * w]``: adaptive average pooling of an ``size`` = (h, w) map to ``target`` = (R, C)
    cells, both row-major, as one matrix (torch's bins: rows ``floor(i h / R)`` to ``ceil((i + 1) h / R)``,
    likewise columns). ONNX's exporter refuses ``adaptive_avg_pool2d`` whose output size does not divide its input
    (a 3 x 4 grid of I3D's 7 x 11 map); the same averages as a matrix product it takes."""
    def bins(n: int, m: int) -> np.ndarray:  # [m, n]
        weights = np.zeros((m, n))
        for i in range(m):
            start, end = (i * n) // m, -(-((i + 1) * n) // m)
            weights[i, start:end] = 1.0 / (end - start)
        return weights

    return np.kron(bins(size[0], target[0]), bins(size[1], target[1])).astype(np.float32)


def pool_cells(cells: Tensor, size: tuple[int, int], target: tuple[int, int]) -> Tensor:
    """Cells ``[..., h * w, D]`` of a ``size`` grid -> ``[..., R * C, D]`` on ``target`` (:func:`pool_matrix`, a
    constant of a traced graph: what ``extractors.grid.pool_map`` and ``models.spatial.to_grid`` compute, in a form
    ONNX exports)."""
    return torch.matmul(torch.from_numpy(pool_matrix(size, target)).to(cells.dtype), cells)


class SnippetEmbedder(nn.Module):
    """The backbone: float ``[n, 3, F, c, c]`` (preprocessed snippets, one crop each) -> features ``[n, D]`` (a
    backbone with a grid: cells ``[n, C, D]``). Image backbones embed the F frames of each snippet and average them,
    video backbones embed the clip, exactly as ``Backbone.embed_snippets``; an ``RxC`` grid is the native map's cells
    pooled by :func:`pool_cells` (the same averages as the extractor's adaptive pooling, which ONNX cannot always
    express)."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone.model  # registered, so tracing finds its parameters
        self._native = None
        self._target = None
        if backbone.grid is not None and backbone.grid != GRID_NATIVE:
            self._native = copy.copy(backbone)  # the same modules, on the native grid
            self._native.grid = GRID_NATIVE
            self._target = tuple(int(v) for v in backbone.grid.split("x"))
        self._embed_snippets = (self._native or backbone).embed_snippets  # uses the same module

    def forward(self, x: Tensor) -> Tensor:
        out = self._embed_snippets(x)
        if self._target is None:
            return out
        return pool_cells(out, self._native.last_grid, self._target)  # the native map's size: a trace constant


class HeadScorer(nn.Module):
    """The temporal head over ONE video: features ``[T, D]`` -> scores ``[T]`` (the sequence ``[1, T, D]``)."""

    def __init__(self, head: VADModel):
        super().__init__()
        self.head = head

    def forward(self, features: Tensor) -> Tensor:
        return self.head([features.unsqueeze(0)]).scores[0]


class CellHeadScorer(nn.Module):
    """A spatial head over ONE video: the backbone's cells ``[T, C, D]`` (``C = rows_b x cols_b``, its grid
    ``cells``) -> (scores ``[T]``, maps ``[T, rows, cols]`` on ``grid``, the run's). The cells are brought to the
    run's grid as scoring brings them (``models.spatial.to_grid``, here :func:`pool_cells`: unchanged when the grids
    are equal)."""

    def __init__(self, head: SpatialMIL, cells: tuple[int, int], grid: tuple[int, int]):
        super().__init__()
        self.head = head
        self.cells = (int(cells[0]), int(cells[1]))
        self.grid = (int(grid[0]), int(grid[1]))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        if self.cells != self.grid and self.cells[0] * self.cells[1] > 1:  # else to_grid leaves them as they are
            features = pool_cells(features, self.cells, self.grid)
        out = self.head([features.unsqueeze(0)])
        return out.scores[0], out.cell_scores[0].reshape(-1, self.grid[0], self.grid[1])


class SnippetScorer(nn.Module):
    """Backbone + head, eager: float ``[T, 3, F, c, c]`` (one video, one crop, preprocessed) -> scores ``[T]``;
    a spatial head (``SpatialMIL``, ``grid`` the run's and ``cells`` the backbone's grid at the export's input
    size, :func:`backbone_cells`) -> (scores ``[T]``, maps ``[T, rows, cols]``)."""

    def __init__(self, backbone: Backbone, head: VADModel | SpatialMIL, *, grid: tuple[int, int] | None = None,
                 cells: tuple[int, int] | None = None):
        super().__init__()
        if len(head.input_dims) != 1 or head.input_dims[0] != backbone.dim:
            raise ValueError(f"the head takes input dims {head.input_dims}; exporting needs a single-backbone head "
                             f"on {backbone.name}'s {backbone.dim}-d features")
        spatial = isinstance(head, SpatialMIL)
        if spatial and (grid is None or cells is None or backbone.grid is None):
            raise ValueError(f"a spatial head scores the cells of a backbone with a grid: build {backbone.name} with "
                             "the run's grid and give the run's `grid` and the backbone's `cells`")
        self.embedder = SnippetEmbedder(backbone)
        self.scorer = CellHeadScorer(head, cells, grid) if spatial else HeadScorer(head)
        self.grid = tuple(grid) if spatial else None  # (rows, cols) of the maps; None: scores alone
        self.cells = tuple(cells) if spatial else None

    @property
    def head(self) -> VADModel | SpatialMIL:
        return self.scorer.head

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """One snippet's features, the head's input per snippet: ``(D,)``, or ``(C, D)`` for a spatial head."""
        dim = self.head.input_dims[0]
        return (dim,) if self.grid is None else (self.cells[0] * self.cells[1], dim)

    def forward(self, x: Tensor):
        return self.scorer(self.embedder(x))


def backbone_cells(backbone: Backbone, size: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the cells a backbone with a grid gives for inputs of ``size`` (h, w): one zero snippet
    through it (a native grid follows the input's size)."""
    with torch.no_grad():
        backbone.embed_snippets(torch.zeros(1, 3, backbone.frames_per_snippet, *size))
    return tuple(backbone.last_grid)


@contextlib.contextmanager
def attention_unblocked(module: nn.Module):
    """Every disentangled attention in ``module`` attends all query rows at once while inside (see the module
    docstring); the row blocks come back on exit."""
    attentions = [m for m in module.modules() if isinstance(m, MultiBackboneDisentangledAttention)]
    saved = [m.query_block for m in attentions]
    for m in attentions:
        m.query_block = None
    try:
        yield
    finally:
        for m, block in zip(attentions, saved):
            m.query_block = block


class _ChunkedScorer(nn.Module):
    """The TorchScript module: checks the length, runs the traced backbone ``batch`` snippets at a time and the
    traced head over the whole video. ``[T, 3, F, c, c]`` -> ``[T]``."""

    def __init__(self, embedder: nn.Module, head: nn.Module, max_snippets: int, batch: int):
        super().__init__()
        self.embedder = embedder
        self.head = head
        self.max_snippets = max_snippets
        self.batch = batch

    def embed_all(self, x: Tensor) -> Tensor:
        """The backbone over every snippet, ``batch`` at a time, after the length check."""
        n = x.size(0)
        if n < 1 or n > self.max_snippets:
            raise ValueError(f"the exported model scores 1 to {self.max_snippets} snippets at once, got {n}; "
                             f"export again with a larger --max-snippets, or score with the eager model")
        return torch.cat([self.embedder(x[start:start + self.batch]) for start in range(0, n, self.batch)])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed_all(x))


class _ChunkedMapScorer(_ChunkedScorer):
    """:class:`_ChunkedScorer` of a spatial run: ``[T, 3, F, c, c]`` -> (scores ``[T]``, maps ``[T, rows,
    cols]``); the traced backbone gives cells ``[n, C, D]``. Only the output's type differs (TorchScript types
    it)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.embed_all(x))


# torch 2.10+ marks every torch.jit entry point deprecated in favour of torch.export, but torch.export has no
# loader for a TorchScript file and cannot express _ChunkedScorer's length check and batch loop without a rewrite
# of the artifact; until the TorchScript file is replaced, loading it silences exactly this warning (the message
# torch gives, on Python 3.14+ too), nothing else.
JIT_LOAD_WARNING = r"`torch\.jit\.load` is (deprecated|not supported)"
JIT_BUILD_WARNING = r"`torch\.jit\.\w+` is (deprecated|not supported)"  # the same, of trace, script, save
# torch.onnx.export(dynamo=False) announces the torch.export-based exporter, which fixed T to the example's length,
# and its own internals call functions torch marks deprecated; both are torch's notices about itself
LEGACY_ONNX_WARNING = r"You are using the legacy TorchScript-based ONNX export|The feature will be removed\. Please " \
    r"remove usage of this function"


def load_torchscript(path: str | Path, map_location=None) -> torch.jit.ScriptModule:
    """``student.torchscript.pt`` (or any TorchScript file) as a module, without torch's deprecation warning of
    ``torch.jit.load`` (:data:`JIT_LOAD_WARNING`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_LOAD_WARNING, category=FutureWarning)
        return torch.jit.load(str(path), map_location=map_location)


def input_size(backbone: Backbone, frame_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) of the backbone graph's input frames: the crop for the crop and squash views; for the
    full view, which keeps each video's aspect, the whole ``frame_size`` (width, height) frame at the crop size's
    short side (a graph traced at one size must not be fed another: padding of 'SAME' convolutions is traced as
    constants)."""
    p = backbone.preprocessing
    if p.view != "full":
        return p.crop_size, p.crop_size
    if frame_size is None:
        raise UsageError(f"{backbone.name} takes the whole frame (view full): give `frame_size`, the (width, height) "
                         "of the videos the export is for (default: the run's training videos')")
    width, height = short_side_size(*frame_size, p.crop_size)
    return height, width


def _check_inputs(backbone: Backbone, lengths: tuple[int, ...], size: tuple[int, int],
                  seed: int = 0) -> list[tuple[str, Tensor]]:
    """Fixed inputs for the equality check: normal noise at each length, and seeded uint8 snippets through the
    backbone's own preprocessing (real value range and statistics of frames). ``size``: :func:`input_size`."""
    gen = torch.Generator().manual_seed(seed)
    (h, w), f = size, backbone.frames_per_snippet
    inputs = [(f"noise_T{t}", torch.randn(t, 3, f, h, w, generator=gen)) for t in lengths]
    n = min(lengths[-1], 8)
    raw = (h, w) if backbone.preprocessing.view == "full" else (72, 96)  # full: frames already at the graph's size
    frames = torch.randint(0, 256, (n, SNIPPET_FRAMES, *raw, 3), dtype=torch.uint8, generator=gen)
    pre = backbone.preprocess(frames).cpu().reshape(n, backbone.crops, 3, f, h, w)[:, 0]  # first crop
    inputs.append((f"preprocessed_T{n}", pre.contiguous()))
    return inputs


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def check_equal(scorer: SnippetScorer, scripted: nn.Module, folder: Path, inputs: list[tuple[str, Tensor]],
                head_lengths: tuple[int, ...] = (), tolerance: float = TOLERANCE, seed: int = 0) -> dict:
    """Max |TorchScript - eager| and |ONNX - eager| per input, and |ONNX head - eager head| on random features of
    each of ``head_lengths`` (the eager head attends in its row blocks); for a spatial scorer (``scorer.grid``) the
    larger of the scores' and the maps' differences. Raises ValueError above ``tolerance``."""
    spatial = scorer.grid is not None
    onnx_scorer = OnnxScorer(folder, providers=["CPUExecutionProvider"],
                             maps=(MAPS_NAME, scorer.grid) if spatial else None)

    def diff(what: str, name: str, run, eager) -> float:
        try:
            got = run()
            if not spatial:
                return _diff(np.asarray(got), eager)
            return max(_diff(np.asarray(g), np.asarray(e)) for g, e in zip(got, eager))
        except Exception as exc:  # a graph that cannot run this length is as unfaithful as one that differs
            raise ValueError(f"the {what} export fails on {name} ({type(exc).__name__}: {exc}): the export is not "
                             "faithful") from exc

    def numpy(out):
        return tuple(t.numpy() for t in out) if spatial else out.numpy()

    def onnx_run(x: np.ndarray):
        return onnx_scorer.score_maps(onnx_scorer.embed(x)) if spatial else onnx_scorer(x)

    def onnx_head(features: np.ndarray):
        return onnx_scorer.score_maps(features) if spatial else onnx_scorer.score_features(features)

    results = {}
    with torch.no_grad():
        for name, x in inputs:
            eager = numpy(scorer(x))
            results[name] = {"T": int(x.shape[0]), "torchscript": diff("torchscript", name, lambda: scripted(x), eager),
                             "onnx": diff("onnx", name, lambda: onnx_run(x.numpy()), eager)}
        gen = torch.Generator().manual_seed(seed)
        for t in head_lengths:
            name, features = f"head_features_T{t}", torch.randn(t, *scorer.feature_shape, generator=gen)
            eager = numpy(scorer.scorer(features))
            results[name] = {"T": t, "onnx": diff("onnx", name, lambda: onnx_head(features.numpy()), eager)}
    for name, diffs in results.items():
        for what in ("torchscript", "onnx"):
            diff = diffs.get(what, 0.0)
            if not diff <= tolerance:  # also catches NaN
                raise ValueError(f"the {what} export's scores differ from the eager model's by {diff:.3g} on "
                                 f"{name} (tolerance {tolerance:g}): the export is not faithful")
    return results


def export_student(run: LoadedRun, backbone: Backbone, out_dir: str | Path, *,
                   example_snippets: int | None = None, max_snippets: int = DEFAULT_MAX_SNIPPETS,
                   check_lengths: tuple[int, ...] | None = None, tolerance: float = TOLERANCE,
                   decode: dict | None = None, frame_size: tuple[int, int] | None = None) -> dict:
    """Write the TorchScript and ONNX exports of ``run`` (single backbone ``backbone``) into ``out_dir``, check
    that they give the eager scores within ``tolerance`` (:func:`check_equal`), and write ``export.json``.
    Returns its content.

    decode: how the run's training features were decoded (:func:`training_decode`), written to export.json for
    ``pipeline.detect --onnx``; None when unknown. frame_size: (width, height) of the videos the export is for,
    needed by a full-view backbone (:func:`input_size`)."""
    if tuple(run.backbones) != (backbone.name,):
        raise ValueError(f"run {run.key[:12]} uses backbones {list(run.backbones)}; export needs a single-backbone "
                         f"run on {backbone.name}")
    head = run.model.inner if isinstance(run.model, SpatialMIL) else run.model
    if not isinstance(head, VADModel):
        raise ValueError(f"run {run.key[:12]} is a {run.checkpoint['stage']} run; export supports VADModel heads "
                         "(teacher / student)")
    if run.spatial:  # the backbone gives cells (backbone_for_run builds it with the run's grid choice)
        cells = backbone_cells(backbone, input_size(backbone, frame_size))
        scorer = SnippetScorer(backbone, run.model, grid=run.grid, cells=cells)
    else:
        scorer = SnippetScorer(backbone, run.model)
    extra = {"run": run.key, "stage": run.checkpoint["stage"], "decode": decode}
    # pipeline.calibrate's thresholds travel with the export (read, and checked, as detect and watch read them)
    calibration = load_calibration(run.folder / CALIBRATION_FILE)
    if calibration is not None:
        extra["calibration"] = calibration
    return export_scorer(scorer, backbone, out_dir, example_snippets=example_snippets, max_snippets=max_snippets,
                         check_lengths=check_lengths, tolerance=tolerance, frame_size=frame_size, extra=extra)


def _export_onnx(module: nn.Module, example: Tensor, path: Path, input_name: str, output_names: list[str],
                 axis: str) -> None:
    torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=output_names,
                      dynamic_axes={input_name: {0: axis}, **{name: {0: axis} for name in output_names}},
                      opset_version=OPSET, dynamo=False)


def export_scorer(scorer: SnippetScorer, backbone: Backbone, out_dir: str | Path, *,
                  example_snippets: int | None = None, max_snippets: int = DEFAULT_MAX_SNIPPETS,
                  check_lengths: tuple[int, ...] | None = None, tolerance: float = TOLERANCE,
                  batch: int = DEFAULT_BATCH, extra: dict | None = None,
                  frame_size: tuple[int, int] | None = None) -> dict:
    """:func:`export_student` for a scorer built by hand (no run needed). ``example_snippets`` and
    ``check_lengths`` default to :data:`DEFAULT_EXAMPLE_SNIPPETS` and :data:`DEFAULT_CHECK_LENGTHS`, lowered to
    ``max_snippets`` (so ``--max-snippets 8`` works without naming them)."""
    if max_snippets < 1 or batch < 1:
        raise ValueError(f"max_snippets and batch must be at least 1, got {max_snippets} and {batch}")
    if example_snippets is None:
        example_snippets = min(DEFAULT_EXAMPLE_SNIPPETS, max_snippets)
    if check_lengths is None:
        check_lengths = tuple(sorted({min(t, max_snippets) for t in DEFAULT_CHECK_LENGTHS}))
    if not 1 <= example_snippets <= max_snippets:
        raise ValueError(f"example_snippets must be in [1, max_snippets={max_snippets}], got {example_snippets}")
    bad = [t for t in check_lengths if not 1 <= t <= max_snippets]
    if not check_lengths or bad:
        raise ValueError(f"check_lengths must be non-empty and in [1, {max_snippets}], got {check_lengths}")
    if backbone.device.type != "cpu":
        raise ValueError("export on the CPU: build the backbone with device='cpu'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / EXPORT_JSON).unlink(missing_ok=True)  # only a checked export has one
    scorer = scorer.eval()
    (h, w), f = input_size(backbone, frame_size), backbone.frames_per_snippet
    gen = torch.Generator().manual_seed(1)
    snippets = torch.randn(min(example_snippets, batch), 3, f, h, w, generator=gen)
    features = torch.randn(example_snippets, *scorer.feature_shape, generator=gen)
    spatial = scorer.grid is not None

    with warnings.catch_warnings():
        # The head's input-shape checks are Python and become trace constants; the lengths are checked below.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # exactly torch's deprecation notices of the calls below (see JIT_LOAD_WARNING and OPSET for why they stay)
        warnings.filterwarnings("ignore", message=JIT_BUILD_WARNING, category=FutureWarning)
        warnings.filterwarnings("ignore", message=LEGACY_ONNX_WARNING, category=DeprecationWarning)
        with torch.no_grad(), attention_unblocked(scorer):
            embedder = torch.jit.trace(scorer.embedder, snippets, check_trace=False)
            head = torch.jit.trace(scorer.scorer, features, check_trace=False)
            _export_onnx(scorer.embedder, snippets, out / BACKBONE_ONNX, INPUT_NAME, [FEATURES_NAME], "n")
            _export_onnx(scorer.scorer, features, out / HEAD_ONNX, FEATURES_NAME,
                         [OUTPUT_NAME, MAPS_NAME] if spatial else [OUTPUT_NAME], "T")
        scripted = torch.jit.script((_ChunkedMapScorer if spatial else _ChunkedScorer)(embedder, head, max_snippets,
                                                                                      batch))
        torch.jit.save(scripted, str(out / TORCHSCRIPT_FILE))
    import onnx

    model = onnx.load(str(out / HEAD_ONNX))
    onnx.helper.set_model_props(model, {METADATA_MAX_SNIPPETS: str(max_snippets)})
    onnx.save(model, str(out / HEAD_ONNX))

    loaded = load_torchscript(out / TORCHSCRIPT_FILE)
    results = check_equal(scorer, loaded, out, _check_inputs(backbone, tuple(check_lengths), (h, w)),
                          head_lengths=(min(HEAD_CHECK_LENGTH, max_snippets),), tolerance=tolerance)
    info = {
        **(extra or {}),
        "backbone": backbone.name, "backbone_kind": backbone.kind, "weights": backbone.weights_id,
        "frame_indices": list(backbone.frame_indices), "crops": backbone.crops,
        "preprocessing": backbone.fingerprint_params()["preprocessing"],
        "input": {"name": INPUT_NAME, "shape": ["n", 3, f, h, w], "dtype": "float32",
                  "what": "extractors.base.preprocess_snippets output, one crop per row"},
        "features": ({"name": FEATURES_NAME, "shape": ["T", backbone.dim],
                      "what": "backbone.onnx output for one video and crop, head.onnx input"} if not spatial else
                     {"name": FEATURES_NAME, "shape": ["T", scorer.feature_shape[0], backbone.dim],
                      "cells": list(scorer.cells), "what": "backbone.onnx output for one video: each snippet's "
                      "cells (the backbone's grid, row-major), head.onnx input"}),
        "output": {"name": OUTPUT_NAME, "shape": ["T"], "what": "per-snippet anomaly scores in (0, 1)"},
        "T_range": [1, max_snippets], "batch": batch, "example_snippets": example_snippets, "opset": OPSET,
        "files": {"torchscript": TORCHSCRIPT_FILE, "backbone_onnx": BACKBONE_ONNX, "head_onnx": HEAD_ONNX},
        "tolerance": {"max_abs_diff_scores": tolerance}, "check": results,
        "max_abs_diff": {k: max(r.get(k, 0.0) for r in results.values()) for k in ("torchscript", "onnx")},
        **(maps_export_entries(scorer.grid) if spatial else {}),
    }
    atomic_write_json(out / EXPORT_JSON, info)
    return info


def training_decode(run: LoadedRun, store: FeatureStore) -> dict | None:
    """How the run's (single backbone's) training features were decoded: ``{"backend", "short_side", "filter"}``
    (plus ``square`` and ``timeline`` when not the defaults)
    from the store's extractor params, None when the store has none (features imported from elsewhere)."""
    decode = store.extractor_params(run.fingerprints[run.backbones[0]]).get("decode")
    return dict(decode) if decode else None


def training_frame_size(run: LoadedRun, store: FeatureStore) -> tuple[int, int] | None:
    """(width, height) most of the run's training videos have (None for imported features, which have no
    videos): the frame size a full-view export is traced for."""
    backbone = run.backbones[0]
    sizes = Counter()
    for row in store.features(backbone):
        record = store.get_feature(row["key"])  # None: damaged (named by the store)
        ours = record is not None and record.fingerprint == run.fingerprints[backbone]
        info = store.video(record.video_key) if ours else None
        if info and info["width"]:
            sizes[(int(info["width"]), int(info["height"]))] += 1
    return sizes.most_common(1)[0][0] if sizes else None


def backbone_for_run(run: LoadedRun, store: FeatureStore, weights: str | None = None) -> Backbone:
    """The run's single backbone on the CPU, with the crops and frames its training features were made with (a
    spatial run's with their grid choice: ``pipeline.runs.training_backbone``)."""
    if len(run.backbones) != 1:
        raise UserError(f"run {run.key[:12]} uses {len(run.backbones)} backbones ({', '.join(run.backbones)}); "
                        "export supports single-backbone runs (the student)")
    return training_backbone(run, store, run.backbones[0], weights=weights, device="cpu")


def export_run(store: str | Path | None, run_ref: str, *, out: str | Path | None = None,
               weights: dict[str, str] | None = None, max_snippets: int = DEFAULT_MAX_SNIPPETS,
               frame_size: tuple[int, int] | None = None) -> tuple[LoadedRun, str, Path, dict]:
    """Export the run ``run_ref`` of ``store``: its single backbone and head -> ONNX + TorchScript under ``out``
    (default ``<run folder>/export``), checked. Returns (run, backbone name, out folder, export.json's content).
    Raises UserError (a read-only store without ``out``, a multi-backbone run), WeightsNotFound, ValueError."""
    opened = open_store(store, create=False)  # a read-only store exports to an explicit out
    try:
        run = load_run(opened, run_ref)
        backbone = backbone_for_run(run, opened, (weights or {}).get(run.backbones[0]))
        folder = Path(out) if out else run.folder / defaults.EXPORT_FOLDER
        if not out and opened.readonly:
            raise StoreReadOnly(opened.root,
                                f"the export would go into the run's folder {folder}; pass `out` (a folder)")
        info = export_student(run, backbone, folder, max_snippets=max_snippets, decode=training_decode(run, opened),
                              frame_size=frame_size or training_frame_size(run, opened))
    finally:
        opened.close()
    return run, backbone.name, folder, info
