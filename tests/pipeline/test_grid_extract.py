"""Feature grids through ``dakd extract --grid`` on real videos: what the store holds (``[T, rows * cols, D]``, the
grid in the row and the sidecar), the global feature as the cells' mean, fingerprints, pooled grids, float16, repair,
the schema 2 -> 3 migration, ``VideoFeatures``' three readers, and the refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from videos import encode, pattern_frames

from data.datasets.base import VideoEntry
from pipeline.cli import extract
from pipeline.cli.main import main as dakd
from pipeline.cli import store as store_command
from pipeline.features import VideoFeatures, extraction_candidates
from pipeline.store import SCHEMA_VERSION, FeatureStore

# 48 x 64 frames (3:4, UCF-Crime's 320 x 240 shape): the full view is 224 x 299, a 7 x 10 map at stride 32.
FRAME = (48, 64)
NATIVE = (7, 10)
# The fingerprints of global extractions before grids existed (commit cc9ac49, random weights, float32, the
# default decode): a grid must leave them as they were, or every store made before would be recomputed.
GLOBAL_FINGERPRINTS_BEFORE_GRIDS = {
    "i3d": "845de0a0218ce9f352943fc2f896734384a4d386e59f4e89313f00e3c653d893",
    "effnet_lite0": "db3301d809f19a43e74112ce91a9fe16066199590af6292733e06c49c0bce7b5",
}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A real lossless H.264 video of 2 snippets."""
    return encode(tmp_path_factory.mktemp("grid_in") / "cam.mkv", pattern_frames(32, *FRAME, seed=5))


def _extract(video: Path, store: Path, *flags: str) -> None:
    assert extract.main([str(video), "--store", str(store), "--quiet", *flags]) == 0


def _records(store: Path, backbone: str) -> dict[str, object]:
    """fingerprint -> record of the one video in ``store``."""
    return extraction_candidates(FeatureStore(store), "cam", backbone)


def _features(record) -> VideoFeatures:
    entry = VideoEntry("cam", 0, "Normal", "test")
    return VideoFeatures(entry, {record.backbone: record})


def _grid_and_global(store: Path, backbone: str):
    """(grid record, global record) of ``backbone``, told apart by their grid."""
    records = list(_records(store, backbone).values())
    assert len(records) == 2
    grid = next(r for r in records if r.grid is not None)
    return grid, next(r for r in records if r.grid is None)


def _check_grid_store(store: Path, backbone: str, dim: int) -> None:
    """The grid and global extractions of one video in ``store``: shapes, grid recorded, the cells' mean is the
    global feature, fingerprints differ and the global one is that of before grids."""
    grid, whole = _grid_and_global(store, backbone)
    cells = grid.read()
    assert cells.shape == (2, NATIVE[0] * NATIVE[1], dim) and grid.grid == NATIVE and grid.crops == 70
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        assert conn.execute("SELECT grid FROM features WHERE key = ?", (grid.key,)).fetchone() == ("7x10",)
        assert conn.execute("SELECT grid FROM features WHERE key = ?", (whole.key,)).fetchone() == (None,)
    np.testing.assert_allclose(cells.mean(axis=1, keepdims=True), whole.read(), atol=1e-5)
    assert cells.std(axis=1).mean() > 1e-3  # the cells differ: a real map, not one vector repeated
    assert grid.fingerprint != whole.fingerprint
    params = FeatureStore(store).extractor_params(grid.fingerprint)
    assert params["grid"] == "native" and "grid" not in FeatureStore(store).extractor_params(whole.fingerprint)


def test_effnet_grid_holds_the_cells_whose_mean_is_the_global_feature(video, tmp_path):
    store = tmp_path / "s"
    _extract(video, store, "--backbones", "effnet_lite0")
    _extract(video, store, "--backbones", "effnet_lite0", "--grid", "native")
    _check_grid_store(store, "effnet_lite0", 1280)


@pytest.mark.slow
def test_i3d_grid_holds_the_cells_whose_mean_is_the_global_feature(video, tmp_path, i3d_weights):
    store = tmp_path / "s"
    _extract(video, store, "--backbones", "i3d", "--weights", f"i3d={i3d_weights}")
    _extract(video, store, "--backbones", "i3d", "--weights", f"i3d={i3d_weights}", "--grid", "i3d=native")
    _check_grid_store(store, "i3d", 1024)


