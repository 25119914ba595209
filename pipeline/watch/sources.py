"""Live sources read with PyAV (FFmpeg): network streams, capture devices, files played at their native rate and files
still being written (``follow``: read as ``tail -f`` does, through :class:`pipeline.watch.growing.GrowingFile`),
reconnected with exponential backoff when they drop or stall. Tested on files (frames equal offline PyAV decoding,
realtime pacing), a followed MPEG-TS file being appended to, the refusal of a plain MP4 being written, a source
that never connects, and loopback streams (``pipeline.testing.replay``: TCP and UDP, a server killed and restarted
mid-stream, a stalled one).

A reader yields decoded RGB frames at the run's decode size with two clocks: the stream's own timestamp and the
camera's clock (seconds since its first frame ever: each connection starts at the monotonic time its first frame
arrived, so a 5 s outage shows as 5 s of clock with no frames, whatever the camera's timestamps do on a restart).

**Stalls.** FFmpeg's read timeout (``stall_timeout_s``) interrupts a network read that waits too long; a file read
on a hung disk, or a decoder that hangs, is not interrupted by it. So the frames of a connection are demuxed and
decoded under the decoders' watchdog (:mod:`data.watchdog`) at ``WATCHDOG_STALL_FACTOR`` times that timeout (plus
the follow idle timeout for a followed file, which waits for growth on purpose): a stalled stream is lost and
reconnected, as before; a stalled
file (which a reconnect would replay from its start) ends its camera, named as failed (``SourceStats.stalled``).
Under ``realtime`` pacing a jump in a file's timestamps of more than ``MAX_TIMESTAMP_GAP_S`` either way restarts
the pacing rather than being waited out (a broken timestamp 11 hours ahead would otherwise hold the camera).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from data.decode import decode_size
from data.watchdog import Stalled, watched
from pipeline.defaults import WATCH_STALL_TIMEOUT_S
from pipeline.watch.growing import IDLE_TIMEOUT_S, GrowingFile, check_streamable

log = logging.getLogger("pipeline.watch.sources")

BACKOFF_INITIAL_S = 1.0  # first wait after a drop or a failed connect
BACKOFF_MAX_S = 30.0  # the longest wait between attempts
BACKOFF_FACTOR = 2.0
OPEN_TIMEOUT_S = 10.0  # av.open's wait for the first bytes of a connection
STALL_TIMEOUT_S = WATCH_STALL_TIMEOUT_S  # no packet for this long: the stream is lost, reconnect
# The watchdog over a connection's reading and decoding (module docstring) fires at this many stall timeouts: a
# backstop for what FFmpeg's read timeout cannot interrupt (a hung decoder or disk), late enough that FFmpeg's own
# timeout, which flushes the decoder's last frames, always comes first on a stalled network stream.
WATCHDOG_STALL_FACTOR = 2.0
MAX_TIMESTAMP_GAP_S = 1.0  # a jump in timestamps larger than this inside a connection is a gap
FOLLOW_IDLE_TIMEOUT_S = IDLE_TIMEOUT_S  # a followed file that has not grown for this long is complete: it ends


@dataclass(frozen=True)
class Camera:
    """One source: a URL, a capture device (with ``format``, e.g. ``v4l2``) or a file; ``options`` are FFmpeg's
    (e.g. ``{"rtsp_transport": "tcp"}``); ``realtime`` paces a file at its native rate. ``follow`` reads a file
    still being written as ``tail -f`` does (``pipeline.watch.growing.GrowingFile``): at its end the reader waits for
    it to grow, and ends, as a complete file does (no reconnect), once it has not grown for the policy's
    ``follow_idle_timeout_s``. The recording must be streamable: MPEG-TS, Matroska/WebM or fragmented MP4
    (``ffmpeg -movflags frag_keyframe+empty_moov``); a plain MP4 being written is refused with a ValueError (its
    index is written at its end). ``format`` applies to a followed file too (e.g. ``mpegts``)."""

    name: str
    source: str
    realtime: bool = False
    follow: bool = False
    format: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        """A source that ends (no reconnect at its end): a file, followed or not (a followed one with ``format``)."""
        return self.follow or ("://" not in self.source and self.format is None)


@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff between attempts (``initial_s`` times ``factor`` per failure, at most ``max_s``), av.open's timeouts,
    the failed connects in a row after which a camera is given up (None: never), and how long a followed file may
    stop growing before it counts as complete (``follow_idle_timeout_s``; it replaces the stall timeout there)."""

    initial_s: float = BACKOFF_INITIAL_S
    max_s: float = BACKOFF_MAX_S
    factor: float = BACKOFF_FACTOR
    open_timeout_s: float = OPEN_TIMEOUT_S
    stall_timeout_s: float = STALL_TIMEOUT_S
    give_up_after: int | None = None
    follow_idle_timeout_s: float = FOLLOW_IDLE_TIMEOUT_S


