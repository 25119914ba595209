"""The ``motion`` backbone: per-cell statistics of frame differences, through the real CLI on lossless videos made
here, against a reference computed independently (PyAV decode, numpy per cell), and exactly on hand-made tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from videos import encode

from extractors import motion
from extractors.registry import REGISTRY, build_backbone, frame_backbones
from pipeline.cli import extract
from pipeline.extract.extractor import backbone_fingerprint
from pipeline.store import FeatureStore

# The spec's numbers, restated on purpose: a change to the module's constants must fail here.
CELL = 32
D = 8
NAMES = ("mean", "std", "max", "top_mean", "frac_0.05", "frac_0.1", "frac_0.2", "peak_frame_mean")
THRESHOLDS = (0.05, 0.1, 0.2)
TOP_K = 154  # ceil(1% of 15 * 32 * 32)
BT601 = (0.299, 0.587, 0.114)
MOTION = ["--backbones", "motion", "--quiet"]

# A 337 x 224 frame is already the full view (short side 224): no resize, so a cell is exactly 32 x 32 of the
# video's own pixels (the last column 17 wide) and the reference below needs no resize.
VIEW_W, VIEW_H = 337, 224
SNIPPETS = 3
SQUARE = 24  # side of the moving square, in pixels
SQUARE_TOP = 40  # its rows [40, 64): cell rows 1 only
SPEED = 4  # pixels a frame, rightwards


def _background(h: int, w: int) -> np.ndarray:
    """A static textured RGB scene (seeded), so only the square changes between frames."""
    rng = np.random.default_rng(7)
    grey = rng.integers(40, 120, size=(h, w), dtype=np.uint8)
    rgb = np.stack([grey, (grey // 2 + 30).astype(np.uint8), grey[::-1]], axis=-1)
    return np.ascontiguousarray(rgb)


def _square_left(frame: int) -> int:
    return 10 + SPEED * frame


def _moving_square_frames() -> np.ndarray:
    frames = np.repeat(_background(VIEW_H, VIEW_W)[None], SNIPPETS * 16, axis=0)
    for t in range(len(frames)):
        left = _square_left(t)
        frames[t, SQUARE_TOP:SQUARE_TOP + SQUARE, left:left + SQUARE] = (250, 240, 230)
    return frames


@pytest.fixture(scope="module")
def square_video(tmp_path_factory) -> Path:
    return encode(tmp_path_factory.mktemp("motion") / "square.mkv", _moving_square_frames())


@pytest.fixture(scope="module")
def square_store(tmp_path_factory, square_video) -> Path:
    store = tmp_path_factory.mktemp("motion-store") / "store"
    assert extract.main([str(square_video), "--store", str(store), *MOTION, "--grid", "native"]) == 0
    return store


def _only_feature(store: Path) -> tuple[np.ndarray, object, dict]:
    """(array, record, extractor params) of the single stored motion feature."""
    s = FeatureStore(store)
    (row,) = s.features("motion")
    record = s.get_feature(row["key"])
    return np.load(store / row["file"]), record, s.extractor_params(record.fingerprint)


def _reference(path: Path) -> np.ndarray:
    """Independent of the project's code: PyAV RGB frames, BT.601 grey in [0, 1] (float64), the statistics of each
    32 x 32 cell's own pixels by numpy -> ``[T, 7 * 11, 8]``."""
    import av

    with av.open(str(path)) as container:
        rgb = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.float64)
    grey = (rgb / 255.0) @ np.array(BT601)
    t = len(grey) // 16
    out = np.zeros((t, 7 * 11, D))
    for s in range(t):
        d = np.abs(np.diff(grey[16 * s:16 * s + 16], axis=0))  # [15, H, W]
        for i in range(7):
            for j in range(11):
                cell = d[:, CELL * i:CELL * (i + 1), CELL * j:CELL * (j + 1)]
                flat = np.sort(cell.ravel())[::-1]
                out[s, 11 * i + j] = (cell.mean(), cell.std(), flat[0], flat[:TOP_K].mean(),
                                      *((flat > th).mean() for th in THRESHOLDS),
                                      cell.mean(axis=(1, 2)).max())
    return out


