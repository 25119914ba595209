"""An export folder (``dakd export``) read back: the file and tensor names both sides agree on, and
:class:`OnnxScorer`, ``backbone.onnx`` + ``head.onnx`` in onnxruntime, the scoring path of ``dakd detect --onnx`` and
``dakd watch --onnx`` (numpy and onnxruntime only: no torch). The writer is :mod:`pipeline.export.exporter`.

A spatial run's head has a second output, its anomaly maps ``[T, rows, cols]`` (:data:`MAPS_NAME`), which
``export.json`` announces with ``"outputs": ["scores", "maps"]`` and ``"grid": [rows, cols]``
(:func:`maps_export_entries` writes them, :func:`maps_output` reads them); :meth:`OnnxScorer.score_maps` returns
them beside the scores, None for an export without maps. The head of a spatial run's export takes one video's
cells ``[T, C, D]`` (its backbone graph gives ``[n, C, D]``), not one crop's features ``[T, D]``
(:attr:`OnnxScorer.cells`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.defaults import DEFAULT_MAX_SNIPPETS, EXPORT_JSON  # noqa: F401 (EXPORT_JSON re-exported)

TORCHSCRIPT_FILE = "student.torchscript.pt"
BACKBONE_ONNX = "backbone.onnx"
HEAD_ONNX = "head.onnx"
# Largest allowed |exported - eager| on scores in (0, 1), in the export's check and the README's claim. Measured on a
# CPU (torch 2.14, onnxruntime 1.32): TorchScript 0 to 6e-8; ONNX 6e-8 on the tests' models and random full-size
# heads, up to 1.0e-6 on a teacher trained 200 epochs (head over 515 snippets), 4e-7 on its vtest.avi scores
# and 3.2e-6 on a synthetic video with tests/pipeline/test_detect.py's trained student (detect --onnx vs eager).
# The cause is float32 round-off of onnxruntime's convolution kernels (backbone features differ by ~6e-6),
# amplified by the head's input standardisation where a training feature dimension was nearly constant (std floored
# at models.normalization.STD_FLOOR): such a run can exceed this on footage unlike its training videos although
# the check on its fixed inputs passed. Calibrated thresholds keep a margin from every score
# (pipeline.calibrate.calibrator).
TOLERANCE = 1e-4
INPUT_NAME = "snippets"
FEATURES_NAME = "features"
OUTPUT_NAME = "scores"
MAPS_NAME = "maps"  # the head's optional second output: per-snippet cell maps [T, rows, cols] in (0, 1)
METADATA_MAX_SNIPPETS = "max_snippets"
DEFAULT_BATCH = 16  # snippets through the backbone graph at once


class TooManySnippets(ValueError):
    """The video has more snippets than the export accepts."""


def too_many_message(n: int | str, max_snippets: int) -> str:
    """The :class:`TooManySnippets` reason. ``n``: the video's snippet count, or a phrase such as ``"more than
    8"`` when the caller stopped decoding at the limit."""
    return (f"the video has {n} snippets but the exported model scores at most {max_snippets} at once (the "
            f"max_snippets it was exported with, which bounds the attention's memory: heads x T^2 floats); "
            f"export again with a larger one (dakd export RUN --max-snippets N), or score this video with the eager "
            f"model")


def maps_export_entries(grid: tuple[int, int]) -> dict:
    """The ``export.json`` entries of a head with a maps output over a ``grid`` (rows, cols): ``outputs`` (the
    head's output names, scores first), ``grid`` and ``maps`` (its shape and meaning)."""
    rows, cols = (int(v) for v in grid)
    return {"outputs": [OUTPUT_NAME, MAPS_NAME], "grid": [rows, cols],
            "maps": {"name": MAPS_NAME, "shape": ["T", rows, cols],
                     "what": "per-snippet anomaly scores of each grid cell in (0, 1), cells row-major"}}


def maps_output(info: dict) -> tuple[str, tuple[int, int]] | None:
    """(name of the head's maps output, grid (rows, cols)) from ``export.json``'s ``outputs`` and ``grid``; None
    when ``outputs`` is absent or names the scores alone (an export without maps). Raises ValueError on a second
    output without a grid of two positive sizes."""
    outputs = info.get("outputs") or [OUTPUT_NAME]
    if len(outputs) == 1:
        return None
    grid = info.get("grid")
    if len(outputs) != 2 or outputs[0] != OUTPUT_NAME or not isinstance(grid, list) or len(grid) != 2 \
            or not all(isinstance(v, int) and v >= 1 for v in grid):
        raise ValueError(f"outputs {outputs!r} with grid {grid!r}: expected [{OUTPUT_NAME!r}, MAPS] and [rows, cols]")
    return str(outputs[1]), (grid[0], grid[1])


