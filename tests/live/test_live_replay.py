"""The loopback camera (pipeline.testing.replay) and StreamReader's reconnect path against it: frames over TCP equal
offline decoding of the served bytes, a camera that dies and comes back is reconnected with the outage's frames
lost and its time on the clock, a stalled camera is noticed after the stall timeout, UDP delivers, a looped video
keeps its timestamps growing. Every wait is bounded: a watchdog stops the reader, so a bug fails, never hangs."""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager

import av
import numpy as np
import pytest
from videos import encode, pattern_frames

from pipeline.testing.replay import TS_PACKET, UDP_DATAGRAM, ReplayServer, _pes_pts, _shift
from pipeline.watch.sources import Camera, ReconnectPolicy, StreamReader

FPS = 25
GOP = 12
# short backoff; open timeout covers the wait for a keyframe (< GOP / FPS) plus FFmpeg's probing (~1 s of stream)
FAST = ReconnectPolicy(initial_s=0.05, max_s=0.1, open_timeout_s=4.0, stall_timeout_s=1.0, give_up_after=30)
DEADLINE_S = 15.0  # the watchdog: a test's reader is stopped after this long, whatever happens
OUTAGE_S = 1.0


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """10 s at 25 fps, 64x48: long enough that no test reaches the loop's end (but the loop test)."""
    return encode(tmp_path_factory.mktemp("replay") / "v.mp4", pattern_frames(250, 48, 64), fps=FPS,
                  codec="libx264", lossless=False)


def offline(server: ReplayServer) -> dict[int, np.ndarray]:
    """The served bytes decoded offline with PyAV, by frame index, converted as StreamReader converts."""
    frames = {}
    with av.open(io.BytesIO(server.ts_bytes), format="mpegts") as container:
        for frame in container.decode(video=0):
            frames[server.frame_index(float(frame.pts * frame.time_base))] = frame.to_ndarray(
                format="rgb24", width=frame.width, height=frame.height, interpolation="BILINEAR")
    return frames


@contextmanager
def watchdog(reader: StreamReader, seconds: float = DEADLINE_S):
    timer = threading.Timer(seconds, reader.stop.set)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def read(reader: StreamReader, server: ReplayServer, until, on_frame=None):
    """The reader's frames (with their served index) until ``until(frames)`` holds or the watchdog fires."""
    frames = []
    with watchdog(reader):
        for frame in reader.frames():
            frames.append((server.frame_index(frame.pts_s), frame))
            if on_frame:
                on_frame(frames)
            if until(frames):
                reader.stop.set()
    return frames


def contiguous(indices) -> bool:
    return list(indices) == list(range(indices[0], indices[0] + len(indices)))


def in_background(action) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


def test_the_stream_is_whole_ts_packets_with_its_tables_first(video):
    server = ReplayServer(video, gop=GOP)
    assert server.frame_count == 250 and server.fps == FPS
    assert server.keyframes == tuple(range(0, 250, GOP))
    assert all(len(c) % TS_PACKET == 0 and c[0] == 0x47 for c in server.chunks)
    pids = {((p[1] & 0x1F) << 8) | p[2] for p in (server.header[i:i + TS_PACKET]
                                                   for i in range(0, len(server.header), TS_PACKET))}
    assert 0 in pids and len(pids) >= 2  # the PAT and the PMT (and the SDT)
    assert server.chunks[0].startswith(server.header)
    # a later loop: timestamps moved on by the video's duration, so frame 250 is 10 s after frame 0
    later = _shift(server.chunks[0], server._loop_ticks, {})
    assert _pes_pts(later) - _pes_pts(server.chunks[0]) == 10 * 90_000
    assert server.frame_index(_pes_pts(server.chunk(250 + 3)) / 90_000) == 253
    assert UDP_DATAGRAM == 1316