def _crossed_cells(snippet: int) -> set[int]:
    """Row-major indices of the cells the square touches during a snippet (its 16 positions)."""
    lefts = [_square_left(16 * snippet + f) for f in range(16)]
    cols = range(min(lefts) // CELL, (max(lefts) + SQUARE - 1) // CELL + 1)
    rows = range(SQUARE_TOP // CELL, (SQUARE_TOP + SQUARE - 1) // CELL + 1)
    return {11 * r + c for r in rows for c in cols}


def test_a_moving_square_lights_the_cells_it_crosses_and_no_others(square_store, square_video):
    array, record, params = _only_feature(square_store)
    assert array.shape == (SNIPPETS, 7 * 11, D) and record.grid == (7, 11)
    assert params["grid"] == "native" and params["weights"] == "none"
    for s in range(SNIPPETS):
        crossed = sorted(_crossed_cells(s))
        others = [c for c in range(77) if c not in crossed]
        assert (array[s, others] == 0).all(), s  # a static background is exactly still (lossless video)
        assert (array[s, crossed, NAMES.index("mean")] > 0).all(), s
        for name in ("max", "top_mean", "mean"):
            assert int(array[s, :, NAMES.index(name)].argmax()) in crossed, (s, name)
    assert _crossed_cells(0) != _crossed_cells(2)  # the lit cells move with the square
    np.testing.assert_allclose(array, _reference(square_video), atol=2e-6)


def test_a_static_video_gives_zero_motion(tmp_path):
    video = encode(tmp_path / "still.mkv", np.repeat(_background(158, 238)[None], 40, axis=0))
    store = tmp_path / "store"
    assert extract.main([str(video), "--store", str(store), *MOTION, "--grid", "native"]) == 0
    array, record, _ = _only_feature(store)
    assert array.shape == (2, 77, D) and record.grid == (7, 11)
    assert (array == 0).all()


@pytest.mark.parametrize(("view", "grid", "cells"), [("full", (7, 11), 77), ("squash", (7, 7), 49),
                                                      ("crop", (7, 7), 49)])
def test_native_grid_of_each_view_on_a_ped1_sized_video(tmp_path, view, grid, cells):
    """238 x 158 (a UCSD Ped1 frame): the full view is 337 x 224, i3d's 7 x 11 cells; squash and crop 224 x 224."""
    frames = _moving_square_frames()[:20, :158, :238]
    video = encode(tmp_path / "ped1_sized.mkv", np.ascontiguousarray(frames))
    store = tmp_path / "store"
    assert extract.main([str(video), "--store", str(store), *MOTION, "--grid", "native", "--view", view]) == 0
    array, record, params = _only_feature(store)
    assert array.shape == (1, cells, D) and array.dtype == np.float32 and record.grid == grid
    assert params["preprocessing"].get("view", "crop") == view and np.isfinite(array).all()
    assert array.max() > 0


def test_the_global_feature_is_the_cells_mean(tmp_path, square_video, square_store):
    store = tmp_path / "global"
    assert extract.main([str(square_video), "--store", str(store), *MOTION]) == 0
    glob, record, params = _only_feature(store)
    cells, _, _ = _only_feature(square_store)
    assert glob.shape == (SNIPPETS, 1, D) and record.grid is None and "grid" not in params
    np.testing.assert_allclose(glob[:, 0], cells.mean(axis=1), rtol=1e-5, atol=1e-7)

    b = motion.build()
    x = torch.rand(2, 3, 16, 70, 100)
    torch.testing.assert_close(b.embed(x), b.embed_map(x).mean(dim=(-2, -1)))
    assert b.embed_map(x).shape == (2, D, 3, 4)


def test_statistics_of_a_hand_made_snippet_are_exact():
    """One moving cell with known |d|, and an edge cell of 8 columns whose padding must not count."""
    grey = torch.zeros(1, 16, 32, 40)  # cells: 1 row, 2 columns (32 and 8 pixels wide)
    grey[0, 1::2, :, 32:] = 0.3  # the edge cell flickers: |d| = 0.3 everywhere, in all 15 differences
    grey[0, 5, :16, :32] = 0.15  # the full cell: one frame lights its top half -> two differences of 0.15
    stats = motion.cell_statistics(grey)  # [1, 8, 1, 2]
    assert stats.shape == (1, D, 1, 2)
    edge = dict(zip(NAMES, stats[0, :, 0, 1].tolist()))
    assert edge == pytest.approx({"mean": 0.3, "std": 0.0, "max": 0.3, "top_mean": 0.3, "frac_0.05": 1.0,
                                  "frac_0.1": 1.0, "frac_0.2": 1.0, "peak_frame_mean": 0.3}, abs=1e-6)
    lit = 2 * 16 * 32  # values at 0.15 out of 15 * 32 * 32
    p = lit / (15 * 32 * 32)
    full = dict(zip(NAMES, stats[0, :, 0, 0].tolist()))
    assert full == pytest.approx({"mean": 0.15 * p, "std": 0.15 * np.sqrt(p * (1 - p)), "max": 0.15,
                                  "top_mean": 0.15, "frac_0.05": p, "frac_0.1": p, "frac_0.2": 0.0,
                                  "peak_frame_mean": 0.075}, abs=1e-6)
    # Fewer values than k (a 2 x 2 edge cell: 60): top_mean is the mean of all of them, not diluted by padding.
    small = torch.zeros(1, 16, 34, 34)
    small[0, 1::2, 32:, 32:] = 0.5
    assert motion.cell_statistics(small)[0, NAMES.index("top_mean"), 1, 1].item() == pytest.approx(0.5)


def test_constants_registry_and_mistakes(tmp_path, square_video, capsys):
    assert motion.STATISTIC_NAMES == NAMES and motion.FEATURE_DIM == D and motion.CELL_PIXELS == CELL
    assert motion.FRACTION_THRESHOLDS == THRESHOLDS and motion.TOP_K == TOP_K and motion.GREY_WEIGHTS == BT601
    assert all(meaning for _, meaning in motion.STATISTICS)
    spec = REGISTRY["motion"]
    assert (spec.kind, spec.dim, spec.default_view, spec.fetch) == ("video", D, "full", None)
    assert spec.fetcher() is None and "motion" not in frame_backbones()  # dakd fetch skips it: nothing to fetch
    b = build_backbone("motion", grid="native")
    assert (b.weights_id, b.preprocessing.view, b.grid, b.grids, b.amp) == ("none", "full", "native", True, False)
    assert not list(b.model.parameters())
    with pytest.raises(ValueError, match="motion has no weights"):
        build_backbone("motion", weights="random")
    with pytest.raises(ValueError, match="motion has no weights"):
        motion.build(str(tmp_path / "weights.pt"))
    code = extract.main([str(square_video), "--store", str(tmp_path / "s"), *MOTION, "--weights", "motion=x.pt"])
    err = capsys.readouterr().err
    assert code == 2 and "motion has no weights" in err and "Traceback" not in err


def test_fingerprint_is_stable_and_names_every_constant(square_store, square_video, monkeypatch, capsys):
    _, record, params = _only_feature(square_store)
    fresh = build_backbone("motion", grid="native")
    assert backbone_fingerprint(fresh)[0] == backbone_fingerprint(build_backbone("motion", grid="native"))[0]
    assert backbone_fingerprint(fresh)[0] == record.fingerprint  # a new build hits the stored extraction
    assert extract.main([str(square_video), "--store", str(square_store), *MOTION, "--grid", "native"]) == 0
    assert "0 extracted, 1 cached, 0 failed" in capsys.readouterr().out
    assert (params["cell_pixels"], params["statistics"], params["fraction_thresholds"], params["top_k"],
            params["grey_weights"], params["version"]) == (CELL, list(NAMES), list(THRESHOLDS), TOP_K,
                                                           list(BT601), motion.VERSION)
    others = {backbone_fingerprint(build_backbone("motion"))[0]}  # global, not a grid
    for owner, constant, value in ((motion.MotionBackbone, "cell_pixels", 16),
                                   (motion, "FRACTION_THRESHOLDS", (0.05, 0.1, 0.3)), (motion, "TOP_FRACTION", 0.02)):
        with monkeypatch.context() as m:
            m.setattr(owner, constant, value)
            others.add(backbone_fingerprint(build_backbone("motion", grid="native"))[0])
    others.add(backbone_fingerprint(build_backbone("motion_fine", grid="native"))[0])
    assert len(others) == 5 and record.fingerprint not in others


def test_motion_fine_is_the_same_statistics_on_16_pixel_cells():
    """motion_fine's cells are the 16 x 16 squares of the view (14 x 22 on Ped1's 224 x 337, i3d_mixed4f's grid):
    each cell's statistics are those motion computes for that square alone, with "top_mean" over 1 % of its own
    15 x 16 x 16 values (39)."""
    from extractors import motion_fine

    fine = build_backbone("motion_fine", grid="native")
    assert (fine.cell_pixels, fine.weights_id, fine.preprocessing.view) == (16, "none", "full")
    assert fine.fingerprint_params()["top_k"] == 39 == motion.top_k(16)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 224, 337)
    fmap = fine.embed_map(x)
    assert fmap.shape == (1, D, 14, 22)
    grey = torch.einsum("mcfhw,c->mfhw", x, torch.tensor(BT601))
    for i, j in ((0, 0), (5, 9), (13, 21)):  # the last cell holds the 1 column left (336)
        square = grey[:, :, 16 * i:16 * i + 16, 16 * j:16 * j + 16]
        alone = motion.cell_statistics(square, cell_pixels=16)[0, :, 0, 0]
        torch.testing.assert_close(fmap[0, :, i, j], alone)
    with pytest.raises(ValueError, match="motion_fine has no weights"):
        motion_fine.build("weights.pt")
