"""Event clips with pre- and post-roll: :class:`ClipRecorder` keeps one camera's last ``pre_roll_s`` of frames in a
ring buffer (flat memory) and, when an event opens, writes them and every following frame to
``<folder>/<camera>/<event_id>.mp4`` until ``post_roll_s`` after the event closed. Frames are encoded as they come;
a clip is never held in memory.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.defaults import WATCH_POST_ROLL_S, WATCH_PRE_ROLL_S

log = logging.getLogger("pipeline.watch.clips")

PRE_ROLL_S = WATCH_PRE_ROLL_S  # seconds of frames before the event's start kept and written first
POST_ROLL_S = WATCH_POST_ROLL_S  # seconds written after the event closed
CODECS = ("libx264", "mpeg4")  # tried in order; mpeg4 where FFmpeg was built without x264
PIX_FMT = "yuv420p"  # plays everywhere; needs even width and height
CRF = "23"  # libx264 quality (FFmpeg's default; review footage, not archival)
TIME_BASE_HZ = 1000  # stream time base: milliseconds of the camera clock


class ClipRecorder:
    """One camera's clips. ``push`` (camera thread), ``start`` / ``stop`` (scoring thread) and ``close`` are
    thread-safe (one lock). One clip at a time: a ``start`` while a clip is still in its post-roll continues that
    clip (overlapping events share a file)."""

    def __init__(self, folder: Path, camera: str, fps: float, *, pre_roll_s: float = PRE_ROLL_S,
                 post_roll_s: float = POST_ROLL_S):
        if fps <= 0:
            raise ValueError(f"{camera}: clip fps must be positive, got {fps}")
        self.folder = Path(folder)
        self.camera = camera
        self.fps = float(fps)
        self.pre_roll_s = float(pre_roll_s)
        self.post_roll_s = float(post_roll_s)
        self._ring: collections.deque[tuple[np.ndarray, float]] = collections.deque(
            maxlen=max(1, math.ceil(self.pre_roll_s * self.fps)))
        self._lock = threading.Lock()
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None  # (H, W) written, even
        self._stop_at: float | None = None  # clock at which the open clip ends
        self._first_clock = 0.0
        self._last_pts = -1
        self._active = False  # a clip is being recorded (its file opens at its first frame)
        self.path: Path | None = None  # the open (or last) clip
        self.frames_written = 0  # frames in the open (or last) clip
        self.clips: list[Path] = []  # every clip finished so far

    @property
    def recording(self) -> bool:
        return self._active

    def push(self, image: np.ndarray, clock_s: float) -> None:
        """One frame, uint8 ``[H, W, 3]`` RGB, at ``clock_s`` on the camera clock."""
        with self._lock:
            if not self._active:
                self._ring.append((image, float(clock_s)))
                return
            if self._stop_at is not None and clock_s > self._stop_at:
                self._finish()
                self._ring.append((image, float(clock_s)))
                return
            self._write(image, float(clock_s))

    def start(self, event_id: str, clock_s: float) -> Path:
        """Open ``<folder>/<camera>/<event_id>.mp4`` for an event that started at ``clock_s``: the ring buffer's
        frames from ``clock_s - pre_roll_s`` on go first. Returns the clip's path."""
        with self._lock:
            if self._active:  # still in the previous clip's post-roll: keep writing it
                self._stop_at = None
                return self.path
            frames = [(im, c) for im, c in self._ring if c >= clock_s - self.pre_roll_s - 1e-9]
            self._ring.clear()
            path = self.folder / self.camera / f"{event_id}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.path = path
            self._stop_at = None
            self.frames_written = 0
            self._last_pts = -1
            self._first_clock = frames[0][1] if frames else float(clock_s)
            self._active = True  # the file opens at the first frame written (its size)
            for image, clock in frames:
                self._write(image, clock)
            log.info("%s: clip %s started", self.camera, path)
            return path

    def stop(self, clock_s: float) -> None:
        """The event closed at ``clock_s``: keep writing until ``clock_s + post_roll_s``, then close the file."""
        with self._lock:
            if not self._active:
                return
            self._stop_at = float(clock_s) + self.post_roll_s

    def close(self) -> None:
        """Finish any open clip now (shutdown, stream end)."""
        with self._lock:
            self._finish()

    def _write(self, image: np.ndarray, clock: float) -> None:
        if self._container is None:
            self._open(image)
        h, w = self._size
        image = np.ascontiguousarray(image[:h, :w])  # crop odd sizes by one pixel (yuv420p needs even sizes)
        if image.shape[:2] != (h, w):  # a frame smaller than the first one: pad with black
            padded = np.zeros((h, w, 3), dtype=np.uint8)
            padded[:image.shape[0], :image.shape[1]] = image
            image = padded
        pts = max(self._last_pts + 1, round((clock - self._first_clock) * TIME_BASE_HZ))
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = Fraction(1, TIME_BASE_HZ)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def _open(self, image: np.ndarray) -> None:
        path = self.path
        h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        if h == 0 or w == 0:
            raise ValueError(f"{self.camera}: frame of shape {image.shape} is too small for a clip")
        last_error = None
        for codec in CODECS:
            container = av.open(str(path), mode="w")
            try:
                stream = container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = w, h, PIX_FMT
                stream.time_base = Fraction(1, TIME_BASE_HZ)
                stream.codec_context.time_base = Fraction(1, TIME_BASE_HZ)
                if codec == "libx264":
                    stream.options = {"crf": CRF}
                stream.codec_context.open()  # fail here (not at the first frame) when the encoder is missing
            except Exception as error:  # encoder not built into this FFmpeg: try the next one
                last_error = error
                container.close()
                continue
            self._container, self._stream, self._size = container, stream, (h, w)
            return
        raise RuntimeError(f"{self.camera}: no video encoder for clips among {CODECS} ({last_error}); install "
                           f"an FFmpeg/PyAV build with libx264")

    def _finish(self) -> None:
        if self._container is not None:
            try:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            finally:
                self._container.close()
            self.clips.append(self.path)
            log.info("%s: clip %s closed (%d frames)", self.camera, self.path, self.frames_written)
        self._container = self._stream = None
        self._active = False
        self._stop_at = None