def test_tcp_gives_the_offline_frames_in_order(video):
    with ReplayServer(video, gop=GOP) as server:
        assert server.url == f"tcp://127.0.0.1:{server.port}" and server.port
        reader = StreamReader(Camera("door", server.url), policy=FAST)
        frames = read(reader, server, lambda got: len(got) >= 40)
    reference = offline(server)
    indices = [n for n, _ in frames]
    assert len(frames) == 40 and contiguous(indices)
    assert indices[0] % server.frame_count in server.keyframes  # a client starts at a keyframe
    for n, frame in frames:
        np.testing.assert_array_equal(frame.image, reference[n])
    assert reader.stats.connects == 1 and reader.stats.corrupt_packets == 0
    assert not any(f.gap_before for _, f in frames) and {f.connection for _, f in frames} == {0}
    np.testing.assert_allclose(np.diff([f.clock_s for _, f in frames]), 1 / FPS, atol=1e-6)


def test_a_camera_that_dies_and_comes_back_is_reconnected_with_the_outage_lost(video, caplog):
    server = ReplayServer(video, gop=GOP).start()
    reader = StreamReader(Camera("yard", server.url), policy=FAST)
    outage = {}

    def die_and_come_back():
        outage["stopped"] = time.monotonic()
        server.stop()
        time.sleep(OUTAGE_S)
        server.start()
        outage["restarted"] = time.monotonic()

    def on_frame(got):
        if len(got) == 30 and not outage:
            outage["thread"] = in_background(die_and_come_back)

    try:
        with caplog.at_level("WARNING", logger="pipeline.watch.sources"):
            frames = read(reader, server, lambda got: sum(f.connection == 1 for _, f in got) >= 20, on_frame)
        outage["thread"].join(5)
    finally:
        server.stop()
    before = [(n, f) for n, f in frames if f.connection == 0]
    after = [(n, f) for n, f in frames if f.connection == 1]
    assert reader.stats.reconnects == 1 and reader.stats.connects == 2 and len(after) >= 20
    assert any("yard" in r.message and "stream lost" in r.message for r in caplog.records)
    assert server.clients[1].accepted > outage["restarted"] - 0.05
    # nothing sent before the stop is lost, and each connection is whole
    assert contiguous([n for n, _ in before]) and before[-1][0] == server.clients[0].last_sent
    assert contiguous([n for n, _ in after]) and after[0][0] % server.frame_count in server.keyframes
    assert after[0][1].gap_before and not any(f.gap_before for _, f in frames if f is not after[0][1])
    # the frames due during the outage are lost: ~outage x fps, plus at most the reconnect and the keyframe wait
    lost = after[0][0] - before[-1][0] - 1
    assert OUTAGE_S * FPS - 1 <= lost <= OUTAGE_S * FPS + GOP + 0.4 * FPS, lost
    # the clock jumps by the time without frames, and agrees with the camera's own timestamps
    jump = after[0][1].clock_s - before[-1][1].clock_s
    pts_jump = after[0][1].pts_s - before[-1][1].pts_s
    assert OUTAGE_S - 0.1 <= jump <= OUTAGE_S + 2.5, jump
    assert abs(jump - pts_jump) < 0.5, (jump, pts_jump)
    # a connection's clock starts at its first frame's arrival, counted from the camera's first frame ever
    assert abs(after[0][1].clock_s - (after[0][1].arrival - frames[0][1].arrival)) < 0.05
    np.testing.assert_allclose(np.diff([f.clock_s for _, f in after]), 1 / FPS, atol=1e-6)


def test_a_stalled_camera_is_noticed_after_the_stall_timeout_and_reconnected(video, caplog):
    server = ReplayServer(video, gop=GOP).start()
    reader = StreamReader(Camera("dock", server.url), policy=FAST)
    stall = {}

    def stall_then_resume():
        server.pause()
        stall["paused"] = time.monotonic()
        time.sleep(0.2)
        stall["last_sent"] = server.clients[0].last_sent  # nothing more is sent to it while paused
        time.sleep(FAST.stall_timeout_s + 0.3)
        server.resume()

    def on_frame(got):
        if len(got) == 30 and not stall:
            stall["thread"] = in_background(stall_then_resume)

    try:
        with caplog.at_level("WARNING", logger="pipeline.watch.sources"):
            frames = read(reader, server, lambda got: sum(f.connection == 1 for _, f in got) >= 10, on_frame)
        stall["thread"].join(5)
    finally:
        server.stop()
    before = [(n, f) for n, f in frames if f.connection == 0]
    after = [(n, f) for n, f in frames if f.connection == 1]
    assert reader.stats.reconnects == 1 and len(after) >= 10
    assert any("dock" in r.message and "stream lost" in r.message for r in caplog.records)
    # the stalled connection was given up after the stall timeout (not before, not much later): the reader's new
    # connect is accepted then
    noticed = server.clients[1].accepted - stall["paused"]
    assert FAST.stall_timeout_s - 0.2 <= noticed <= FAST.stall_timeout_s + 1.0, noticed
    # the frames received before the stall all came out (the decoder is flushed when the stream is lost)
    assert contiguous([n for n, _ in before]) and before[-1][0] == stall["last_sent"]
    assert after[0][1].gap_before and contiguous([n for n, _ in after])


