"""The demo's world and its closing report (the chain itself is measured by benchmarks/demo.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.datasets import load_dataset
from pipeline.cli import demo
from pipeline.demo import world
from pipeline.api import Metrics


@pytest.mark.slow
def test_the_world_is_written_once_and_rewritten_when_it_changes(tmp_path):
    folder = tmp_path / "synthetic"
    small = dict(normal=2, anomalous=2, scenes=2)
    demo.write_world(folder, **small)
    record = json.loads((folder / world.WORLD_FILE).read_text())
    assert record["figure_height"] == demo.SYNTHETIC_FIGURE_HEIGHT and record["scenes"] == 2
    spec = load_dataset(folder)
    assert len(spec.entries) == 4 and {e.label for e in spec.entries} == {0, 1}
    stamp = {p.name: p.stat().st_mtime_ns for p in (folder / "videos").iterdir()}
    demo.write_world(folder, **small)  # the same world: nothing written
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "videos").iterdir()} == stamp
    demo.write_world(folder, **{**small, "normal": 1})  # another world: written anew, no video left behind
    assert len(list((folder / "videos").iterdir())) == 3
    assert json.loads((folder / world.WORLD_FILE).read_text())["normal"] == 1


def test_cameras_share_their_background_and_people_are_as_tall_as_asked():
    from data.synthetic import SyntheticScene, SyntheticSpec
    from data.synthetic.dataset import scene_seed

    one = SyntheticScene(SyntheticSpec(n_frames=8, seed=1, scene_seed=scene_seed(0, 0)))
    same_camera = SyntheticScene(SyntheticSpec(n_frames=8, seed=2, scene_seed=scene_seed(0, 0)))
    other_camera = SyntheticScene(SyntheticSpec(n_frames=8, seed=1, scene_seed=scene_seed(0, 1)))
    assert np.array_equal(one.background, same_camera.background)
    assert not np.array_equal(one.background, other_camera.background)
    # a lone walker's box is about figure_height of the frame high
    for height in (0.1, 0.25):
        scene = SyntheticScene(SyntheticSpec(n_frames=8, seed=3, n_walkers=1, figure_height=height))
        assert scene._fig_h == pytest.approx(height * scene.spec.height)
    with pytest.raises(ValueError, match="figure_height"):
        SyntheticSpec(figure_height=0.9)


def _metrics(stage: str, auc: float, tmp_path) -> Metrics:
    values = {"auc": auc, "ap": 0.8, "per_class_auc": {"Fall": 0.91, "Fire": None}, "n_videos": 8,
              "n_anomalous_videos": 4, "n_frames": 2560, "n_anomalous_frames": 640}
    return Metrics("f" * 64, stage, "synthetic", tmp_path / stage, values, False)


def test_the_report_says_what_the_numbers_mean_and_what_to_run_next(tmp_path):
    text = demo.report([_metrics("teacher", 0.95, tmp_path), _metrics("student", 0.93, tmp_path)],
                       tmp_path / "store", "abcdef1234567890", 300.0)
    assert "done in 5.0 min" in text and "25 % of them anomalous" in text
    assert "0.5 is chance" in text and "chance is 0.25" in text  # AUC and AP explained, AP's chance given
    table = [line for line in text.splitlines() if line.strip().startswith(("frame AUC", "AUC Fall", "AUC Fire"))]
    assert table[0].split()[2:4] == ["0.950", "0.930"]
    assert table[1].split()[2:4] == ["0.910", "0.910"] and "n/a" in table[2]
    assert f"dakd detect my_video.mp4 --store {tmp_path / 'store'} --model abcdef123456" in text
    assert "dakd watch" in text and demo.EXPECTED in text


@pytest.mark.slow
def test_the_demo_runs_its_chain_with_the_real_weights_and_ends_with_the_report(tmp_path, monkeypatch, capsys):
    """``dakd demo`` end to end on a small world (4 videos of 48 frames, 2 epochs): real I3D and EfficientNet-Lite0
    weights, the teacher, the student, the evaluation, and the closing report naming the next commands."""
    from pipeline.cli import main as cli

    monkeypatch.setattr(demo, "SYNTHETIC_NORMAL", 2)
    monkeypatch.setattr(demo, "SYNTHETIC_ANOMALOUS", 2)
    monkeypatch.setattr(demo, "SYNTHETIC_FRAMES", 48)
    monkeypatch.setattr(demo, "DEMO_OVERRIDES", {**demo.DEMO_OVERRIDES, "train.epochs": 2, "train.min_steps": 0})
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "demo extract: 4 videos, 4 extracted" in out
    assert "teacher  student" in out and "frame AUC" in out and "dakd detect my_video.mp4" in out
    assert json.loads((tmp_path / "demo" / "synthetic" / world.WORLD_FILE).read_text())["frames"] == 48
    # run again: every stage is a cache hit
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    assert "0 extracted, 4 cached" in capsys.readouterr().out
