"""Live sources (pipeline.watch.sources) on real files: the frames equal offline PyAV decoding, a file plays at its
native rate with --realtime, a file still being written is followed (every frame, ending once it stops growing; a
plain MP4 being written is refused with the fix), a source that never connects is given up and named, and stop ends
a read at once."""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest
from videos import encode, mux_packets, pattern_frames

from data.decode import open_video
from pipeline.watch.sources import WATCHDOG_STALL_FACTOR, Camera, ReconnectPolicy, StreamReader

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


FOLLOW = ReconnectPolicy(initial_s=0.05, max_s=0.1, give_up_after=2, follow_idle_timeout_s=0.5)


def _ts_bytes(tmp_path, n: int = 60) -> bytes:
    """An MPEG-TS recording (libx264) of ``n`` frames, as the bytes a recorder would write."""
    return encode(tmp_path / "full.ts", pattern_frames(n, 48, 64), codec="libx264", lossless=False).read_bytes()


def _offline(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24", width=f.width, height=f.height, interpolation="BILINEAR")
                         for f in container.decode(video=0)])


def _write_in_chunks(path, data: bytes, chunks: int, interval_s: float, done: list) -> None:
    step = -(-len(data) // chunks)
    with open(path, "wb") as out:
        for i in range(0, len(data), step):
            if i:
                time.sleep(interval_s)
            out.write(data[i:i + step])
            out.flush()
    done.append(time.monotonic())  # the last write


def test_following_a_growing_ts_file_gives_every_frame_and_ends_once_it_stops_growing(tmp_path):
    data = _ts_bytes(tmp_path)
    offline = _offline(tmp_path / "full.ts")
    path = tmp_path / "rec.ts"
    path.write_bytes(b"")  # the recorder has created the file, nothing written yet
    done: list = []
    writer = threading.Thread(target=_write_in_chunks, args=(path, data, 5, 0.35, done))  # 5 chunks over 1.4 s
    reader = StreamReader(Camera("rec", str(path), follow=True), policy=FOLLOW)
    writer.start()
    frames = list(reader.frames())
    ended = time.monotonic()
    writer.join()
    assert len(frames) == len(offline) == 60 and reader.stats.connects == 1
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), offline)
    pts = [f.pts_s for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == 60
    assert frames[0].arrival < done[0]  # read while it was being written, not once complete
    assert ended - done[0] < 0.5 + 1.0  # the idle timeout and a margin after the last write


def test_stop_ends_a_wait_at_the_end_of_a_growing_file_promptly(tmp_path):
    data = _ts_bytes(tmp_path)
    path = tmp_path / "rec.ts"
    path.write_bytes(data[: len(data) // 2])  # half written; the recorder is pausing, not finished
    stop = threading.Event()
    policy = ReconnectPolicy(follow_idle_timeout_s=30.0)
    reader = StreamReader(Camera("rec", str(path), follow=True), policy=policy, stop=stop)
    stopped = []

    def set_stop():
        stopped.append(time.monotonic())
        stop.set()

    timer = threading.Timer(1.0, set_stop)
    timer.start()
    frames = list(reader.frames())
    ended = time.monotonic()
    timer.join()
    assert 0 < len(frames) < 60
    assert ended - stopped[0] < 1.0


def test_following_a_plain_mp4_being_written_is_refused_with_the_fix(tmp_path):
    data = encode(tmp_path / "full.mp4", pattern_frames(30, 32, 32), codec="libx264", lossless=False).read_bytes()
    path = tmp_path / "rec.mp4"
    path.write_bytes(data[: len(data) // 2])  # the moov (index) is written at the end: not there yet
    started = time.monotonic()
    with pytest.raises(ValueError, match="frag_keyframe") as refused:
        next(StreamReader(Camera("rec", str(path), follow=True), policy=FOLLOW).frames())
    assert str(path) in str(refused.value) and ".ts" in str(refused.value)
    assert time.monotonic() - started < 1.0


def test_following_a_fragmented_mp4_gives_every_frame(tmp_path):
    full = encode(tmp_path / "full.mp4", pattern_frames(30, 48, 64), codec="libx264", lossless=False,
                  options={"movflags": "frag_keyframe+empty_moov"})
    offline = _offline(full)
    path = tmp_path / "rec.mp4"
    done: list = []
    writer = threading.Thread(target=_write_in_chunks, args=(path, full.read_bytes(), 3, 0.2, done))
    writer.start()
    while not path.exists():
        time.sleep(0.01)
    frames = list(StreamReader(Camera("rec", str(path), follow=True), policy=FOLLOW).frames())
    writer.join()
    assert len(frames) == 30
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), offline)


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


class _StallingContainer:
    """A real PyAV container whose demuxer blocks after ``after`` packets (a hung disk or decoder) until released."""

    def __init__(self, container, after: int, release: threading.Event):
        self._container, self._after, self._release = container, after, release

    def __getattr__(self, name):
        return getattr(self._container, name)

    def demux(self, *streams):
        for i, packet in enumerate(self._container.demux(*streams)):
            if i == self._after:
                self._release.wait(60)  # released at the end; without a watchdog the test fails, not hangs
            yield packet


def test_a_file_source_that_stalls_stops_its_camera_by_name_without_replaying_it(tmp_path, monkeypatch, caplog):
    path = encode(tmp_path / "v.mp4", pattern_frames(60, 32, 32), codec="libx264", lossless=False,
                  options={"movflags": "faststart"})
    release = threading.Event()
    real_open = StreamReader._open
    monkeypatch.setattr(StreamReader, "_open", lambda self: _StallingContainer(real_open(self), 20, release))
    reader = StreamReader(Camera("door", str(path)), policy=FAST)  # the stall timeout 2 s: the watchdog at 4 s
    try:
        with caplog.at_level("ERROR"):
            frames = list(reader.frames())
    finally:
        release.set()
    assert 0 < len(frames) <= 20 and reader.stats.stalled and reader.stats.connects == 1  # not replayed
    assert f"no progress for {WATCHDOG_STALL_FACTOR * FAST.stall_timeout_s:g} s" in reader.stats.last_error
    assert any("door" in r.message and str(path) in r.message and "made no progress" in r.message
               for r in caplog.records)
    from pipeline.watch.watcher import CameraSummary, WatchSummary

    summary = WatchSummary("m", None, 0.5, "", 4, 1.0, False, [CameraSummary("door", str(path), stalled=True)])
    assert summary.failed_cameras == ["door"]  # watch exits 1 and names it


def test_realtime_pacing_does_not_wait_out_a_broken_timestamp_jump(tmp_path):
    # 11 hours between frames 29 and 30: played on at the native rate, not waited out.
    path = mux_packets(tmp_path / "jump.mkv", pattern_frames(60, 32, 32), lambda k: (k + 10**6 * (k >= 30),) * 2,
                       format="matroska")
    stop = threading.Event()
    guard = threading.Timer(60, stop.set)  # without the fix the read would wait 11 h: the test fails, not hangs
    guard.start()
    try:
        frames = list(StreamReader(Camera("file", str(path), realtime=True), stop=stop).frames())
    finally:
        guard.cancel()
    assert len(frames) == 60 and not stop.is_set()
