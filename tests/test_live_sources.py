"""Live sources (pipeline.live.sources) on real files: the frames equal offline PyAV decoding, a file plays at its
native rate with --realtime, a source that never connects is given up and named, and stop ends a read at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from videos import encode, pattern_frames

from data.decode import open_video
from pipeline.live.sources import Camera, ReconnectPolicy, StreamReader

FAST = ReconnectPolicy(initial_s=0.05, max_s=0.1, open_timeout_s=2.0, stall_timeout_s=2.0, give_up_after=2)


def test_a_file_gives_the_offline_frames_on_its_own_clock(tmp_path):
    path = encode(tmp_path / "v.mp4", pattern_frames(40, 48, 64), codec="libx264", lossless=False)
    reader = StreamReader(Camera("file", str(path)), short_side=32)
    frames = list(reader.frames())
    with open_video(path, backend="pyav", short_side=32) as video:
        offline = np.concatenate(list(video.snippets()))  # the 32 frames of two snippets
    assert len(frames) == 40 and reader.stats.frames == 40 and reader.stats.connects == 1
    np.testing.assert_array_equal(np.stack([f.image for f in frames[:32]]), offline)
    np.testing.assert_allclose([f.clock_s for f in frames], np.arange(40) / 25, atol=1e-6)
    assert [f.connection for f in frames] == [0] * 40 and not any(f.gap_before for f in frames)


def test_realtime_plays_a_file_at_its_native_rate(tmp_path):
    path = encode(tmp_path / "v.mp4", pattern_frames(25, 32, 32), codec="libx264", lossless=False)
    started = time.monotonic()
    frames = list(StreamReader(Camera("file", str(path), realtime=True)).frames())
    assert len(frames) == 25
    assert time.monotonic() - started >= 0.9  # frame 24 is due at 0.96 s: a lower bound only
    assert frames[-1].arrival - frames[0].arrival >= 0.9


def test_a_source_that_never_connects_is_given_up_and_named(caplog):
    reader = StreamReader(Camera("gate", "tcp://127.0.0.1:9"), policy=FAST)  # port 9: nothing listens
    with caplog.at_level("WARNING"):
        assert list(reader.frames()) == []
    assert reader.stats.connects == 0 and reader.stats.failed_connects == 2
    assert "127.0.0.1:9" in reader.stats.last_error
    assert any("gate" in r.message and "cannot connect" in r.message for r in caplog.records)


def test_following_a_growing_file_is_refused_until_it_is_implemented(tmp_path):
    path = encode(tmp_path / "v.mp4", pattern_frames(16, 32, 32), codec="libx264", lossless=False)
    with pytest.raises(ValueError, match="not implemented") as refused:
        next(StreamReader(Camera("file", str(path), follow=True)).frames())
    assert str(path) in str(refused.value)


def test_stop_ends_a_read_promptly(tmp_path):
    path = encode(tmp_path / "v.mp4", pattern_frames(250, 32, 32), codec="libx264", lossless=False)
    stop = threading.Event()
    reader = StreamReader(Camera("file", str(path), realtime=True), stop=stop)
    got = []
    for frame in reader.frames():
        got.append(frame)
        if len(got) == 5:
            stop.set()
    assert 5 <= len(got) < 250
