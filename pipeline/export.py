"""Export a single-backbone run (the student: backbone + temporal head) to TorchScript and ONNX.

    python -m pipeline.export RUN --store DIR [--out DIR] [--weights NAME=PATH]

The exported graph is :class:`SnippetScorer`: ONE video's preprocessed snippets, float ``[T, 3, F, c, c]``
(one crop; the output of ``Backbone.preprocess``), -> per-snippet scores ``[T]`` in (0, 1). Preprocessing
(frame choice, resize, crop, normalisation of the uint8 frames) stays outside the graph: it is
``Backbone.preprocess``. Several crops are scored one sequence per crop and averaged, as
``pipeline.scoring.score_snippets`` does (:meth:`OnnxScorer.score_preprocessed`).

Supported lengths: ``1 <= T <= max_snippets`` (at most ``models.attention.QUERY_BLOCK`` = 256). The attention
attends its query rows in blocks of ``QUERY_BLOCK`` in a Python loop; tracing records the loop for one block,
whose slice ``[0:QUERY_BLOCK]`` covers every row for any ``T <= QUERY_BLOCK``, and every other shape (the
relative-distance buckets, the reshapes) follows ``T`` dynamically. So one traced graph is exact for any T in that
range (checked at several T on every export), and for ``T > QUERY_BLOCK`` it would fail (a broadcast error),
never silently give other scores. Scoring a long video in windows would change its scores (attention sees the
whole video), so the exported model refuses longer videos with a clear error (:class:`TooManySnippets`); score
those with the eager model (``pipeline.scoring``).

Written to ``--out`` (default ``<run folder>/export``): ``student.torchscript.pt`` (``torch.jit.load``; the length
check is part of the module), ``student.onnx`` (opset 17, dynamic axis ``T``, the bound in its metadata
``max_snippets``) and ``export.json`` (run, backbone, input shape, T range, tolerance and the measured
differences). An export whose TorchScript or ONNX scores differ from the eager model's by more than
``TOLERANCE`` raises ``ValueError`` and leaves no ``export.json``.

``export.json`` also holds everything needed to go from a video file to the graph's input without the store, the
run or the backbone's weights (``python -m pipeline.detect VIDEO --onnx DIR``): ``preprocessing``,
``frame_indices`` and ``crops`` (for ``extractors.base.preprocess_snippets``), and ``decode``, how the run's
training features were decoded (``{"backend", "short_side", "filter"}`` from the store's extractor params; null
when the store has none, e.g. imported features), so that deployed videos are decoded the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from extractors.base import SNIPPET_FRAMES, Backbone
from extractors.weights import WeightsNotFound
from models.attention import QUERY_BLOCK
from models.vad_model import VADModel
from pipeline.atomic import atomic_write_json
from pipeline.errors import UserError
from pipeline.extract import parse_weights
from pipeline.runs import LoadedRun, load_run, training_backbone
from pipeline.store import MANIFEST, FeatureStore, is_store

TORCHSCRIPT_FILE = "student.torchscript.pt"
ONNX_FILE = "student.onnx"
EXPORT_JSON = "export.json"
OPSET = 17  # the legacy (TorchScript-based) exporter; the torch.export-based one fixed T to the example's length
# Largest allowed |exported - eager| on scores in (0, 1). Measured differences are ~1e-7 (float32 round-off of a
# different kernel order); 1e-4 leaves room for other CPUs / onnxruntime builds, and is far below any threshold.
TOLERANCE = 1e-4
DEFAULT_EXAMPLE_SNIPPETS = 32  # lowered to max_snippets when that is smaller
DEFAULT_CHECK_LENGTHS = (1, 5, 33)  # each lowered to max_snippets when larger
INPUT_NAME = "snippets"
OUTPUT_NAME = "scores"
METADATA_MAX_SNIPPETS = "max_snippets"


class TooManySnippets(ValueError):
    """The video has more snippets than the exported graph supports."""


def too_many_message(n: int | str, max_snippets: int) -> str:
    """The :class:`TooManySnippets` reason. ``n``: the video's snippet count, or a phrase such as ``"more than
    8"`` when the caller stopped decoding at the limit."""
    why = (f"the attention's one-block limit, models.attention.QUERY_BLOCK = {QUERY_BLOCK}"
           if max_snippets == QUERY_BLOCK else "the --max-snippets it was exported with")
    return (f"the video has {n} snippets but the exported model scores at most {max_snippets} at once ({why}); "
            f"windows would change the scores, so score this video with the eager model (pipeline.scoring / "
            f"pipeline.detect)")