def _providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxScorer:
    """``backbone.onnx`` + ``head.onnx`` of an export folder in onnxruntime (CUDA when available, else CPU).
    ``maps``: (the head's maps output, grid) of a spatial export (:func:`maps_output`), None without maps."""

    def __init__(self, folder: str | Path, providers: list[str] | None = None, batch: int = DEFAULT_BATCH,
                 maps: tuple[str, tuple[int, int]] | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.batch = batch
        providers = providers or _providers()
        self.backbone = ort.InferenceSession(str(self.folder / BACKBONE_ONNX), providers=providers)
        self.head = ort.InferenceSession(str(self.folder / HEAD_ONNX), providers=providers)
        meta = self.head.get_modelmeta().custom_metadata_map
        self.max_snippets = int(meta.get(METADATA_MAX_SNIPPETS, DEFAULT_MAX_SNIPPETS))
        self.input_shape = self.backbone.get_inputs()[0].shape  # ["n", 3, F, c, c]
        # True: the head takes one video's cells [T, C, D] (a spatial run's export), not one crop's [T, D]
        self.cells = len(self.head.get_inputs()[0].shape) == 3
        self.maps_name, self.grid = maps if maps is not None else (None, None)
        outputs = [o.name for o in self.head.get_outputs()]
        if self.maps_name is not None and self.maps_name not in outputs:
            raise ValueError(f"{self.folder / HEAD_ONNX} has no output {self.maps_name!r} (outputs: {outputs})")

    def check_length(self, n: int) -> None:
        if not 1 <= n <= self.max_snippets:
            raise TooManySnippets(too_many_message(n, self.max_snippets))

    def embed(self, x: np.ndarray) -> np.ndarray:
        """float32 ``[n, 3, F, c, c]`` -> features ``[n, D]`` (:attr:`cells`: ``[n, C, D]``), ``batch`` rows at a
        time."""
        if hasattr(x, "detach"):  # a torch tensor
            x = x.detach().cpu().numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = tuple(self.input_shape[1:])
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected preprocessed snippets [n, {', '.join(map(str, expected))}], "
                             f"got {tuple(x.shape)}")
        return np.concatenate([self.backbone.run(None, {INPUT_NAME: x[i:i + self.batch]})[0]
                               for i in range(0, len(x), self.batch)])

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """One video's features of one crop ``[T, D]`` (:attr:`cells`: its cells ``[T, C, D]``) -> scores ``[T]``."""
        self.check_length(len(features))
        return self.head.run([OUTPUT_NAME], {FEATURES_NAME: np.ascontiguousarray(features, np.float32)})[0]

    def score_maps(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One video's features of one crop ``[T, D]`` (:attr:`cells`: its cells ``[T, C, D]``) -> (scores ``[T]``,
        maps ``[T, rows, cols]`` or None for an export without maps), from one run of the head."""
        if self.maps_name is None:
            return self.score_features(features), None
        self.check_length(len(features))
        scores, maps = self.head.run([OUTPUT_NAME, self.maps_name],
                                     {FEATURES_NAME: np.ascontiguousarray(features, np.float32)})
        return scores, maps.reshape(len(scores), *self.grid)  # a head may give [T, rows * cols]

    def score_crops_maps(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``[T, crops, D]`` -> (scores ``[T]``, maps ``[T, rows, cols]`` or None): each crop scored as its own
        sequence, scores and maps averaged over the crops (as :meth:`score_crops`). With :attr:`cells` the second
        axis holds the video's cells ``[T, C, D]``, scored together (a grid is one view: no crops)."""
        if self.maps_name is None:
            return self.score_crops(features), None
        if self.cells:
            return self.score_maps(features)
        both = [self.score_maps(features[:, k]) for k in range(features.shape[1])]
        return (np.mean([s for s, _ in both], axis=0).astype(np.float32),
                np.mean([m for _, m in both], axis=0).astype(np.float32))

    def score_crops(self, features: np.ndarray) -> np.ndarray:
        """``[T, crops, D]`` -> ``[T]``: each crop scored as its own sequence, then averaged (as
        ``score_snippets``)."""
        return np.mean([self.score_features(features[:, k]) for k in range(features.shape[1])],
                       axis=0).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One video, one crop, preprocessed ``[T, 3, F, c, c]`` -> scores ``[T]``."""
        self.check_length(len(x))  # before the backbone runs over a video that would be refused anyway
        return self.score_features(self.embed(x))

    def score_preprocessed(self, x: np.ndarray, crops: int = 1) -> np.ndarray:
        """The output of ``Backbone.preprocess`` for T snippets, ``[T * crops, 3, F, c, c]`` (crops of a snippet
        adjacent) -> ``[T]``."""
        if x.shape[0] % crops:
            raise ValueError(f"{x.shape[0]} preprocessed rows are not a multiple of crops={crops}")
        self.check_length(x.shape[0] // crops)
        features = self.embed(x)
        if self.cells:  # [T, C, D]: one view's cells
            return self.score_features(features)
        return self.score_crops(features.reshape(x.shape[0] // crops, crops, -1))