@dataclass
class LiveFrame:
    """One decoded frame: uint8 ``[H, W, 3]`` RGB at each decode size asked for (``images``, in the order of the
    reader's ``sizes``; ``clip_image`` at the clip size, when asked), the stream's timestamp, the camera's clock,
    its arrival (``time.monotonic()``), its connection (0, 1, ...) and whether a reconnect or a timestamp jump
    precedes it."""

    images: tuple[np.ndarray, ...]
    clip_image: np.ndarray | None
    pts_s: float | None
    clock_s: float
    arrival: float
    connection: int
    gap_before: bool

    @property
    def image(self) -> np.ndarray:
        """The frame at the first decode size."""
        return self.images[0]


@dataclass
class SourceStats:
    """A camera's counters, for its log lines and the exit summary."""

    connects: int = 0
    failed_connects: int = 0
    reconnects: int = 0
    corrupt_packets: int = 0
    frames: int = 0
    gaps: int = 0
    last_error: str | None = None
    connected: bool = False
    stalled: bool = False  # a file source whose reading or decoding made no progress for the stall timeout


class StreamReader:
    """Frames of one camera across connections (:meth:`frames`), resized as ``data.decode.decode_size`` does: to
    ``short_side`` (None: full size; ``square``: squashed to a square), or to each ``(short_side, square)`` of
    ``sizes`` (a run whose backbones were decoded at several sizes, ``pipeline.extract.extractor.decode_groups``)."""

    def __init__(self, camera: Camera, *, short_side: int | None = None, square: bool = False,
                 sizes: list[tuple[int | None, bool]] | None = None, clip_short_side: int | None = None,
                 policy: ReconnectPolicy = ReconnectPolicy(), stop: threading.Event | None = None):
        self.camera = camera
        self.sizes = list(sizes) if sizes else [(short_side, square)]
        self.clip_short_side, self.policy = clip_short_side, policy
        self.stop = stop or threading.Event()
        self.stats = SourceStats()
        self._first_arrival: float | None = None
        self._hung = False  # the last connection's watchdog gave up on its reading thread

    def _stall_timeout_s(self) -> float:
        """How long a connection may give no frame (module docstring, stalls)."""
        extra = self.policy.follow_idle_timeout_s if self.camera.follow else 0.0
        return WATCHDOG_STALL_FACTOR * self.policy.stall_timeout_s + extra

    def _open(self):
        import av

        if self.camera.follow:
            # no av.open timeout: its interrupt would cut a read waiting for the file to grow; the idle timeout
            # ends the stream instead
            growing = GrowingFile(self.camera.source, stop=self.stop,
                                  idle_timeout_s=self.policy.follow_idle_timeout_s)
            try:
                return av.open(growing, format=self.camera.format, options=dict(self.camera.options))
            except BaseException:
                growing.close()
                raise
        return av.open(self.camera.source, format=self.camera.format, options=dict(self.camera.options),
                       timeout=(self.policy.open_timeout_s, self.policy.stall_timeout_s))

    def frames(self) -> Iterator[LiveFrame]:
        """Until ``stop`` is set, a file ends (a followed one: stops growing) or the camera is given up. Raises
        ValueError for ``follow`` on a plain MP4 being written (not streamable, see ``pipeline.watch.growing``)."""
        if self.camera.follow and os.path.exists(self.camera.source):  # missing: not started yet, retried as a connect
            check_streamable(self.camera.source, stop=self.stop, idle_timeout_s=self.policy.follow_idle_timeout_s)
        wait, failures, connection = self.policy.initial_s, 0, -1
        while not self.stop.is_set():
            try:
                container = self._open()
            except Exception as exc:  # FFmpeg's error types for refused, unreachable, unknown sources
                failures += 1
                self.stats.failed_connects += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if self.policy.give_up_after is not None and failures >= self.policy.give_up_after:
                    log.error("%s: cannot connect to %s (%s), giving up after %d attempts", self.camera.name,
                              self.camera.source, self.stats.last_error, failures)
                    return
                log.warning("%s: cannot connect to %s (%s), attempt %d; next in %.1f s", self.camera.name,
                            self.camera.source, self.stats.last_error, failures, wait)
                self.stop.wait(wait)
                wait = min(wait * self.policy.factor, self.policy.max_s)
                continue
            failures, wait = 0, self.policy.initial_s
            connection += 1
            self.stats.connects += 1
            self.stats.reconnects = max(0, self.stats.connects - 1)
            self.stats.connected = True
            ended = yield from self._read(container, connection)
            self.stats.connected = False
            if self._hung:  # the watchdog's thread may still be inside the container: leave it open, abandoned
                self._hung = False
            else:
                container.close()
            if self.stats.stalled:
                log.error("%s: %s made no progress for %g s (%s); this camera stops", self.camera.name,
                          self.camera.source, self._stall_timeout_s(), self.stats.last_error)
                return
            if ended and self.camera.is_file:
                return
            if not self.stop.is_set():
                log.warning("%s: stream lost (%s); reconnecting in %.1f s", self.camera.name,
                            self.stats.last_error or "it ended", wait)
                self.stop.wait(wait)
        return

    def _read(self, container, connection: int):
        """Yields the frames of one connection; returns True when the source ended, False when it was lost."""
        import av

        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        size = clip = None
        first_pts = origin = last_pts = None
        started = time.monotonic()
        lost = []

        def packets():
            try:
                yield from container.demux(stream)
            except av.FFmpegError as exc:  # dropped, or stalled (the read timeout's interrupt): the source is lost
                lost.append(exc)
                # an empty packet flushes the decoder: the frames its threads still hold arrived before the loss
                # (it carries the time base, as the demuxer's own flush packet at an end does)
                flush = av.Packet()
                flush.time_base = stream.time_base
                yield flush

        def decoded():
            """The connection's frames, demuxed and decoded (in the watchdog's thread)."""
            for packet in packets():
                if self.stop.is_set():
                    return
                if packet.is_corrupt:  # the demuxer saw damage (e.g. lost TS packets): skip it rather than show it
                    self.stats.corrupt_packets += 1
                    if self.stats.corrupt_packets == 1 or self.stats.corrupt_packets % 100 == 0:
                        log.warning("%s: %d corrupt packet(s) skipped so far", self.camera.name,
                                    self.stats.corrupt_packets)
                    continue
                try:
                    frames = stream.decode(packet)
                except av.FFmpegError:
                    self.stats.corrupt_packets += 1
                    continue
                yield from frames

        try:
            for frame in watched(decoded(), self._stall_timeout_s(), name=f"camera {self.camera.name}"):
                if self.stop.is_set():
                    return False
                if size is None:
                    size = [decode_size(frame.width, frame.height, side, sq) for side, sq in self.sizes]
                    if self.clip_short_side:
                        clip = decode_size(frame.width, frame.height, self.clip_short_side)
                pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                now = time.monotonic()
                if first_pts is None:
                    first_pts = pts or 0.0
                    if self._first_arrival is None:
                        self._first_arrival = now
                    origin = now - self._first_arrival
                rel = (pts - first_pts) if pts is not None else 0.0
                gap = connection > 0 and last_pts is None
                if pts is not None and last_pts is not None and pts - last_pts > MAX_TIMESTAMP_GAP_S:
                    gap = True
                    self.stats.gaps += 1
                last_pts = pts if pts is not None else last_pts
                if self.camera.realtime and self.camera.is_file:  # a live source paces itself
                    delay = started + rel - time.monotonic()
                    if abs(delay) > MAX_TIMESTAMP_GAP_S:  # a jump in the timestamps: pace on from this frame
                        started, delay = time.monotonic() - rel, 0.0
                    if delay > 0 and self.stop.wait(delay):
                        return False
                images = tuple(frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="BILINEAR")
                               for w, h in size)
                clip_image = (frame.to_ndarray(format="rgb24", width=clip[0], height=clip[1],
                                               interpolation="BILINEAR") if clip else None)
                self.stats.frames += 1
                yield LiveFrame(images, clip_image, pts, origin + rel, time.monotonic(), connection, gap)
        except Stalled as exc:
            self._hung = True
            lost.append(exc)
            self.stats.stalled = self.camera.is_file and not self.stop.is_set()
        except av.FFmpegError as exc:
            lost.append(exc)
        if lost:
            self.stats.last_error = f"{type(lost[0]).__name__}: {lost[0]}"
            return False
        return True