class SnippetScorer(nn.Module):
    """Backbone + temporal head as one module: float ``[T, 3, F, c, c]`` (one video, one crop, preprocessed)
    -> scores ``[T]``.

    Image backbones embed the F frames of each snippet and average them, video backbones embed the clip, exactly
    as ``Backbone.forward_preprocessed``; the head then sees the sequence ``[1, T, D]``.
    """

    def __init__(self, backbone: Backbone, head: VADModel):
        super().__init__()
        if len(head.input_dims) != 1 or head.input_dims[0] != backbone.dim:
            raise ValueError(f"the head takes input dims {head.input_dims}; exporting needs a single-backbone head "
                             f"on {backbone.name}'s {backbone.dim}-d features")
        self.backbone = backbone.model  # registered, so tracing finds its parameters
        self._embed_snippets = backbone.embed_snippets  # uses the same module
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head([self._embed_snippets(x).unsqueeze(0)]).scores[0]


class _LengthGuard(nn.Module):
    """Scripted wrapper of the traced scorer that refuses lengths outside ``[1, max_snippets]``."""

    def __init__(self, traced: nn.Module, max_snippets: int):
        super().__init__()
        self.scorer = traced
        self.max_snippets = max_snippets

    def forward(self, x: Tensor) -> Tensor:
        n = x.size(0)
        if n < 1 or n > self.max_snippets:
            raise ValueError(f"the exported model scores 1 to {self.max_snippets} snippets at once, got {n}; "
                             f"score longer videos with the eager model (pipeline.scoring)")
        return self.scorer(x)