def test_udp_frames_arrive(video):
    with ReplayServer(video, protocol="udp", gop=GOP) as server:
        assert server.url == f"udp://127.0.0.1:{server.port}"
        reader = StreamReader(Camera("roof", server.url), policy=FAST)
        frames = read(reader, server, lambda got: len(got) >= 40)
    reference = offline(server)
    indices = [n for n, _ in frames]
    assert len(frames) == 40 and contiguous(indices), indices
    assert reader.stats.connects == 1 and reader.stats.corrupt_packets == 0
    for n, frame in frames:
        np.testing.assert_array_equal(frame.image, reference[n])


def test_a_looped_video_keeps_its_timestamps_growing(tmp_path):
    path = encode(tmp_path / "short.mp4", pattern_frames(30, 48, 64), fps=FPS, codec="libx264", lossless=False)
    with ReplayServer(path, gop=GOP) as server:
        reader = StreamReader(Camera("loop", server.url), policy=FAST)
        frames = read(reader, server, lambda got: len(got) >= 70)  # 2.8 s: past two ends of a 1.2 s video
    reference = offline(server)
    indices = [n for n, _ in frames]
    assert len(frames) == 70 and contiguous(indices) and indices[-1] >= 2 * server.frame_count
    assert reader.stats.connects == 1 and reader.stats.gaps == 0 and reader.stats.corrupt_packets == 0
    assert not any(f.gap_before for _, f in frames)
    for n, frame in frames:
        np.testing.assert_array_equal(frame.image, reference[n % server.frame_count])
    np.testing.assert_allclose(np.diff([f.pts_s for _, f in frames]), 1 / FPS, atol=1e-4)


def test_a_video_that_does_not_loop_ends_after_its_last_frame(tmp_path):
    path = encode(tmp_path / "short.mp4", pattern_frames(30, 48, 64), fps=FPS, codec="libx264", lossless=False)
    with ReplayServer(path, gop=GOP, loop=False) as server:
        policy = ReconnectPolicy(initial_s=0.05, max_s=0.1, open_timeout_s=2.0, stall_timeout_s=1.0, give_up_after=2)
        reader = StreamReader(Camera("once", server.url), policy=policy)
        frames = read(reader, server, lambda got: False)  # ends by itself: the reconnects find nothing to play
    assert [n for n, _ in frames] == list(range(30))
    assert reader.stats.connects == 1 and reader.stats.failed_connects == 2
    assert server.clients[0].last_sent == 29 and server.clients[0].closed is not None


def test_a_damaged_packet_is_skipped_and_counted_and_the_stream_goes_on(tmp_path, caplog):
    """One 188-byte TS packet of frame 20 lost (as over a lossy link): the demuxer flags that frame's packet
    corrupt; the reader skips it, counts it, names the camera, and every other frame comes in order."""
    server = ReplayServer(encode(tmp_path / "v.mp4", pattern_frames(40, 48, 64), codec="libx264", lossless=False))
    chunks = list(server.chunks)
    chunks[20] = chunks[20][:2 * 188] + chunks[20][3 * 188:]
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(b"".join(chunks))
    reader = StreamReader(Camera("yard", str(damaged)))
    with caplog.at_level("WARNING"):
        frames = list(reader.frames())
    assert reader.stats.corrupt_packets == 1 and len(frames) == 39
    assert np.all(np.diff([f.pts_s for f in frames]) > 0)
    assert any("yard" in r.message and "corrupt" in r.message for r in caplog.records)