@pytest.mark.parametrize("backbone", sorted(GLOBAL_FINGERPRINTS_BEFORE_GRIDS))
def test_global_fingerprints_are_those_of_before_grids(backbone):
    from extractors.registry import build_backbone
    from pipeline.extract.extractor import backbone_fingerprint

    fingerprint, params = backbone_fingerprint(build_backbone(backbone, weights="random"))
    assert fingerprint == GLOBAL_FINGERPRINTS_BEFORE_GRIDS[backbone] and "grid" not in params
    gridded, params = backbone_fingerprint(build_backbone(backbone, weights="random", grid="native"))
    assert gridded != fingerprint and params["grid"] == "native"
    assert backbone_fingerprint(build_backbone(backbone, weights="random", grid="3x4"))[0] not in (gridded,
                                                                                                   fingerprint)


def test_a_pooled_grid_averages_the_native_cells_and_other_backbones_stay_global(video, tmp_path):
    store = tmp_path / "s"
    _extract(video, store, "--backbones", "effnet_lite0", "--grid", "native")
    _extract(video, store, "--backbones", "effnet_lite0,lowres", "--grid", "effnet_lite0=3x4")
    native, pooled = sorted(_records(store, "effnet_lite0").values(), key=lambda r: r.crops, reverse=True)
    assert (native.grid, pooled.grid) == (NATIVE, (3, 4)) and pooled.read().shape == (2, 12, 1280)
    # 3 x 4 adaptive bins over the 7 x 10 map, computed here from the stored native cells.
    fmap = torch.from_numpy(native.read()).reshape(2, *NATIVE, 1280).permute(0, 3, 1, 2)
    expected = F.adaptive_avg_pool2d(fmap, (3, 4)).flatten(2).transpose(1, 2).numpy()
    np.testing.assert_allclose(pooled.read(), expected, atol=1e-5)
    (lowres,) = _records(store, "lowres").values()
    assert lowres.grid is None and lowres.crops == 1


def test_float16_grid_features(video, tmp_path):
    store = tmp_path / "s"
    _extract(video, store, "--backbones", "effnet_lite0", "--grid", "2x2")
    _extract(video, store, "--backbones", "effnet_lite0", "--grid", "2x2", "--dtype", "float16")
    wide, half = sorted(_records(store, "effnet_lite0").values(), key=lambda r: r.dtype, reverse=True)
    assert (wide.dtype, half.dtype) == ("float32", "float16") and wide.fingerprint != half.fingerprint
    assert half.grid == (2, 2) and half.read().dtype == np.float16 and half.read().shape == (2, 4, 1280)
    np.testing.assert_allclose(half.read().astype(np.float32), wide.read(), rtol=2e-3, atol=2e-3)
    loaded = _features(half)
    assert loaded.load_cells("effnet_lite0").dtype == np.float32
    assert loaded.load("effnet_lite0").dtype == np.float32 and loaded.load("effnet_lite0").shape == (2, 1, 1280)


def test_video_features_readers_of_grid_and_global_features(video, tmp_path):
    store = tmp_path / "s"
    _extract(video, store, "--backbones", "effnet_lite0")
    _extract(video, store, "--backbones", "effnet_lite0", "--grid", "native")
    grid, whole = _grid_and_global(store, "effnet_lite0")
    cells = grid.read()
    on_grid, on_global = _features(grid), _features(whole)
    assert on_grid.grid("effnet_lite0") == NATIVE and on_global.grid("effnet_lite0") == (1, 1)
    np.testing.assert_array_equal(on_grid.load_cells("effnet_lite0"), cells)
    np.testing.assert_allclose(on_grid.load("effnet_lite0"), cells.mean(axis=1, keepdims=True), rtol=1e-6)
    assert on_global.load_cells("effnet_lite0").shape == (2, 1, 1280)
    np.testing.assert_array_equal(on_global.load_cells("effnet_lite0"), on_global.load("effnet_lite0"))


