"""Calibration (``pipeline.calibrate``): the threshold of a target false-alarm rate on normal footage. The
threshold rule on hand-made score arrays (the envelope over a non-monotone event count, the zero-events-only case,
thresholds never on a score), then the command end to end on a small store with a
teacher trained on real EfficientNet-Lite0 features of real video files (tests/store_stages.py), and detect and
export using what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from store_stages import BACKBONE, TRAIN_FAST, small_store, write_videos

from pipeline.cli import calibrate, detect, export, train
from pipeline.detect import onnx_scorer
from pipeline.calibrate import calibrator as calibration
from pipeline.errors import UserError
from pipeline.runs import calibrated_smoothing, load_calibration, threshold_for
from pipeline.store import FeatureStore
from pipeline.alert_rule import AlertRule

RULE = AlertRule(open_after=2, close_after=3)  # the rule the threshold is chosen for (its threshold: the candidate)


# -- the threshold rule ----------------------------------------------------------------------------------------
def _bursts(heights, width=2, gap=5, low=0.1) -> np.ndarray:
    """Low scores with one burst of ``width`` snippets per height, ``gap`` low snippets apart."""
    out = [low] * gap
    for h in heights:
        out += [h] * width + [low] * gap
    return np.array(out, dtype=np.float32)


def _between(t: float, low: float, high: float) -> bool:
    """``t`` lies midway between the float32 scores ``low`` and ``high`` (never on either)."""
    low, high = float(np.float32(low)), float(np.float32(high))
    return low < t < high and t == pytest.approx((low + high) / 2, abs=1e-12)


def test_the_threshold_meets_the_target_and_the_next_candidate_down_does_not():
    videos = [_bursts([0.9, 0.8]), _bursts([0.7, 0.85])]
    hours = 2.0  # target 1/h: at most 2 events
    choice = calibration.choose_threshold(videos, hours, 1.0, RULE)
    # between 0.8 and 0.85: the 0.9 and 0.85 bursts; one candidate lower (between 0.7 and 0.8) adds the 0.8 one
    assert _between(choice.threshold, 0.8, 0.85) and choice.events == 2 and choice.rate <= 1.0
    assert choice.margin == pytest.approx((float(np.float32(0.85)) - float(np.float32(0.8))) / 2)
    lower = calibration.candidates(videos)
    lower = lower[lower < choice.threshold].max()
    assert _between(lower, 0.7, 0.8)
    assert RULE.with_threshold(lower).count(videos) / hours > 1.0
    # 1.5/h on the same footage allows three bursts, 0.1/h none
    assert _between(calibration.choose_threshold(videos, hours, 1.5, RULE).threshold,
                    0.7, 0.8)
    none = calibration.choose_threshold(videos, hours, 0.1, RULE)
    assert none.events == 0 and none.threshold == float(np.float32(0.9)) + calibration.OUTSIDE_MARGIN


def test_no_candidate_sits_on_a_score_and_each_counts_as_the_score_above_it():
    """A threshold on a score would let float noise of another engine (ONNX vs eager) flip that snippet; midway
    between two scores, a snippet flips only if the engines differ by half the gap."""
    rng = np.random.default_rng(3)
    videos = [rng.random(40).astype(np.float32), rng.random(25).astype(np.float32)]
    values = np.unique(np.concatenate(videos).astype(np.float64))
    cands = calibration.candidates(videos)
    assert len(cands) == len(values) + 1 and not np.isin(cands, values).any()
    assert cands[0] == values[0] - calibration.OUTSIDE_MARGIN and cands[-1] == values[-1] + calibration.OUTSIDE_MARGIN
    for t, score in zip(cands[:-1], values):  # counting at t is counting "score >= the next score up"
        assert RULE.with_threshold(t).count(videos) == RULE.with_threshold(score).count(videos)
    assert AlertRule(cands[-1], 1, 1).count(videos) == 0
    assert calibration.OUTSIDE_MARGIN > onnx_scorer.TOLERANCE  # no engine within the tolerance reaches the top one


def test_the_envelope_keeps_every_higher_threshold_within_the_target():
    # one event at 0.5 (the dip is above) but two at 0.9 (the dip splits it): the count is not monotone
    scores = np.array([0.1, 0.9, 0.9, 0.5, 0.9, 0.9, 0.1])
    assert AlertRule(0.5, 2, 1).count([scores]) == 1
    assert AlertRule(0.9, 2, 1).count([scores]) == 2
    choice = calibration.choose_threshold([scores], 1.0, 1.0, AlertRule(open_after=2, close_after=1))
    # 0.5 (and 0.1) give one event per hour, but raising the threshold to 0.9 would give two: only above the max
    assert choice.threshold == 0.9 + calibration.OUTSIDE_MARGIN and choice.events == 0


def test_short_footage_is_flagged_zero_events_only():
    assert calibration.zero_events_only(0.3, 1.0) and not calibration.zero_events_only(1.0, 1.0)
    assert calibration.zero_events_only(0.5, 3.0) is False
    choice = calibration.choose_threshold([_bursts([0.9, 0.6])], 0.3, 1.0)
    assert choice.events == 0 and choice.threshold > float(np.float32(0.9))


def test_threshold_for_says_where_the_value_came_from():
    cal = {"thresholds": {"live": 0.61, "offline": 0.42}, "target_false_alarms_per_hour": 1.0, "hours": 0.31}
    assert threshold_for(cal, "live", None) == (0.61, "calibration (1 false alarm/h on 0.31 h)")
    assert threshold_for(cal, "offline", 0.7) == (0.7, "--threshold")
    assert threshold_for(None, "offline", None) == (0.5, "uncalibrated default 0.5")


def test_a_calibration_that_records_no_smoothing_was_made_on_the_models_own_scores():
    assert calibrated_smoothing({"thresholds": {"live": 0.5, "offline": 0.5}}) == 1  # made before detect smoothed
    assert calibrated_smoothing({"smoothing_snippets": 5}) == 5


def test_a_damaged_calibration_is_named_with_the_fix(tmp_path):
    assert load_calibration(tmp_path) is None
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(UserError, match=r"calibration\.json.*dakd calibrate"):
        load_calibration(tmp_path)
    (tmp_path / "calibration.json").write_text(json.dumps({"thresholds": {"live": "x"}, "hours": 1,
                                                           "target_false_alarms_per_hour": 1}))
    with pytest.raises(UserError, match="live threshold"):
        load_calibration(tmp_path)
    export_folder = tmp_path / "export"
    export_folder.mkdir()
    (export_folder / "export.json").write_text(json.dumps({"run": "abc"}))
    assert load_calibration(export_folder) is None


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
    assert load_calibration(folder)["thresholds"] == c["thresholds"]


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
    # events of another rule than the calibration's: the calibrated rate does not hold, and detect says so
    assert detect.main([str(video), "--store", str(s.store), "--model", s.teacher[:12], "--quiet",
                        "--out", str(tmp_path / "other"), "--open-after", "4"]) == 0
    out, err = capsys.readouterr()
    assert "calibrated with events opening after 2 and closing after 3 snippets" in err
    assert "--open-after 2 and --close-after 3" in err and "events (hysteresis: open after 4 snippets >=" in out
    assert json.loads((tmp_path / "other" / "cam_a.json").read_text())["alert_rule"]["open_after"] == 4


def test_detect_smooths_the_scores_it_marks_and_calibrate_the_offline_scores_alike(small, tmp_path, capsys):
    """`--smoothing N` (default 3): detect's snippet scores are the model's smoothed by a centred moving mean over N
    snippets (the mean of what the window holds at the ends), and its frame scores and events follow them;
    calibrate chooses the offline threshold on scores smoothed the same way (its margin is measured to detect's
    smoothed scores, not to the model's own) and records the window."""
    s, _, _, normal = small
    video = normal / "cam_a.mkv"
    got = {}
    for window in (1, 3):
        assert detect.main([str(video), "--store", str(s.store), "--model", s.teacher[:12], "--quiet", "--threshold",
                            "0.5", "--smoothing", str(window), "--out", str(tmp_path / f"w{window}")]) == 0
        got[window] = json.loads((tmp_path / f"w{window}" / "cam_a.json").read_text())
    raw, smooth = np.array(got[1]["snippet_scores"]), np.array(got[3]["snippet_scores"])
    assert got[1]["smoothing_snippets"] == 1 and got[3]["smoothing_snippets"] == 3
    assert len(raw) == 6 and np.ptp(raw) > 1e-3  # the scores vary: smoothing changes them
    by_hand = [raw[max(t - 1, 0):t + 2].mean() for t in range(len(raw))]
    assert np.allclose(smooth, by_hand, atol=1e-6) and not np.allclose(smooth, raw, atol=1e-4)
    assert np.allclose(got[3]["frame_score"], np.repeat(smooth, 16)[:got[3]["n_frames"]])
    out_file = tmp_path / "calibration.json"
    assert calibrate.main([s.teacher[:12], "--store", str(s.store), "--normal", str(video), "--quiet",
                           "--out", str(out_file)]) == 0
    c = json.loads(out_file.read_text())
    assert c["smoothing_snippets"] == 3
    assert np.abs(smooth - c["thresholds"]["offline"]).min() == pytest.approx(c["margins"]["offline"])
    assert np.abs(raw - c["thresholds"]["offline"]).min() != pytest.approx(c["margins"]["offline"])
    # an even or non-positive window is a usage error naming the flag, before anything is scored
    capsys.readouterr()
    for command, args in ((detect, [str(video), "--store", str(s.store), "--smoothing", "2"]),
                          (calibrate, [s.teacher[:12], "--store", str(s.store), "--normal", str(video),
                                       "--smoothing", "0", "--out", str(out_file)])):
        assert command.main([*args, "--quiet"]) == 2
        assert "--smoothing: the smoothing window must be an odd number of snippets" in capsys.readouterr().err


def test_detect_warns_when_its_smoothing_is_not_the_calibrations(small, tmp_path, capsys):
    """A threshold calibrated on scores smoothed otherwise (here the model's own, `--smoothing 1`) does not give the
    calibrated false-alarm rate on detect's default smoothed scores: detect says so and how to match it."""
    s, with_val, _, normal = small
    video = normal / "cam_b.mkv"
    assert calibrate.main([with_val[:12], "--store", str(s.store), "--normal", str(video), "--quiet",
                           "--smoothing", "1"]) == 0
    capsys.readouterr()
    assert detect.main([str(video), "--store", str(s.store), "--model", with_val[:12], "--quiet",
                        "--out", str(tmp_path / "default")]) == 0
    err = capsys.readouterr().err
    assert "calibrated on scores smoothed over 1 snippet(s), these are smoothed over 3" in err
    assert "--smoothing 1" in err
    assert detect.main([str(video), "--store", str(s.store), "--model", with_val[:12], "--quiet", "--smoothing", "1",
                        "--out", str(tmp_path / "matched")]) == 0
    assert "smoothed over" not in capsys.readouterr().err


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


@pytest.mark.slow
def test_detect_finds_the_false_alarms_calibrate_counted_on_the_same_footage(small, vtest_path, tmp_path, capsys):
    """The tester's case: calibrate on vtest.avi, then detect on vtest.avi at the calibrated threshold, eager and
    with the ONNX export; each reports as many events as calibration counted false alarms. The target is lowered
    from 500 alarms/h (4 events on its 31 s) until the threshold falls between two scores with an event at it,
    not below every score (one event, the whole video) or above them all (none)."""
    s, _, folder, _ = small
    for target in (500, 300, 200, 150, 100, 70, 50):
        assert calibrate.main([s.teacher[:12], "--store", str(s.store), "--normal", str(vtest_path), "--quiet",
                               "--false-alarms-per-hour", str(target)]) == 0
        err = capsys.readouterr().err
        c = json.loads((folder / "calibration.json").read_text())
        threshold, counted = c["thresholds"]["offline"], c["false_alarms"]["offline"]
        if counted >= 1 and c["margins"]["offline"] < calibration.OUTSIDE_MARGIN:  # between two scores
            break
    else:
        pytest.fail("no target put the offline threshold between two scores with an event")
    assert c["n_snippets"] == 49 and counted <= target * c["hours"]
    assert (c["margins"]["offline"] < onnx_scorer.TOLERANCE) == ("offline threshold lies" in err)  # warned when close
    assert detect.main([str(vtest_path), "--store", str(s.store), "--model", s.teacher[:12], "--quiet",
                        "--out", str(tmp_path / "eager"), "--overlay", str(tmp_path / "overlays")]) == 0
    out = capsys.readouterr().out
    eager = json.loads((tmp_path / "eager" / "vtest.json").read_text())
    assert eager["threshold"] == threshold and len(eager["events"]) == counted
    assert eager["alert_rule"] == {"threshold": threshold, "open_after": 2, "close_after": 3}
    rule = f"events (hysteresis: open after 2 snippets >= {threshold:.6g}, close after 3 below)"
    assert f"vtest.avi: max score {max(eager['frame_score']):.3f}, {counted} {rule}" in out
    assert f"wrote {tmp_path / 'eager' / 'vtest.csv'}, .json, .png and overlay {tmp_path / 'overlays' / 'vtest.mp4'}" \
        in out and (tmp_path / "overlays" / "vtest.mp4").is_file()
    # the threshold lies midway between two scores, as far from each as the footage allows
    scores = np.array(eager["snippet_scores"])
    assert not np.isin(threshold, scores)
    assert np.abs(scores - threshold).min() == pytest.approx(c["margins"]["offline"])
    # the export carries the calibration; its scores differ from the eager ones by float noise, the count does not
    export_dir = tmp_path / "export"
    assert export.main([s.teacher[:12], "--store", str(s.store), "--out", str(export_dir), "--frame-size",
                        "768x576", "--quiet"]) == 0
    assert detect.main([str(vtest_path), "--onnx", str(export_dir), "--quiet", "--device", "cpu",
                        "--out", str(tmp_path / "onnx")]) == 0
    onnx = json.loads((tmp_path / "onnx" / "vtest.json").read_text())
    assert onnx["engine"] == "onnxruntime" and onnx["threshold"] == threshold
    diff = np.abs(np.array(onnx["snippet_scores"]) - scores).max()
    print(f"vtest.avi: {counted} events at {threshold!r}, margin {c['margins']['offline']:.3g}, onnx diff {diff:.3g}")
    assert diff < c["margins"]["offline"]
    assert [(e["first_snippet"], e["last_snippet"]) for e in onnx["events"]] == \
        [(e["first_snippet"], e["last_snippet"]) for e in eager["events"]]


# -- a spatial run ---------------------------------------------------------------------------------------------
def _watch_scores(model, path: Path) -> np.ndarray:
    """float32 ``[T]``: ``path``'s snippets embedded by a watch model (``pipeline.watch.model.LiveModel``) and each
    causal window of its last ``model.window`` snippets scored as ``dakd watch`` scores it (``score_maps``, a spatial
    run's ``map_scorer``). Decoded with the extractor's default backend, so that the cells are the stored ones (a
    camera is decoded with PyAV, whose pixels differ slightly)."""
    from data.decode import open_video

    plan = model.plans[0]
    with open_video(path, short_side=plan.short_side, square=plan.square) as video:
        snippets = np.stack(list(video.snippets()))
    [cells] = model.embed([snippets])  # [T, C, D]
    scores, maps = model.score_maps([[cells[max(0, t - model.window + 1):t + 1]] for t in range(len(cells))])
    assert maps is not None  # the spatial run's window scoring, with its maps
    return scores


@pytest.mark.slow
def test_a_spatial_run_is_calibrated_on_the_scores_detect_and_watch_give_it(spatial_runs, tmp_path, capsys):
    """The spatial student of tests/spatial_runs.py (effnet_lite0 cells of real videos on its native grid),
    calibrated on the dataset's normal videos: the offline threshold is chosen on the scores detect marks (its
    cells scored on the run's grid), the live one on those watch raises alerts on (each causal window's cells). As
    for the global run above, the target is lowered until each threshold falls between two scores with an event;
    then detect at the offline threshold finds the events calibrate counted, and so does the rule over the windows
    watch scores at the live one."""
    from pipeline.watch.model import from_run

    store, dataset, keys, grids = spatial_runs
    run = keys["student"]
    normals = sorted(str(e.path) for e in dataset.entries if e.label == 0)
    chosen = {}  # kind -> the calibration that put its threshold between two scores with an event
    for target in (1000, 700, 500, 300, 200, 150, 100):
        out_file = tmp_path / f"calibration_{target}.json"  # not the run folder: the runs are shared
        assert calibrate.main([run[:12], "--store", str(store), "--normal", *normals, "--quiet",
                               "--false-alarms-per-hour", str(target), "--out", str(out_file)]) == 0
        c = json.loads(out_file.read_text())
        for kind in ("live", "offline"):
            assert np.isfinite(c["thresholds"][kind])
            if kind not in chosen and c["false_alarms"][kind] >= 1 and c["margins"][kind] < calibration.OUTSIDE_MARGIN:
                chosen[kind] = c
        if len(chosen) == 2:
            break
    else:
        pytest.fail(f"no target put both thresholds between two scores with an event (found: {sorted(chosen)})")
    capsys.readouterr()
    assert chosen["offline"]["n_snippets"] == 6 * 10  # six normal videos of 160 frames

    # offline: detect at the calibrated threshold marks as many events on the same videos
    c = chosen["offline"]
    threshold, counted = c["thresholds"]["offline"], c["false_alarms"]["offline"]
    assert detect.main([*normals, "--store", str(store), "--model", run[:12], "--quiet", "--threshold",
                        repr(threshold), "--out", str(tmp_path / "detect")]) == 0
    results = [json.loads(f.read_text()) for f in sorted((tmp_path / "detect").glob("*.json"))]
    assert len(results) == 6 and all(r["grid"] == list(grids["student"]) for r in results)  # scored with maps
    assert sum(len(r["events"]) for r in results) == counted
    scores = np.concatenate([r["snippet_scores"] for r in results])
    assert scores.min() < threshold < scores.max() and not np.isin(threshold, scores)
    assert np.abs(scores - threshold).min() == pytest.approx(c["margins"]["offline"])

    # live: the windows watch scores, on the same videos, give as many events at the live threshold
    c = chosen["live"]
    threshold, counted = c["thresholds"]["live"], c["false_alarms"]["live"]
    model = from_run(store, run[:12], window=c["window"])
    live = [_watch_scores(model, Path(path)) for path in normals]
    assert sum(len(v) for v in live) == c["n_snippets"]
    assert AlertRule(threshold, open_after=2, close_after=3).count(live) == counted
    scores = np.concatenate(live)
    assert scores.min() < threshold < scores.max() and not np.isin(threshold, scores)
    # the live embedding's cells equal the stored ones up to float noise (1e-5 on the scores)
    assert np.abs(scores - threshold).min() == pytest.approx(c["margins"]["live"], abs=1e-5)
