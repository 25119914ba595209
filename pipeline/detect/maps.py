"""Anomaly maps of a spatial run, where in the frame: frame maps, event boxes, heatmap overlays, the maps file and
event snapshots (numpy, scipy and PIL; no torch).

A spatial run scores each cell of a ``rows x cols`` grid over the frame (row-major) for every 16-frame snippet: an
anomaly map ``[T_snippets, rows, cols]`` in (0, 1) beside the snippet scores ``[T]``. The cells of a grid taken
over the whole frame (the ``full`` and ``squash`` views) divide its width and height equally (:func:`cell_edges`,
the rule of ``pipeline.evaluate.localization.cell_edges``); a ``crop`` view's cells cover its centre crop only, which
this module does not know about, so its boxes are drawn as if they covered the whole frame.

Used by ``dakd detect`` (``<name>.maps.npz``, the events' boxes, the overlay's heatmap) and ``dakd watch`` (each
event's box and JPEG snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.decode import SNIPPET_FRAMES
from pipeline.alert_rule import at_or_above
from pipeline.atomic import atomic_write

DEFAULT_ALPHA = 0.5  # the heatmap's weight where the map is 1; a pixel's weight is alpha x its map value
COLORMAP = "jet"  # the only colour map: blue (0) - cyan - yellow - red (1), as matplotlib's 'jet'
COLORMAP_STEPS = 256  # entries of the colour table
BOX_COLOUR = (255, 255, 255)  # RGB of the event box's outline
BOX_MIN_WIDTH = 2  # pixels of the outline ...
BOX_WIDTH_FRACTION = 0.006  # ... or this fraction of the frame's short side when wider
JPEG_QUALITY = 90  # PIL's JPEG quality of a snapshot (1-95)
MAPS_DTYPE = np.float16  # maps as stored in the .npz: 3 decimal digits, plenty for a (0, 1) score
# A box's cells must reach the map's half maximum as well as the threshold: its lowest cell plus this fraction of the
# way to its highest. A spatial run's cell score is the mean of the snippet's score and the cell's own evidence
# (method.md §12), so when the snippet's score saturates every cell passes the threshold and the box was the whole
# frame (12-22 % of the anomalous snippets of Ped1's masked test clips for the motion teachers and the fine student).
# With the half maximum: box IoU with the mask's box 0.145-0.166 -> 0.229-0.251 and no whole-frame box (0.25 gave
# 0.226-0.284, 0.75 0.155-0.226; docs/results.md).
BOX_PEAK_FRACTION = 0.5
# Cells that touch at a corner belong to one region (8-connectivity, as the regions of RBDC in
# pipeline.evaluate.detection_criteria)
CONNECTIVITY = np.ones((3, 3), dtype=bool)
MAPS_SUFFIX = ".maps.npz"  # detect's file beside <name>.json
NPZ_KEYS = ("maps", "grid", "fps", "snippet_frames")  # the arrays of a maps file


def frame_maps(maps: np.ndarray, n_frames: int, snippet_frames: int = SNIPPET_FRAMES) -> np.ndarray:
    """Snippet maps ``[T_snip, r, c]`` -> per-frame cell maps ``[n_frames, r, c]``: snippet t's map on frames
    ``[16t, 16t + 16)``; the frames past the last whole snippet (fewer than 16, which form no snippet) take the last
    snippet's map, as the frame scores of ``pipeline.detect.detector.Detection`` take its score."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or not len(maps):
        raise ValueError(f"expected snippet maps [T, rows, cols] with T >= 1, got shape {maps.shape}")
    index = np.minimum(np.arange(n_frames) // snippet_frames, len(maps) - 1)
    return maps[index]


def cell_edges(size: int, cells: int) -> np.ndarray:
    """int ``[cells + 1]``: the pixel boundaries of ``cells`` equal cells over ``size`` pixels (rounded); cell k
    covers pixels ``[edges[k], edges[k + 1])``."""
    return np.linspace(0, size, cells + 1).round().astype(int)


def cell_region(cell_map: np.ndarray, threshold: float) -> tuple[int, int, int, int] | None:
    """``[r, c]`` -> the cells ``(row0, col0, row1, col1)`` (half-open: rows ``row0 <= i < row1``) bounding the
    connected region (:data:`CONNECTIVITY`) of cells at or above ``threshold`` that holds the highest cell (the
    first in row-major order on a tie); None when no cell reaches the threshold."""
    from scipy import ndimage

    cell_map = np.asarray(cell_map, dtype=np.float64)
    if cell_map.ndim != 2 or cell_map.size == 0:
        raise ValueError(f"expected one cell map [rows, cols], got shape {cell_map.shape}")
    top = np.unravel_index(int(np.argmax(cell_map)), cell_map.shape)
    above = at_or_above(cell_map.ravel(), threshold).reshape(cell_map.shape)  # the tie rule of every alert
    if not above[top]:
        return None
    labels, _ = ndimage.label(above, structure=CONNECTIVITY)
    rows, cols = np.nonzero(labels == labels[top])
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def cells_to_pixels(cells: tuple[int, int, int, int], grid: tuple[int, int],
                    frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Cells ``(row0, col0, row1, col1)`` of a ``grid`` (rows, cols) -> pixels ``(x0, y0, x1, y1)`` of a frame
    ``(height, width)``, half-open (``x0 <= x < x1``), the cells dividing the frame equally (:func:`cell_edges`)."""
    r0, c0, r1, c1 = cells
    ys, xs = cell_edges(frame_hw[0], grid[0]), cell_edges(frame_hw[1], grid[1])
    return int(xs[c0]), int(ys[r0]), int(xs[c1]), int(ys[r1])


def box_level(cell_map: np.ndarray, threshold: float) -> float:
    """The value a box's cells must reach in ``[r, c]``: ``threshold``, and at least the map's half maximum, its
    lowest cell plus :data:`BOX_PEAK_FRACTION` of the way to its highest. Never above the highest cell unless the
    threshold is, so a box exists exactly when a cell reaches the threshold."""
    cell_map = np.asarray(cell_map, dtype=np.float64)
    low, high = float(cell_map.min()), float(cell_map.max())
    return max(threshold, low + BOX_PEAK_FRACTION * (high - low))


def cell_box(cell_map: np.ndarray, threshold: float, frame_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``[r, c]`` -> pixels ``(x0, y0, x1, y1)`` (half-open) of a ``(height, width)`` frame: :func:`map_box`'s box,
    None when no cell reaches ``threshold``."""
    box = map_box(cell_map, threshold, frame_hw)
    return box.box if box.above else None


@dataclass(frozen=True)
class EventBox:
    """Where an event is: ``box`` pixels ``(x0, y0, x1, y1)`` (half-open) and ``cells`` ``(row0, col0, row1,
    col1)`` (half-open) of the region; ``above`` False when no cell of the event reached the threshold and the box
    is the highest cell's alone."""

    box: tuple[int, int, int, int]
    cells: tuple[int, int, int, int]
    above: bool

    def to_json(self) -> dict:
        """The keys detect's events and watch's event records carry: ``box``, ``box_cells``,
        ``box_above_threshold``."""
        return {"box": list(self.box), "box_cells": list(self.cells), "box_above_threshold": self.above}


def map_box(cell_map: np.ndarray, threshold: float, frame_hw: tuple[int, int]) -> EventBox:
    """``[r, c]`` -> the :class:`EventBox` of :func:`cell_region` at :func:`box_level`, or the highest cell's
    (``above`` False) when no cell reaches ``threshold``."""
    cell_map = np.asarray(cell_map)
    cells = cell_region(cell_map, box_level(cell_map, threshold))
    above = cells is not None
    if cells is None:
        r, c = np.unravel_index(int(np.argmax(cell_map)), cell_map.shape)
        cells = (int(r), int(c), int(r) + 1, int(c) + 1)
    return EventBox(cells_to_pixels(cells, cell_map.shape, frame_hw), cells, above)


def event_box(maps: np.ndarray, first_snippet: int, last_snippet: int, threshold: float,
              frame_hw: tuple[int, int]) -> EventBox:
    """An event's box: over snippets ``first_snippet .. last_snippet`` (inclusive) of ``maps`` ``[T, r, c]``, the
    per-cell maximum, then :func:`map_box` (the highest cell's box, flagged, when no cell reaches ``threshold``)."""
    return map_box(np.asarray(maps)[first_snippet:last_snippet + 1].max(axis=0), threshold, frame_hw)


def colormap_table(name: str = COLORMAP, steps: int = COLORMAP_STEPS) -> np.ndarray:
    """uint8 ``[steps, 3]``: the colour of map values ``k / (steps - 1)``. 'jet' is piecewise linear: each channel
    ``clip(1.5 - |4v - k|, 0, 1)`` with k = 3, 2, 1 for red, green, blue."""
    if name != "jet":
        raise ValueError(f"unknown colour map {name!r}; the only one is 'jet'")
    v = np.linspace(0.0, 1.0, steps)[:, None]
    return (np.clip(1.5 - np.abs(4 * v - np.array([3.0, 2.0, 1.0])), 0, 1) * 255).round().astype(np.uint8)


_JET = colormap_table()


def upsample(cell_map: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """float32 ``[r, c]`` -> ``[H, W]``, bilinear between cell centres, edges held (torch's ``interpolate`` with
    ``align_corners=False``, as ``pipeline.evaluate.localization.upsample``)."""
    m = np.asarray(cell_map, dtype=np.float32)

    def weights(out: int, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(out) + 0.5) * cells / out - 0.5, 0, None)  # source coordinate of each pixel
        lo = np.minimum(np.floor(pos).astype(int), cells - 1)
        return lo, np.minimum(lo + 1, cells - 1), (pos - lo).astype(np.float32)

    y0, y1, wy = weights(frame_hw[0], m.shape[0])
    x0, x1, wx = weights(frame_hw[1], m.shape[1])
    rows = m[y0] * (1 - wy)[:, None] + m[y1] * wy[:, None]  # [H, c]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def draw_box(frame: np.ndarray, box: tuple[int, int, int, int], colour=BOX_COLOUR,
             width: int | None = None) -> np.ndarray:
    """Draw the outline of ``box`` pixels ``(x0, y0, x1, y1)`` (half-open) inside it on uint8 ``[H, W, 3]`` (in
    place; the part outside the frame is clipped). ``width`` None: :data:`BOX_MIN_WIDTH` or
    :data:`BOX_WIDTH_FRACTION` of the short side. Returns the frame."""
    h, w = frame.shape[:2]
    if width is None:
        width = max(BOX_MIN_WIDTH, int(round(min(h, w) * BOX_WIDTH_FRACTION)))
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if x1 <= x0 or y1 <= y0:
        return frame
    frame[y0:min(y0 + width, y1), x0:x1] = colour
    frame[max(y1 - width, y0):y1, x0:x1] = colour
    frame[y0:y1, x0:min(x0 + width, x1)] = colour
    frame[y0:y1, max(x1 - width, x0):x1] = colour
    return frame


def heatmap_overlay(frame: np.ndarray, cell_map: np.ndarray, *, alpha: float = DEFAULT_ALPHA,
                    box: tuple[int, int, int, int] | None = None, colormap: str = COLORMAP) -> np.ndarray:
    """uint8 ``[H, W, 3]`` frame and ``[r, c]`` cell map (values in [0, 1]) -> a new uint8 ``[H, W, 3]``: the map
    upsampled to the frame (:func:`upsample`), coloured (:func:`colormap_table`) and blended with weight ``alpha``
    times the map's value, so cells near 0 leave the frame as it is and the hottest ones tint it most; then
    ``box`` (pixels, :func:`draw_box`) outlined when given."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    values = np.clip(upsample(cell_map, frame.shape[:2]), 0.0, 1.0)  # [H, W]
    table = _JET if colormap == COLORMAP else colormap_table(colormap)
    colours = table[np.rint(values * (len(table) - 1)).astype(int)].astype(np.float32)  # [H, W, 3]
    weight = (alpha * values)[..., None]
    out = np.rint(frame.astype(np.float32) * (1 - weight) + colours * weight).astype(np.uint8)
    return draw_box(out, box) if box is not None else out


def write_maps_npz(path: str | Path, maps: np.ndarray, *, grid: tuple[int, int], fps: float,
                   snippet_frames: int = SNIPPET_FRAMES) -> Path:
    """One video's snippet maps ``[T, rows, cols]`` as a compressed ``.npz`` (atomically): ``maps``
    (:data:`MAPS_DTYPE` ``[T, rows, cols]``, cells row-major), ``grid`` (int ``[2]``: rows, cols), ``fps`` (float
    scalar, 0 when unknown) and ``snippet_frames`` (int scalar: snippet t covers frames ``[t s, t s + s)``).
    Returns ``path``."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or tuple(maps.shape[1:]) != tuple(grid):
        raise ValueError(f"maps of shape {maps.shape} are not [T, {grid[0]}, {grid[1]}] snippet maps of the grid")
    if not np.isfinite(maps).all():
        raise ValueError(f"{path}: the maps hold non-finite values")
    arrays = {"maps": maps.astype(MAPS_DTYPE), "grid": np.asarray(grid, dtype=np.int64),
              "fps": np.float64(fps), "snippet_frames": np.int64(snippet_frames)}
    return atomic_write(Path(path), lambda f: np.savez_compressed(f, **arrays))


@dataclass(frozen=True)
class MapsFile:
    """A maps file read back: ``maps`` float32 ``[T, rows, cols]``, its ``grid``, ``fps`` and ``snippet_frames``."""

    maps: np.ndarray
    grid: tuple[int, int]
    fps: float
    snippet_frames: int

    def frame_maps(self, n_frames: int) -> np.ndarray:
        """``[n_frames, rows, cols]``: :func:`frame_maps`."""
        return frame_maps(self.maps, n_frames, self.snippet_frames)


def read_maps_npz(path: str | Path) -> MapsFile:
    """A file of :func:`write_maps_npz`. Raises ValueError naming the file when it is not one."""
    with np.load(Path(path), allow_pickle=False) as data:
        missing = [k for k in NPZ_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path} is not a maps file (no {', '.join(missing)})")
        maps = data["maps"].astype(np.float32)
        grid = tuple(int(v) for v in data["grid"])
        if maps.ndim != 3 or maps.shape[1:] != grid:
            raise ValueError(f"{path}: maps of shape {maps.shape} do not match its grid {grid}")
        return MapsFile(maps, grid, float(data["fps"]), int(data["snippet_frames"]))


def write_snapshot_jpeg(path: str | Path, frame: np.ndarray, cell_map: np.ndarray,
                        box: tuple[int, int, int, int] | None, *, alpha: float = DEFAULT_ALPHA,
                        quality: int = JPEG_QUALITY) -> Path:
    """uint8 ``[H, W, 3]`` frame with its ``[r, c]`` cell map and ``box`` (:func:`heatmap_overlay`) as a JPEG of
    ``quality``, written atomically. Returns ``path``."""
    from PIL import Image

    image = Image.fromarray(heatmap_overlay(frame, cell_map, alpha=alpha, box=box))
    return atomic_write(Path(path), lambda f: image.save(f, format="JPEG", quality=quality))