def _providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxScorer:
    """``student.onnx`` in onnxruntime (CUDA when available, else CPU): float32 ``[T, 3, F, c, c]`` -> ``[T]``."""

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), providers=providers or _providers())
        meta = self.session.get_modelmeta().custom_metadata_map
        self.max_snippets = int(meta.get(METADATA_MAX_SNIPPETS, QUERY_BLOCK))
        self.input_shape = self.session.get_inputs()[0].shape  # ["T", 3, F, c, c]

    def __call__(self, x: np.ndarray | Tensor) -> np.ndarray:
        if isinstance(x, Tensor):
            x = x.detach().cpu().numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = tuple(self.input_shape[1:])
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected preprocessed snippets [T, {', '.join(map(str, expected))}], "
                             f"got {tuple(x.shape)}")
        if not 1 <= x.shape[0] <= self.max_snippets:
            raise TooManySnippets(too_many_message(x.shape[0], self.max_snippets))
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    def score_preprocessed(self, x: np.ndarray | Tensor, crops: int = 1) -> np.ndarray:
        """The output of ``Backbone.preprocess`` for T snippets, ``[T * crops, 3, F, c, c]`` (crops of a snippet
        adjacent) -> ``[T]``: each crop scored as its own sequence, then averaged (as ``score_snippets``)."""
        if isinstance(x, Tensor):
            x = x.detach().cpu().numpy()
        if x.shape[0] % crops:
            raise ValueError(f"{x.shape[0]} preprocessed rows are not a multiple of crops={crops}")
        per_crop = x.reshape(x.shape[0] // crops, crops, *x.shape[1:])
        return np.mean([self(per_crop[:, k]) for k in range(crops)], axis=0).astype(np.float32)


def _check_inputs(backbone: Backbone, lengths: tuple[int, ...], seed: int = 0) -> list[tuple[str, Tensor]]:
    """Fixed inputs for the equality check: normal noise at each length, and seeded uint8 snippets through the
    backbone's own preprocessing (real value range and statistics of frames)."""
    gen = torch.Generator().manual_seed(seed)
    c, f = backbone.preprocessing.crop_size, backbone.frames_per_snippet
    inputs = [(f"noise_T{t}", torch.randn(t, 3, f, c, c, generator=gen)) for t in lengths]
    n = min(lengths[-1], 8)
    frames = torch.randint(0, 256, (n, SNIPPET_FRAMES, 72, 96, 3), dtype=torch.uint8, generator=gen)
    pre = backbone.preprocess(frames).cpu().reshape(n, backbone.crops, 3, f, c, c)[:, 0]  # first crop
    inputs.append((f"preprocessed_T{n}", pre.contiguous()))
    return inputs


def check_equal(scorer: nn.Module, scripted: nn.Module, onnx_path: Path, inputs: list[tuple[str, Tensor]],
                tolerance: float = TOLERANCE) -> dict:
    """Max |TorchScript - eager| and |ONNX - eager| per input; raises ValueError above ``tolerance``."""
    onnx_scorer = OnnxScorer(onnx_path, providers=["CPUExecutionProvider"])
    results = {}
    for name, x in inputs:
        with torch.no_grad():
            eager = scorer(x).numpy()
            ts = scripted(x).numpy()
        ort = onnx_scorer(x.numpy())
        diffs = {"torchscript": float(np.abs(ts - eager).max()), "onnx": float(np.abs(ort - eager).max())}
        results[name] = {"T": int(x.shape[0]), **diffs}
        for what, diff in diffs.items():
            if not diff <= tolerance:  # also catches NaN
                raise ValueError(f"the {what} export's scores differ from the eager model's by {diff:.3g} on "
                                 f"{name} (tolerance {tolerance:g}): the export is not faithful")
    return results


def export_student(run: LoadedRun, backbone: Backbone, out_dir: str | Path, *,
                   example_snippets: int | None = None, max_snippets: int = QUERY_BLOCK,
                   check_lengths: tuple[int, ...] | None = None, tolerance: float = TOLERANCE,
                   decode: dict | None = None) -> dict:
    """Write the TorchScript and ONNX exports of ``run`` (single backbone ``backbone``) into ``out_dir``, check
    that both give the eager scores within ``tolerance`` at every T in ``check_lengths`` (and on preprocessed
    frames), and write ``export.json``. Returns its content.

    decode: how the run's training features were decoded (:func:`training_decode`), written to export.json for
    ``pipeline.detect --onnx``; None when unknown."""
    if tuple(run.backbones) != (backbone.name,):
        raise ValueError(f"run {run.key[:12]} uses backbones {list(run.backbones)}; export needs a single-backbone "
                         f"run on {backbone.name}")
    if not isinstance(run.model, VADModel):
        raise ValueError(f"run {run.key[:12]} is a {run.checkpoint['stage']} run; export supports VADModel heads "
                         "(teacher / student)")
    scorer = SnippetScorer(backbone, run.model)
    info = export_scorer(scorer, backbone, out_dir, example_snippets=example_snippets, max_snippets=max_snippets,
                         check_lengths=check_lengths, tolerance=tolerance,
                         extra={"run": run.key, "stage": run.checkpoint["stage"], "decode": decode})
    return info


def export_scorer(scorer: SnippetScorer, backbone: Backbone, out_dir: str | Path, *,
                  example_snippets: int | None = None, max_snippets: int = QUERY_BLOCK,
                  check_lengths: tuple[int, ...] | None = None, tolerance: float = TOLERANCE,
                  extra: dict | None = None) -> dict:
    """:func:`export_student` for a scorer built by hand (no run needed). ``example_snippets`` and
    ``check_lengths`` default to :data:`DEFAULT_EXAMPLE_SNIPPETS` and :data:`DEFAULT_CHECK_LENGTHS`, lowered to
    ``max_snippets`` (so ``--max-snippets 8`` works without naming them)."""
    if not 1 <= max_snippets <= QUERY_BLOCK:
        raise ValueError(f"max_snippets must be in [1, {QUERY_BLOCK}] (one attention block), got {max_snippets}")
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
    c, f = backbone.preprocessing.crop_size, backbone.frames_per_snippet
    example = torch.randn(example_snippets, 3, f, c, c, generator=torch.Generator().manual_seed(1))

    with warnings.catch_warnings():
        # The head's input-shape checks are Python and become trace constants; the lengths are checked below.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        with torch.no_grad():
            traced = torch.jit.trace(scorer, example, check_trace=False)
        scripted = torch.jit.script(_LengthGuard(traced, max_snippets))
        torch.jit.save(scripted, str(out / TORCHSCRIPT_FILE))
        onnx_path = out / ONNX_FILE
        torch.onnx.export(scorer, (example,), str(onnx_path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "T"}, OUTPUT_NAME: {0: "T"}}, opset_version=OPSET,
                          dynamo=False)
    import onnx

    model = onnx.load(str(onnx_path))
    onnx.helper.set_model_props(model, {METADATA_MAX_SNIPPETS: str(max_snippets)})
    onnx.save(model, str(onnx_path))

    loaded = torch.jit.load(str(out / TORCHSCRIPT_FILE))
    results = check_equal(scorer, loaded, onnx_path, _check_inputs(backbone, tuple(check_lengths)), tolerance)
    info = {
        **(extra or {}),
        "backbone": backbone.name, "backbone_kind": backbone.kind, "weights": backbone.weights_id,
        "frame_indices": list(backbone.frame_indices), "crops": backbone.crops,
        "preprocessing": backbone.fingerprint_params()["preprocessing"],
        "input": {"name": INPUT_NAME, "shape": ["T", 3, f, c, c], "dtype": "float32",
                  "what": "Backbone.preprocess output of one crop of one video"},
        "output": {"name": OUTPUT_NAME, "shape": ["T"], "what": "per-snippet anomaly scores in (0, 1)"},
        "T_range": [1, max_snippets], "example_snippets": example_snippets, "opset": OPSET,
        "files": {"torchscript": TORCHSCRIPT_FILE, "onnx": ONNX_FILE},
        "tolerance": {"max_abs_diff_scores": tolerance}, "check": results,
        "max_abs_diff": {k: max(r[k] for r in results.values()) for k in ("torchscript", "onnx")},
    }
    atomic_write_json(out / EXPORT_JSON, info)
    return info


