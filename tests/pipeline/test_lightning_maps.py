"""The lightning student distilled from spatial teachers' anomaly maps (method.md §9), on real videos: the spatial
teacher and student of ``tests/spatial_runs.py`` (synthetic surveillance videos, EfficientNet-Lite0 cells on its
native 7 x 10 grid), the videos' low-resolution frames extracted into a copy of that store, then a map student
trained from the two spatial teachers and evaluated (maps on the teachers' grid, the localisation report),
detected (``<name>.maps.npz``) and scored live (``LiveModel.score_maps``); and the score-sequence student of the
same teachers (``spatial.cells=off``) keeps no maps and no spatial section in its key.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from data.pixel_masks import MASK_KEY
from models.lightning_student import LightningStudent
from pipeline import api
from pipeline.cli import extract, train
from pipeline.detect import maps as map_files
from pipeline.evaluate.maps import read_maps
from pipeline.runs import load_run
from pipeline.store import FeatureStore
from pipeline.watch.model import from_run

pytestmark = pytest.mark.slow  # the shared fixture extracts 12 videos' grids and trains two spatial runs

LIGHTNING = ["--epochs", "2", "--quiet", "--set", "lightning.channels=4,8", "--set", "adversarial.window=4",
             "--set", "train.val_fraction=0"]


@pytest.fixture(scope="module")
def lightning_runs(spatial_runs, tmp_path_factory):
    """A copy of the spatial runs' store with the videos' low-resolution frames, a map student of the spatial
    teacher and student, and the score-sequence student of the same teachers (``spatial.cells=off``)."""
    root = tmp_path_factory.mktemp("lightning_maps")
    store = root / "store"
    shutil.copytree(spatial_runs.store, store)
    dataset = spatial_runs.dataset
    assert extract.main([str(dataset.root / "videos"), "--store", str(store), "--backbones", "lowres",
                         "--quiet"]) == 0
    teachers = ",".join(spatial_runs.keys[s][:12] for s in ("teacher", "student"))
    common = ["lightning", "--store", str(store), "--dataset", str(dataset.root), "--teachers", teachers]
    assert train.main([*common, *LIGHTNING]) == 0
    assert train.main([*common, *LIGHTNING, "--set", "spatial.cells=off"]) == 0
    fs = FeatureStore(store)
    try:
        keys = [r["key"] for r in fs.runs("lightning")]
        runs = {key: load_run(fs, key) for key in keys}
    finally:
        fs.close()
    maps = next(k for k, r in runs.items() if r.map_student)
    scores = next(k for k, r in runs.items() if not r.map_student)
    return store, dataset, {"maps": maps, "scores": scores}, spatial_runs.grids["teacher"], runs


def _test_entries(dataset):
    from data.datasets import load_dataset

    return load_dataset(str(dataset.root)).split("test")


def _masks(dataset, folder):
    """Pixel masks of the anomalous test videos (320 x 240, 160 frames): their anomalous frames' left half."""
    folder.mkdir()
    for e in _test_entries(dataset):
        if e.label != 1:
            continue
        mask = np.zeros((160, 240, 320), dtype=bool)
        for start, end in e.intervals:
            mask[start:end, :, :160] = True
        np.savez(folder / f"{e.name}.npz", **{MASK_KEY: mask})
    return folder


def test_the_map_student_learns_on_its_teachers_grid_and_keys_it(lightning_runs):
    store, _, keys, grid, runs = lightning_runs
    run = runs[keys["maps"]]
    assert isinstance(run.model, LightningStudent) and run.model.grid == grid == (7, 10)
    assert run.map_student and run.has_maps and not run.spatial and run.grid == grid
    assert run.backbones == ("lowres",)
    saved = json.loads((run.folder / "config.json").read_text())
    assert saved["grid"] == list(grid) and saved["spatial"]["cells"] == "auto"
    assert len(run.model.heads) == 2  # one map head per teacher


def test_the_score_sequence_student_of_the_same_teachers_has_no_maps_and_no_spatial_key(lightning_runs):
    _, _, keys, _, runs = lightning_runs
    run = runs[keys["scores"]]
    assert run.model.grid is None and not run.map_student and not run.has_maps and run.grid == (1, 1)
    saved = json.loads((run.folder / "config.json").read_text())
    assert "grid" not in saved and "spatial" not in saved  # keyed as before maps
    assert keys["scores"] != keys["maps"]


def test_evaluate_writes_the_map_students_maps_and_its_localisation_report(lightning_runs, tmp_path):
    store, dataset, keys, grid, _ = lightning_runs
    masks = _masks(dataset, tmp_path / "pixel_masks")
    result = api.evaluate(keys["maps"], store=store, out=tmp_path / "eval", pixel_masks=masks, video_plots=False)
    metrics = result[0].values
    assert metrics["grid"] == list(grid) and metrics["maps"] == "maps"
    assert {"pointing_game", "pixel_auc", "rbdc", "tbdc"} <= set(metrics["localization"])
    entries = _test_entries(dataset)
    video = next(e for e in entries if e.label == 1)
    maps = read_maps(tmp_path / "eval", video.name, [e.name for e in entries])
    assert maps.shape[1:] == grid and ((maps > 0) & (maps < 1)).all()
    # the score-sequence student's evaluation keeps no maps and no report
    plain = api.evaluate(keys["scores"], store=store, out=tmp_path / "plain", pixel_masks=masks, video_plots=False)
    plain_metrics = plain[0].values
    assert "grid" not in plain_metrics and "localization" not in plain_metrics
    assert not (tmp_path / "plain" / "maps").exists()


def test_detect_and_live_scoring_give_the_map_students_maps(lightning_runs, tmp_path):
    store, dataset, keys, grid, runs = lightning_runs
    path = next(e for e in dataset.by_split("test") if e.label == 1).path
    result = api.detect(path, store=store, run=keys["maps"], out=tmp_path / "d", smoothing=1)  # the model's own
    assert not result.failures
    d = result.detections[0]
    assert d.maps.shape == (len(d.snippet_scores), *grid)
    # each head's score is the mean of its top-3 cells, never below its map's mean, and the run's score and map are
    # the heads' means: the score is at least the map's mean
    assert (d.snippet_scores >= d.maps.reshape(len(d.maps), -1).mean(axis=1) - 1e-6).all()
    written = map_files.read_maps_npz(tmp_path / "d" / f"{path.stem}{map_files.MAPS_SUFFIX}")
    assert written.grid == grid
    np.testing.assert_allclose(written.maps, d.maps, atol=1e-3)  # float16 on disk

    model = from_run(store, keys["maps"][:12])
    assert model.map_scorer is not None and model.window == 1
    plan = model.plans[0]
    from data.decode import open_video

    with open_video(path, short_side=plan.short_side, square=plan.square) as video:
        snippets = np.stack(list(video.snippets()))
    [frames] = model.embed([snippets])  # [T, 1, F*S*S], the live low-resolution frames
    last = len(frames) - 1
    scores, maps = model.score_maps([[frames[t:t + 1]] for t in (0, last)])
    assert maps.shape == (2, *grid)
    np.testing.assert_allclose(scores, d.snippet_scores[[0, last]], atol=1e-5)
    np.testing.assert_allclose(maps, d.maps[[0, last]], atol=1e-5)
