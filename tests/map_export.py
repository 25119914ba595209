"""A tiny export folder whose head has a maps output, as a spatial run's export will have (the exporter's side
lands with the spatial model): ``backbone.onnx`` and a two-output ``head.onnx`` traced with torch.onnx from small
real modules, and an ``export.json`` that ``pipeline.detect.detector.load_export`` reads.

The backbone averages each snippet's pixels per channel and projects them to ``DIM`` features; the head scores each
snippet ``sigmoid(w . f + SCORE_BIAS)`` (above 0.5 on every frame: every snippet alerts) and maps each cell
``sigmoid(W f + b)`` with ``b`` = ``HOT_BIAS`` on the hot cell and ``COLD_BIAS`` elsewhere, so the hot cell is the
only one above the threshold whatever the frames.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.detect.onnx_scorer import (BACKBONE_ONNX, EXPORT_JSON, FEATURES_NAME, HEAD_ONNX, INPUT_NAME, MAPS_NAME,
                                         OUTPUT_NAME, maps_export_entries)

DIM = 8
SIZE = 32  # the squash view's side
FRAME_INDICES = (0, 8)
SCORE_BIAS = 2.0  # sigmoid(2) = 0.88
HOT_BIAS, COLD_BIAS = 3.0, -3.0  # sigmoid(3) = 0.95, sigmoid(-3) = 0.05
WEIGHT_STD = 0.05  # features are in [-1, 1]: the maps and scores vary a little per snippet, the hot cell stays hot


class PixelMean(nn.Module):
    """``[n, 3, F, h, w]`` -> ``[n, DIM]``."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, DIM)

    def forward(self, x):
        return self.proj(x.mean(dim=(2, 3, 4)))


class MapHead(nn.Module):
    """``[T, DIM]`` -> (scores ``[T]``, maps ``[T, rows, cols]``)."""

    def __init__(self, grid: tuple[int, int], hot: tuple[int, int]):
        super().__init__()
        self.grid = grid
        self.score = nn.Linear(DIM, 1)
        self.cells = nn.Linear(DIM, grid[0] * grid[1])
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for layer in (self.score, self.cells):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * WEIGHT_STD)
            self.score.bias.fill_(SCORE_BIAS)
            self.cells.bias.fill_(COLD_BIAS)
            self.cells.bias[hot[0] * grid[1] + hot[1]] = HOT_BIAS

    def forward(self, features):
        return (torch.sigmoid(self.score(features))[:, 0],
                torch.sigmoid(self.cells(features)).reshape(-1, *self.grid))


def write_map_export(folder: Path, grid: tuple[int, int] = (3, 4), hot: tuple[int, int] = (1, 2), *,
                     maps: bool = True) -> tuple[Path, MapHead]:
    """The export folder (``maps`` False: the same head with its scores alone, export.json without outputs).
    Returns (folder, the head module, to compare the graph's outputs with)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    backbone, head = PixelMean().eval(), MapHead(grid, hot).eval()
    snippets = torch.randn(2, 3, len(FRAME_INDICES), SIZE, SIZE)
    features = torch.randn(5, DIM)
    outputs = [OUTPUT_NAME, MAPS_NAME] if maps else [OUTPUT_NAME]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch's notices about its legacy exporter
        torch.onnx.export(backbone, (snippets,), str(folder / BACKBONE_ONNX), input_names=[INPUT_NAME],
                          output_names=[FEATURES_NAME], dynamic_axes={INPUT_NAME: {0: "n"}, FEATURES_NAME: {0: "n"}},
                          opset_version=17, dynamo=False)
        module = head if maps else _ScoresOnly(head)
        torch.onnx.export(module, (features,), str(folder / HEAD_ONNX), input_names=[FEATURES_NAME],
                          output_names=outputs, dynamic_axes={FEATURES_NAME: {0: "T"},
                                                              **{name: {0: "T"} for name in outputs}},
                          opset_version=17, dynamo=False)
    info = {"run": None, "stage": "student", "backbone": "pixel_mean", "backbone_kind": "video",
            "frame_indices": list(FRAME_INDICES), "crops": 1,
            "preprocessing": {"resize": "square", "resize_size": SIZE, "interpolation": "bilinear",
                              "crop_size": SIZE, "mean": [0.5] * 3, "std": [0.5] * 3, "antialias": True,
                              "view": "squash"},
            "decode": {"backend": "pyav", "short_side": None, "filter": None}}
    if maps:
        info.update(maps_export_entries(grid))
    (folder / EXPORT_JSON).write_text(json.dumps(info))
    return folder, head


class _ScoresOnly(nn.Module):
    def __init__(self, head: MapHead):
        super().__init__()
        self.head = head

    def forward(self, features):
        return self.head(features)[0]


def head_outputs(head: MapHead, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eager head on ``[T, DIM]``: (scores ``[T]``, maps ``[T, rows, cols]``)."""
    with torch.no_grad():
        scores, maps = head(torch.from_numpy(np.ascontiguousarray(features, np.float32)))
    return scores.numpy(), maps.numpy()
