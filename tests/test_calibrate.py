"""Calibration (``pipeline.calibrate``): the threshold of a target false-alarm rate on normal footage. The
threshold rule on hand-made score arrays (the envelope over a non-monotone event count, the zero-events-only case,
the numpy event count against the hysteresis rule itself), then the command end to end on a small store with a
teacher trained on real EfficientNet-Lite0 features of real video files (tests/store_stages.py), and detect and
export using what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from store_stages import BACKBONE, TRAIN_FAST, small_store, write_videos

from pipeline import calibrate, calibration, detect, export, train
from pipeline.errors import UserError
from pipeline.live.hysteresis import HysteresisConfig, hysteresis_events
from pipeline.store import FeatureStore


# -- the threshold rule ----------------------------------------------------------------------------------------
def _bursts(heights, width=2, gap=5, low=0.1) -> np.ndarray:
    """Low scores with one burst of ``width`` snippets per height, ``gap`` low snippets apart."""
    out = [low] * gap
    for h in heights:
        out += [h] * width + [low] * gap
    return np.array(out, dtype=np.float32)


def test_the_threshold_meets_the_target_and_the_next_candidate_down_does_not():
    videos = [_bursts([0.9, 0.8]), _bursts([0.7, 0.85])]
    hours = 2.0  # target 1/h: at most 2 events
    choice = calibration.choose_threshold(videos, hours, 1.0, open_after=2, close_after=3)
    # 0.85: the 0.9 and 0.85 bursts; one candidate lower (0.8) adds a third
    assert choice.threshold == pytest.approx(0.85) and choice.events == 2 and choice.rate <= 1.0
    lower = calibration.candidates(videos)
    lower = lower[lower < choice.threshold].max()
    assert lower == pytest.approx(0.8)
    assert calibration.total_events(videos, lower, 2, 3) / hours > 1.0
    # 1.5/h on the same footage allows three bursts, 0.1/h none
    assert calibration.choose_threshold(videos, hours, 1.5, open_after=2, close_after=3).threshold == \
        pytest.approx(0.8)
    none = calibration.choose_threshold(videos, hours, 0.1, open_after=2, close_after=3)
    assert none.events == 0 and none.threshold > float(np.float32(0.9))


def test_the_envelope_keeps_every_higher_threshold_within_the_target():
    # one event at 0.5 (the dip is above) but two at 0.9 (the dip splits it): the count is not monotone
    scores = np.array([0.1, 0.9, 0.9, 0.5, 0.9, 0.9, 0.1])
    rule = dict(open_after=2, close_after=1)
    assert calibration.count_events(scores, 0.5, **rule) == 1
    assert calibration.count_events(scores, 0.9, **rule) == 2
    choice = calibration.choose_threshold([scores], 1.0, 1.0, **rule)
    # 0.5 (and 0.1) give one event per hour, but raising the threshold to 0.9 would give two: only above the max
    assert choice.threshold == np.nextafter(0.9, np.inf) and choice.events == 0


def test_short_footage_is_flagged_zero_events_only():
    assert calibration.zero_events_only(0.3, 1.0) and not calibration.zero_events_only(1.0, 1.0)
    assert calibration.zero_events_only(0.5, 3.0) is False
    choice = calibration.choose_threshold([_bursts([0.9, 0.6])], 0.3, 1.0)
    assert choice.events == 0 and choice.threshold > float(np.float32(0.9))


def test_the_numpy_event_count_is_the_hysteresis_rule():
    rng = np.random.default_rng(0)
    for trial in range(200):
        scores = rng.random(int(rng.integers(1, 60))).astype(np.float32)
        config = HysteresisConfig(float(rng.random()), int(rng.integers(1, 4)), int(rng.integers(1, 5)))
        assert calibration.count_events(scores, config.threshold, config.open_after, config.close_after) == \
            len(hysteresis_events(scores, config)), (trial, scores.tolist(), config)


def test_threshold_for_says_where_the_value_came_from():
    cal = {"thresholds": {"live": 0.61, "offline": 0.42}, "target_false_alarms_per_hour": 1.0, "hours": 0.31}
    assert calibration.threshold_for(cal, "live", None) == (0.61, "calibration (1 false alarm/h on 0.31 h)")
    assert calibration.threshold_for(cal, "offline", 0.7) == (0.7, "--threshold")
    assert calibration.threshold_for(None, "offline", None) == (0.5, "uncalibrated default 0.5")


def test_a_damaged_calibration_is_named_with_the_fix(tmp_path):
    assert calibration.load_calibration(tmp_path) is None
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(UserError, match=r"calibration\.json.*dakd calibrate"):
        calibration.load_calibration(tmp_path)
    (tmp_path / "calibration.json").write_text(json.dumps({"thresholds": {"live": "x"}, "hours": 1,
                                                           "target_false_alarms_per_hour": 1}))
    with pytest.raises(UserError, match="live threshold"):
        calibration.load_calibration(tmp_path)
    export_folder = tmp_path / "export"
    export_folder.mkdir()
    (export_folder / "export.json").write_text(json.dumps({"run": "abc"}))
    assert calibration.load_calibration(export_folder) is None


# -- the command on a real small store -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small store (a teacher trained without a validation split) plus a second teacher with one (one normal
    and one anomalous validation video), and a folder of normal footage with a broken file in it."""
    s = small_store(tmp_path_factory.mktemp("calibrate"))
    assert train.main(["teacher", "--store", str(s.store), "--dataset", str(s.labels), "--backbones", BACKBONE,
                       *TRAIN_FAST, "--set", "train.val_fraction=0.5", "--set", "train.min_val_videos=1",
                       "--seed", "1"]) == 0
    fs = FeatureStore(s.store, create=False)
    with_val = next(r["key"] for r in fs.runs("teacher") if r["key"] != s.teacher)
    teacher_folder = next((s.store / "runs" / "teacher").glob(f"{s.teacher}*"))
    fs.close()
    normal = s.root / "normal"
    write_videos(normal, ["cam_a", "cam_b"], frames=96, seed=40)
    (normal / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(4000))
    return s, with_val, teacher_folder, normal