def test_repair_keeps_a_features_grid(video, tmp_path, capsys):
    store = tmp_path / "s"
    _extract(video, store, "--backbones", "effnet_lite0,lowres", "--grid", "effnet_lite0=3x4")
    before = {r["key"]: r for r in FeatureStore(store).features()}
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store / 'manifest.sqlite'}{suffix}").unlink(missing_ok=True)
    assert store_command.main([str(store), "--repair"]) == 0
    assert "2 features" in capsys.readouterr().out
    rebuilt = FeatureStore(store)
    assert {r["key"] for r in rebuilt.features()} == set(before)
    (grid,) = _records(store, "effnet_lite0").values()
    (lowres,) = _records(store, "lowres").values()
    assert grid.grid == (3, 4) and lowres.grid is None
    assert _features(grid).load_cells("effnet_lite0").shape == (2, 12, 1280)


SCHEMA_2_FEATURES = """CREATE TABLE features (
    key TEXT PRIMARY KEY, video_key TEXT NOT NULL, backbone TEXT NOT NULL, fingerprint TEXT NOT NULL,
    file TEXT NOT NULL, n_snippets INTEGER NOT NULL, crops INTEGER NOT NULL, dim INTEGER NOT NULL,
    dtype TEXT NOT NULL, created_at REAL NOT NULL, nbytes INTEGER, hash TEXT, damage TEXT)"""


def test_a_schema_2_store_is_migrated_to_3_its_features_global(tmp_path):
    root = tmp_path / "old"
    key = "cd" * 32
    folder = root / "features" / "i3d" / "cd"
    folder.mkdir(parents=True)
    array = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)  # two crops
    np.save(folder / f"{key}.npy", array)
    with sqlite3.connect(root / "manifest.sqlite") as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        conn.execute(SCHEMA_2_FEATURES)
        conn.execute("INSERT INTO features VALUES (?, 'vid', 'i3d', 'fp', ?, 3, 2, 4, 'float32', 0, ?, NULL, NULL)",
                     (key, f"features/i3d/cd/{key}.npy", (folder / f"{key}.npy").stat().st_size))
    conn.close()
    store = FeatureStore(root)
    conn = store._conn()
    assert conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0] == "3" == \
        str(SCHEMA_VERSION)
    assert "grid" in {row[1] for row in conn.execute("PRAGMA table_info(features)")}
    record = store.get_feature(key)
    assert record.grid is None and record.crops == 2
    features = VideoFeatures(VideoEntry("old", 0, "Normal", "test"), {"i3d": record})
    assert features.grid("i3d") == (1, 1)
    np.testing.assert_array_equal(features.load("i3d"), array)  # crops kept for the global models
    np.testing.assert_array_equal(features.load_cells("i3d"), array.mean(axis=1, keepdims=True))


# -- refusals: before any video is read, exit 2, the backbone and the fix named ------------------------------------
@pytest.mark.parametrize("flags, says", [
    (["--backbones", "lowres", "--grid", "native"],
     ["lowres has no feature map to keep as a grid", "extract lowres without --grid", "NAME=GRID"]),
    (["--backbones", "i3d,lowres", "--weights", "i3d=random", "--grid", "native"],
     ["lowres has no feature map", "e.g. i3d=native"]),
    (["--backbones", "i3d", "--weights", "i3d=random", "--grid", "native", "--crops", "5"],
     ["--grid (asked for i3d) needs --crops 1", "drop --crops or --grid"]),
])
def test_a_grid_the_backbones_cannot_give_is_refused_before_any_video_is_read(video, tmp_path, capsys, flags,
                                                                              says):
    store = tmp_path / "s"
    assert dakd(["extract", str(video), "--store", str(store), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert all(s in err for s in says), err
    assert not store.exists()  # no video hashed, decoded or recorded


@pytest.mark.parametrize("grid", ["0x3", "big", "3x", "i3d=-1x2"])
def test_a_malformed_grid_is_refused_with_the_accepted_forms(video, tmp_path, capsys, grid):
    store = tmp_path / "s"
    assert dakd(["extract", str(video), "--store", str(store), "--backbones", "i3d", "--grid", grid]) == 2
    err = capsys.readouterr().err
    assert "--grid for i3d: a grid is 'native'" in err and "ROWSxCOLS" in err and "'4x6'" in err, err
    assert repr(grid.split("=")[-1]) in err and not store.exists()