def training_decode(run: LoadedRun, store: FeatureStore) -> dict | None:
    """How the run's (single backbone's) training features were decoded: ``{"backend", "short_side", "filter"}``
    from the store's extractor params, None when the store has none (features imported from elsewhere)."""
    decode = store.extractor_params(run.fingerprints[run.backbones[0]]).get("decode")
    return dict(decode) if decode else None


def backbone_for_run(run: LoadedRun, store: FeatureStore, weights: str | None = None) -> Backbone:
    """The run's single backbone on the CPU, with the crops and frames its training features were made with."""
    if len(run.backbones) != 1:
        raise UserError(f"run {run.key[:12]} uses {len(run.backbones)} backbones ({', '.join(run.backbones)}); "
                        "export supports single-backbone runs (the student)")
    return training_backbone(run, store, run.backbones[0], weights=weights, device="cpu")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.export", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run key prefix (6+ characters) or run folder")
    p.add_argument("--store", required=True, help="the store holding the run")
    p.add_argument("--out", help="output folder (default: <run folder>/export)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file of the backbone, as for pipeline.extract")
    p.add_argument("--max-snippets", type=int, default=QUERY_BLOCK,
                   help=f"longest video (in snippets) the export accepts, at most {QUERY_BLOCK} (default)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not is_store(args.store):
        print(f"error: {args.store} is not a store (no {MANIFEST})", file=sys.stderr)
        return 2
    store = FeatureStore(args.store)
    try:
        run = load_run(store, args.run)
        backbone = backbone_for_run(run, store, parse_weights(args.weights).get(run.backbones[0]))
        out = Path(args.out) if args.out else run.folder / "export"
        info = export_student(run, backbone, out, max_snippets=args.max_snippets,
                              decode=training_decode(run, store))
    except (UserError, WeightsNotFound, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"export: run {run.key[:12]} ({backbone.name}) -> {out / TORCHSCRIPT_FILE}, {out / ONNX_FILE}; "
          f"T in [1, {info['T_range'][1]}]; max |score diff| vs eager: torchscript "
          f"{info['max_abs_diff']['torchscript']:.2g}, onnx {info['max_abs_diff']['onnx']:.2g} "
          f"(tolerance {TOLERANCE:g})")
    print(json.dumps(info["check"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