def test_calibrate_on_normal_videos_writes_both_thresholds_and_names_a_bad_file(small, capsys):
    s, _, folder, normal = small
    code = calibrate.main([s.teacher[:12], "--store", str(s.store), "--normal", str(normal), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "FAILED" in err and "broken.mp4" in err
    c = json.loads((folder / "calibration.json").read_text())
    assert c["run"] == s.teacher and c["stage"] == "teacher" and c["source"] == "normal"
    assert sorted(Path(v).name for v in c["videos"]) == ["cam_a.mkv", "cam_b.mkv"]
    assert c["n_snippets"] == 12 and c["window"] == 32 and (c["open_after"], c["close_after"]) == (2, 3)
    assert set(c["thresholds"]) == {"live", "offline"} and all(isinstance(v, float) for v in c["thresholds"].values())
    # 12 snippets at 25 fps are far below 1 h: only zero events can meet 1 false alarm/h, and the output says so
    assert c["hours"] == pytest.approx(12 * 16 / 25 / 3600)
    assert c["zero_events_only"] is True and c["false_alarms"] == {"live": 0, "offline": 0}
    assert "zero events" in err and "live threshold" in out and "offline threshold" in out
    assert calibration.load_calibration(folder)["thresholds"] == c["thresholds"]


def test_detect_uses_the_calibrated_threshold_unless_one_is_given(small, tmp_path, capsys):
    s, _, folder, normal = small
    if not (folder / "calibration.json").is_file():
        assert calibrate.main([s.teacher[:12], "--store", str(s.store), "--normal", str(normal / "cam_a.mkv"),
                               "--quiet"]) == 0
    offline = json.loads((folder / "calibration.json").read_text())["thresholds"]["offline"]
    video = normal / "cam_a.mkv"
    assert detect.main([str(video), "--store", str(s.store), "--model", s.teacher[:12], "--quiet",
                        "--out", str(tmp_path / "cal")]) == 0
    assert json.loads((tmp_path / "cal" / "cam_a.json").read_text())["threshold"] == offline
    assert "(calibration (1 false alarm/h on" in capsys.readouterr().out
    assert detect.main([str(video), "--store", str(s.store), "--model", s.teacher[:12], "--quiet",
                        "--out", str(tmp_path / "given"), "--threshold", "0.7"]) == 0
    assert json.loads((tmp_path / "given" / "cam_a.json").read_text())["threshold"] == 0.7
    assert "threshold 0.7 (--threshold)" in capsys.readouterr().out


def test_split_val_uses_the_runs_validation_normals_and_an_empty_split_names_normal(small, tmp_path, capsys):
    s, with_val, _, _ = small
    out_file = tmp_path / "val.json"
    assert calibrate.main([with_val[:12], "--store", str(s.store), "--split", "val", "--quiet",
                           "--out", str(out_file)]) == 0
    c = json.loads(out_file.read_text())
    assert c["source"] == "split:val" and len(c["videos"]) == 1 and c["videos"][0] in ("v2", "v3")
    assert c["n_snippets"] == 2 and c["run"] == with_val
    capsys.readouterr()
    code = calibrate.main([s.teacher[:12], "--store", str(s.store), "--split", "val", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "validation split holds no normal videos" in err and "--normal" in err


@pytest.mark.slow
def test_export_carries_the_calibration_and_detect_onnx_uses_it(small, tmp_path, capsys):
    s, _, folder, normal = small
    assert calibrate.main([s.teacher[:12], "--store", str(s.store), "--normal", str(normal / "cam_b.mkv"),
                           "--quiet"]) == 0
    c = json.loads((folder / "calibration.json").read_text())
    out = tmp_path / "export"
    assert export.main([s.teacher[:12], "--store", str(s.store), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "export.json").read_text())["calibration"] == c
    assert detect.main([str(normal / "cam_b.mkv"), "--onnx", str(out), "--quiet", "--device", "cpu",
                        "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "cam_b.json").read_text())["threshold"] == c["thresholds"]["offline"]
