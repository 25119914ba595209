"""Tests of data/synthetic/ (the package): determinism, encodings, anomaly visibility, annotations, CLI."""

from __future__ import annotations

import csv
import re
from fractions import Fraction

import av
import numpy as np
import pytest

from data import synthetic as syn
from pipeline.cli import synthetic as synthetic_command
from data.datasets import read_ucf_annotation
from data.discover import video_name
from data.synthetic import (ANOMALY_KINDS, AnomalyEvent, SyntheticScene, SyntheticSpec, generate_dataset,
                            random_events, render_frames, write_video)

SMALL = dict(n_frames=40, width=64, height=48)
# UCF-Crime annotation line (the official file ends each line with two spaces)
ANNOTATION_LINE = re.compile(r"^(\S+\.mp4)  ([A-Z][A-Za-z]*)  (-1|\d+)  (-1|\d+)  (-1|\d+)  (-1|\d+)  $")


def _frames(spec: SyntheticSpec) -> np.ndarray:
    return np.stack(list(render_frames(spec)))


def _decode_pyav(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, stream.codec_context.name, stream.average_rate


# ------------------------------------------------------------------------------------------------- determinism
def test_same_spec_gives_identical_frames_and_seed_changes_them():
    events = (AnomalyEvent("vehicle", 5, 20), AnomalyEvent("fire", 22, 38))
    spec = SyntheticSpec(**SMALL, events=events, seed=7)
    a, b = _frames(spec), _frames(spec)
    assert a.shape == (40, 48, 64, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    # random access gives the same frames as sequential rendering
    scene = SyntheticScene(spec)
    for t in (39, 0, 17):
        assert np.array_equal(scene.render(t), a[t])
    other = _frames(SyntheticSpec(**SMALL, events=events, seed=8))
    assert not np.array_equal(a, other)
    assert np.abs(a.astype(int) - other.astype(int)).mean() > 3  # a different scene, not just different noise


_WRITE_TWICE = """
import hashlib, sys
from data.synthetic import AnomalyEvent, SyntheticSpec, write_video
spec = SyntheticSpec(n_frames=120, width=320, height=240, seed=5, events=(AnomalyEvent("vehicle", 20, 100),))
print(" ".join(hashlib.sha256(write_video(spec, f"{sys.argv[1]}/{i}.mp4").read_bytes()).hexdigest() for i in range(3)))
"""


def test_same_seed_gives_the_same_bytes_in_any_process(tmp_path):
    """Item 9 of issue 20: the same spec encodes to the same file in one process and across processes with other
    hash seeds. With x264's B-frames (its default) 3 writes in one process gave 2-3 different files at this size."""
    import os
    import subprocess
    import sys

    from data.synthetic import H264_OPTIONS, LOSSLESS_OPTIONS

    assert H264_OPTIONS["x264-params"] == LOSSLESS_OPTIONS["x264-params"] == "threads=1:bframes=0"
    digests = set()
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        out.mkdir()
        done = subprocess.run([sys.executable, "-c", _WRITE_TWICE, str(out)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert done.returncode == 0, done.stderr
        digests.update(done.stdout.split())
    assert len(digests) == 1


def test_frames_move_and_are_not_constant():
    frames = _frames(SyntheticSpec(**SMALL, seed=1))
    assert frames.std() > 10  # textured scene
    assert np.abs(np.diff(frames.astype(np.int16), axis=0)).max() > 50  # something moves


# ------------------------------------------------------------------------------------------------- encodings
@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_lossless_round_trip_pyav_and_decord(tmp_path, suffix):
    import decord
    spec = SyntheticSpec(**SMALL, events=(AnomalyEvent("fight", 10, 30),), seed=3)
    ref = _frames(spec)
    path = write_video(spec, tmp_path / f"v.{suffix}", lossless=True)
    assert path.exists()
    decoded, _codec, rate = _decode_pyav(path)
    assert decoded.shape[0] == spec.n_frames
    assert np.array_equal(decoded, ref)
    assert rate == Fraction(25)
    vr = decord.VideoReader(str(path))
    assert len(vr) == spec.n_frames
    assert np.array_equal(vr.get_batch(list(range(len(vr)))).asnumpy(), ref)
    vr = decord.VideoReader(str(path))
    assert np.array_equal(np.stack([vr.next().asnumpy() for _ in range(spec.n_frames)]), ref)


def test_h264_default(tmp_path):
    spec = SyntheticSpec(n_frames=30, width=64, height=48, fps=12.5, seed=2)
    path = write_video(spec, tmp_path / "v.mp4")
    decoded, codec, rate = _decode_pyav(path)
    assert codec == "h264"
    assert decoded.shape == (30, 48, 64, 3)
    assert rate == Fraction(25, 2)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    # lossy but close to the rendered frames
    assert np.abs(decoded.astype(int) - _frames(spec).astype(int)).mean() < 6
    with pytest.raises(ValueError, match="even"):
        write_video(SyntheticSpec(n_frames=2, width=65, height=48), tmp_path / "odd.mp4")


# ------------------------------------------------------------------------------------------------- anomalies
def _changed_fraction(frames: np.ndarray, threshold: int = 20) -> np.ndarray:
    """Per frame t >= 1: fraction of pixels whose colour changed by more than ``threshold`` since t - 1."""
    diff = np.abs(np.diff(frames.astype(np.int16), axis=0)).max(axis=-1)
    return (diff > threshold).mean(axis=(1, 2))


@pytest.mark.parametrize("kind, min_ratio", [("vehicle", 3.0), ("scatter", 3.0), ("fire", 2.0), ("fight", 1.5)])
def test_anomalies_are_visible(kind, min_ratio):
    spec = SyntheticSpec(n_frames=120, width=128, height=96, n_walkers=3,
                         events=(AnomalyEvent(kind, 50, 90),), seed=0)
    change = _changed_fraction(_frames(spec))
    inside = spec.frame_labels()[1:] == 1
    ratio = change[inside].mean() / change[~inside].mean()
    assert ratio > min_ratio, f"{kind}: inside/outside change ratio {ratio:.2f}"


def test_fall_lies_down_and_boxes_follow_events():
    events = (AnomalyEvent("fall", 20, 60), AnomalyEvent("vehicle", 70, 90))
    spec = SyntheticSpec(n_frames=100, width=128, height=96, n_walkers=2, events=events, seed=4)
    scene = SyntheticScene(spec)
    for t in range(spec.n_frames):
        boxes = scene.anomaly_boxes(t)
        expected = [e.kind for e in events if e.start <= t < e.end]
        assert [b[0] for b in boxes] == expected, t
    kind, x0, y0, x1, y1 = scene.anomaly_boxes(40)[0]
    assert kind == "fall" and (x1 - x0) > (y1 - y0)  # lying: wider than tall (a standing person: ~1:2.5)
    # just before the fall the person is upright (normal walking, not annotated)
    victim = next(tr for tr in scene._tracks if (tr.event == 0).any())
    assert abs(victim.tilt[19 - victim.t0]) < 0.2 and abs(abs(victim.tilt[40 - victim.t0]) - np.pi / 2) < 1e-6


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_outside_events_people_only_walk(kind):
    """Outside the interval every person moves at most at walking speed and stays upright (white-box)."""
    ev = AnomalyEvent(kind, 30, 60)
    spec = SyntheticSpec(n_frames=90, width=96, height=72, n_walkers=4, events=(ev,), seed=11)
    scene = SyntheticScene(spec)
    max_step = syn.WALK_SPEED_RANGE_HPS[1] * spec.height / spec.fps * 1.001
    for tr in scene._tracks:
        t = np.arange(tr.t0, tr.t1)
        normal = (t < ev.start) | (t >= ev.end)
        assert (tr.event[normal] == -1).all()
        assert (tr.event[~normal] <= 0).all()
        step = np.r_[0.0, np.hypot(*np.diff(tr.xy, axis=0).T)]
        moving_normally = normal & np.r_[True, normal[:-1]]  # both ends of the step outside the event
        assert (step[moving_normally] <= max_step).all()
        assert (np.abs(tr.tilt[normal]) < 0.2).all()
    if kind == "scatter":  # everyone has left before the end of the interval, nobody entered meanwhile
        assert not any(tr.t0 < ev.end - 1 < tr.t1 for tr in scene._tracks if (tr.event == 0).any())


def test_same_seed_without_events_shares_background_and_walkers():
    base = SyntheticScene(SyntheticSpec(**SMALL, seed=5))
    with_fire = SyntheticScene(SyntheticSpec(**SMALL, events=(AnomalyEvent("fire", 20, 30),), seed=5))
    assert np.array_equal(base.background, with_fire.background)
    assert np.array_equal(base.render(10), with_fire.render(10))
    assert not np.array_equal(base.render(25), with_fire.render(25))


# ------------------------------------------------------------------------------------------------- spec / events
def test_spec_validation():
    with pytest.raises(ValueError):
        AnomalyEvent("explosion", 0, 5)
    with pytest.raises(ValueError):
        AnomalyEvent("fire", 5, 5)
    with pytest.raises(ValueError):
        SyntheticSpec(n_frames=10, events=(AnomalyEvent("fire", 5, 11),))
    spec = SyntheticSpec(n_frames=10, events=[AnomalyEvent("fire", 2, 4)])
    assert spec.events == (AnomalyEvent("fire", 2, 4),)
    assert spec.frame_labels().tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0]


def test_random_events_are_deterministic_sorted_and_disjoint():
    for seed in range(20):
        events = random_events(seed, 320, n_events=3, kinds=("fire", "fall"))
        assert events == random_events(np.random.default_rng(seed), 320, n_events=3, kinds=("fire", "fall"))
        assert len(events) == 3
        for a, b in zip(events, events[1:]):
            assert a.end < b.start
        for e in events:
            assert e.kind in ("fire", "fall") and 0 < e.start < e.end < 320
    short = random_events(0, 30, n_events=2)  # lengths shrink to fit a short video
    assert len(short) == 2 and short[-1].end <= 30
    with pytest.raises(ValueError):
        random_events(0, 3, n_events=5)


# ------------------------------------------------------------------------------------------------- dataset / CLI
def test_annotation_format_and_round_trip(tmp_path):
    ds = generate_dataset(tmp_path / "ds", n_normal=2, n_anomalous=6, seed=3, n_frames=32, width=48, height=32)
    lines = ds.annotation_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(ds.entries) == 8
    for line, entry in zip(lines, ds.entries):
        m = ANNOTATION_LINE.match(line)
        assert m, line
        name, cls, *nums = m.groups()
        assert name == entry.name and cls == entry.class_name
        if entry.label == 0:
            assert cls == "Normal" and nums == ["-1"] * 4
        else:
            # end exclusive, as method.md's gt[s:e] = 1 reads it
            assert int(nums[0]) == entry.events[0].start and int(nums[1]) == entry.events[0].end
    parsed = read_ucf_annotation(ds.annotation_path.read_text(encoding="utf-8"), str(ds.annotation_path))
    for entry in ds.entries:
        cls, intervals = parsed[video_name(entry.name)]  # the dataset adapter's reader: names lose ".mp4"
        assert cls == entry.class_name
        assert list(intervals) == [(e.start, e.end) for e in entry.events]
        assert entry.path.exists() and entry.path.parent.name == "videos"
    names = [e.name for e in ds.entries]
    assert names[:2] == ["Normal_Videos_001_synth.mp4", "Normal_Videos_002_synth.mp4"]
    kinds = sorted(e.class_name for e in ds.entries if e.label)
    assert set(kinds) == {"Vehicle", "Fight", "Fall", "Scatter", "Fire"}  # balanced over the classes
    for e in ds.entries[2:]:
        assert re.fullmatch(rf"{e.class_name}\d{{3}}_synth\.mp4", e.name)
        assert {ev.kind for ev in e.events} == {e.class_name.lower()}


def test_split_csv_is_stratified_and_deterministic(tmp_path):
    kwargs = dict(n_normal=4, n_anomalous=6, seed=9, n_frames=16, width=32, height=32)
    ds = generate_dataset(tmp_path / "a", **kwargs)
    rows = list(csv.DictReader(ds.split_path.open(encoding="utf-8")))
    assert [r["name"] for r in rows] == [e.name for e in ds.entries]
    assert set(rows[0]) == {"name", "label", "class", "split"}
    for label in ("0", "1"):
        group = [r for r in rows if r["label"] == label]
        n_test = sum(r["split"] == "test" for r in group)
        assert n_test == max(1, round(0.3 * len(group)))
    again = generate_dataset(tmp_path / "b", **kwargs)
    assert [(e.name, e.split, e.seed, e.events) for e in again.entries] == \
        [(e.name, e.split, e.seed, e.events) for e in ds.entries]
    assert len({e.seed for e in ds.entries}) == len(ds.entries)


def test_labels_csv_matches_entries_with_exclusive_intervals(tmp_path):
    ds = generate_dataset(tmp_path / "ds", n_normal=1, n_anomalous=3, seed=5, n_frames=16, width=32, height=32)
    assert ds.labels_path == (tmp_path / "ds" / "labels.csv").resolve()
    rows = list(csv.DictReader(ds.labels_path.open(encoding="utf-8")))
    assert list(rows[0]) == ["name", "label", "class", "split", "intervals"]
    assert len(rows) == len(ds.entries)
    for row, e in zip(rows, ds.entries):
        assert (row["name"], int(row["label"]), row["class"], row["split"]) == (e.name, e.label, e.class_name,
                                                                                e.split)
        assert row["intervals"] == ";".join(f"{ev.start}-{ev.end}" for ev in e.events)
        assert bool(row["intervals"]) == bool(e.label)


def test_the_synthetic_command_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = synthetic_command.main([str(out), "--normal", "1", "--anomalous", "2", "--seed", "2", "--frames", "24",
                   "--size", "48x32", "--fps", "10", "--quiet"])
    assert rc == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "3 videos" in summary[0]
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert len(videos) == 3 and "Normal_Videos_001_synth.mp4" in videos
    assert (out / "Temporal_Anomaly_Annotation.txt").exists() and (out / "split.csv").exists()
    assert (out / "labels.csv").exists()
    decoded, codec, rate = _decode_pyav(out / "videos" / "Normal_Videos_001_synth.mp4")
    assert decoded.shape == (24, 32, 48, 3) and codec == "h264" and rate == 10
    bad = [str(tmp_path / "bad"), "--normal", "1", "--anomalous", "0", "--size", "8x8", "--quiet"]
    assert synthetic_command.main(bad) == 2


def test_python_dash_m_runs_the_package(tmp_path):
    """``python -m data.synthetic`` (the package's ``__main__``) writes the dataset the README's command names."""
    import subprocess
    import sys

    out = tmp_path / "m"
    done = subprocess.run([sys.executable, "-m", "data.synthetic", str(out), "--normal", "1", "--anomalous", "1",
                           "--frames", "16", "--size", "32x32", "--quiet"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 2 videos" in done.stdout
    assert len(list((out / "videos").iterdir())) == 2
