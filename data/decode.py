"""One decoder interface over decord, PyAV and folders of frames.

Frames are read **sequentially** and handed out as 16-frame snippets. Random access is never used: decord's
and PyAV's seeking return wrong frames on some AVI / B-frame files, while sequential reads were exact in every
decoder we measured. Only one snippet is held at a time, so memory stays bounded for hour-long videos.

``open_video(path)`` probes the file with PyAV (container metadata: codec, fps, size, declared frame count and
duration), then decodes with decord, falling back to PyAV when decord cannot open the file.

**Timelines.** ``timeline="constant"`` (the default) hands out the frames a player shows: every decoded frame is
placed by its timestamp on a constant-rate grid at the stream's nominal rate (PyAV's ``guessed_rate``, what
ffmpeg's ``-vsync cfr`` / ``fps`` filter use), slot ``floor((t - t_first) * rate + 1/2)``; grid slot j shows the
latest frame whose slot is at most j, so a gap in the timestamps repeats the previous frame and two frames in one
slot keep the later one (the earlier is dropped), as ffmpeg's ``fps`` filter does. The last frame lasts until its
own end (its duration, else one grid step). N, the snippets and ``info.fps`` all come from that grid, so frame j is
at ``j / fps`` seconds, the time annotations and alerts refer to. ``timeline="decoded"`` hands out each decoded
frame once, in order, whatever its timestamp (the behaviour of before; ``info.fps`` is the container's average
rate). A constant-rate file gives the same frames either way: each frame lands in its own slot. A folder of frames
is constant by definition. Repeated frames are written into the snippet buffer one at a time, never stored, so a
10 s gap at 25 fps costs 250 copies into a 16-frame buffer, not 250 frames of memory.

**Truncation** is judged by time: the end of the last decoded frame against the duration the container declares
for the video stream (``TRUNCATION_TOLERANCE_*``), in both timelines, so a valid variable-frame-rate file with fewer
coded frames than its declared frame count (AVI's skipped frames) is not truncated. Only a file that declares no
duration, or whose frames carry no timestamps, falls back to comparing frame counts.

**Broken timestamps.** A frame whose timestamp is missing, not finite (decord reports a packet without one as
about -3.7e17 s, or NaN), more than one grid step before the previous frame's (a jitter under that is placed by the
rule above), or more than ``MAX_TIMESTAMP_JUMP_S`` after it (phones, old DVRs, MPEG-4 AVIs with packed B-frames)
cannot be placed: from that frame on the timeline falls back to the decoded order at the nominal rate (one grid
frame each, as ``timeline="decoded"``), with a warning naming the file, and truncation is judged by frame counts.
A constant timeline of more than ``TIMELINE_LIMIT_FACTOR`` times the length the container declares (frames, or
duration at the nominal rate) is refused with :class:`VideoError` as soon as it passes that bound, so no file can
make a decoder hand out repeated frames without end.

**Watchdog.** ``open_video(..., stall_timeout_s=)`` (default ``DECODE_STALL_TIMEOUT_S``, 60 s) decodes the snippets
in a helper thread (:mod:`data.watchdog`): a snippet that takes longer raises :class:`VideoError` naming the file,
so a decoder that hangs fails its video and the caller goes on (the hung thread is abandoned, its decoder left open).

Long: both backends (decord, PyAV) behind one timeline rule and one snippet grid; apart, the rule they must agree on
would be written twice.
"""

from __future__ import annotations

import abc
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from data.errors import VideoError
from data.watchdog import DECODE_STALL_TIMEOUT_S, Stalled, watched

# Frames per snippet (method.md §1): the unit every backbone sees and every snippet score covers. The one
# definition: extractors, ground truth, metrics and the synthetic data all import it from here.
SNIPPET_FRAMES = 16
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".3gp", ".ogv", ".gif")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
FRAME_FOLDER_FPS = 25.0  # frame rate assumed for a folder of frames unless the caller gives one
# A file whose decoded frames end earlier than its container's declared duration by more than this many frames
# (at the nominal rate) and this fraction of the duration is reported as truncated instead of silently giving
# fewer snippets (frame counts are compared instead when the container declares no duration).
TRUNCATION_TOLERANCE_FRAMES = 2
TRUNCATION_TOLERANCE_FRACTION = 0.01
BACKENDS = ("auto", "decord", "pyav")
TIMELINES = ("constant", "decoded")
# The presentation timeline by default: annotations (frame labels, intervals) and detect's alerts refer to the
# frames a player shows, which a variable-frame-rate file only gives on the constant-rate grid; constant-rate files
# decode to exactly the same frames either way, so their features do not change (the default is left out of the
# extractor fingerprint, pipeline.extract).
DEFAULT_TIMELINE = "constant"
# Resizing while decoding: libswscale converts YUV->RGB and scales in one pass, ~20x cheaper than resizing
# decoded RGB frames in torch on a CPU. decord's `width/height` and PyAV's `interpolation="BILINEAR"` both use
# swscale's bilinear filter (measured equal to within one grey level), which widens with the downscale factor,
# so it is antialiased like torchvision's `antialias=True` bilinear resize.
DECODE_RESIZE_FILTER = "swscale-bilinear"
# Broken timestamps (module docstring): a forward jump between two consecutive frames' timestamps beyond this is
# taken for a broken timestamp, not a gap in the recording (a valid file's gaps are the pauses of a recorder, and a
# file rarely holds an hour of nothing).
MAX_TIMESTAMP_JUMP_S = 3600.0
# A timestamp further than this from the stream's start is garbage whatever came before it (decord reports a packet
# without a timestamp as int64's minimum times the time base): about 30 years, past any recording.
ABSURD_TIMESTAMP_S = 1e9
# A constant timeline longer than this many times the container's declared length is refused: a valid
# variable-frame-rate file ends within its declared duration (TRUNCATION_TOLERANCE_* aside), so 3x is far beyond any
# valid file and still bounds the work a broken one can cause.
TIMELINE_LIMIT_FACTOR = 3
REMUX_FIX = ("re-mux it with fresh timestamps (ffmpeg -fflags +genpts -i IN -c copy OUT), or extract it with "
             "--timeline decoded (every decoded frame once)")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What a decoder knows about a video. ``n_frames`` is the count of frames handed out (set after a full read:
    grid frames on the constant timeline, decoded frames on the decoded one); ``decoded_frames`` the coded frames
    actually decoded; ``declared_frames`` the container's own count (0 when unknown). ``fps`` is the rate the frames
    are handed out at: the grid's (``nominal_fps``) on the constant timeline, the container's average rate on the
    decoded one."""

    path: str
    fps: float
    width: int
    height: int
    codec: str
    backend: str
    declared_frames: int = 0
    n_frames: int | None = None
    out_width: int = 0  # size of the frames handed out (differs from width/height when resized while decoding)
    out_height: int = 0
    nominal_fps: float = 0.0  # the stream's nominal rate (ffmpeg's guess), the constant timeline's grid
    declared_duration: float = 0.0  # seconds the container declares for the video stream (0 when unknown)
    timeline: str = DEFAULT_TIMELINE
    decoded_frames: int | None = None

    @property
    def resized(self) -> bool:
        return (self.out_width, self.out_height) != (self.width, self.height)


def decode_size(width: int, height: int, short_side: int | None, square: bool = False) -> tuple[int, int]:
    """(width, height) frames are decoded at: the original size (``short_side`` None), the short side scaled to
    ``short_side``, or ``short_side`` x ``short_side`` (``square``: the whole frame squashed, one resize)."""
    if not short_side:
        return width, height
    return (short_side, short_side) if square else short_side_size(width, height, short_side)


def short_side_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side scaled to ``short_side``; the long side truncated as torchvision does."""
    if width <= height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def _grid_slot(t, origin, rate) -> int:
    """The constant-rate grid slot of a frame starting at ``t`` seconds: nearest, halves up (ffmpeg's default
    rounding). Exact with Fractions (PyAV's timestamps), to float precision with floats (decord's)."""
    return math.floor((t - origin) * rate + Fraction(1, 2))


class Timeline:
    """Places decoded frames on the timeline one at a time (PyAV: the frames stream in and a frame's slot count is
    known only once the next frame's timestamp is). The rule is :func:`grid_counts`'s, which places a whole list
    of timestamps at once (decord knows them all before decoding).

    ``first(start)`` for the first decoded frame; ``place(start)`` for each later one returns how many grid frames
    the previous one fills (0: dropped, a duplicate of its slot; more than 1: repeated over a gap); ``finish(end)``
    the count of the last frame, which lasts until ``end`` (None: one grid step) and is shown at least once. On the
    decoded timeline every count is 1. Times are seconds from the stream's start; a start that cannot be placed
    (:func:`timestamp_problem`: None, not finite, going back, an absurd jump) switches the timeline to the decoded
    order for the rest of the video (:meth:`fall_back`: the reason in ``broken``, warned once naming ``path``): each
    frame then starts one grid step after the previous one.
    """

    def __init__(self, kind: str, rate: Fraction | float, path: str = ""):
        self.constant = kind == "constant" and rate > 0
        self.rate = rate if rate > 0 else Fraction(FRAME_FOLDER_FPS)
        self.path = path
        self.emitted = 0  # grid frames handed out so far
        self.origin = None
        self.last_start = None
        self.frames = 0  # frames placed so far
        self.timed = True  # every frame had a usable timestamp
        self.broken: str | None = None  # why the timestamps were given up (None: they were not)
        self.end: Fraction | float | None = None  # end of the last frame, seconds from the stream's start

    def fall_back(self, reason: str) -> None:
        """Place every later frame one grid step after the previous one (the decoded order), warning once."""
        if self.broken is None:
            self.broken = reason
            self.timed = False
            if self.constant:  # the decoded timeline never used them
                warn_broken_timestamps(self.path, reason, self.rate)

    def _start(self, start):
        if self.broken is None:
            problem = timestamp_problem(self.last_start, start, self.frames, self.rate)
            if problem:
                self.fall_back(problem)
        if self.broken is not None:
            start = 0 if self.last_start is None else self.last_start + 1 / self.rate
        if self.origin is None:
            self.origin = start
        self.last_start = start
        self.frames += 1
        return start

    def first(self, start) -> None:
        self._start(start)

    def place(self, start) -> int:
        start = self._start(start)
        if not self.constant:
            return 1
        count = max(0, _grid_slot(start, self.origin, self.rate) - self.emitted)
        self.emitted += count
        return count

    def finish(self, end) -> int:
        """Count of the last frame (the one ``first`` or ``place`` saw last), which lasts until ``end``."""
        start = self.last_start
        usable = (self.broken is None and end is not None and math.isfinite(end) and start < end
                  <= start + MAX_TIMESTAMP_JUMP_S)
        self.end = end if usable else start + 1 / self.rate
        if not self.constant:
            return 1
        count = max(1, _grid_slot(self.end, self.origin, self.rate) - self.emitted)
        self.emitted += count
        return count


def timestamp_problem(previous, start, index: int, rate) -> str | None:
    """Why frame ``index`` starting at ``start`` seconds (None: no timestamp) cannot be placed after a frame starting
    at ``previous`` (None: it is the first) on a grid of ``rate`` frames a second, or None when it can (module
    docstring, broken timestamps)."""
    if start is None:
        return f"frame {index} has no timestamp"
    if not math.isfinite(start):
        return f"frame {index} has the timestamp {float(start)}"
    if abs(start) > ABSURD_TIMESTAMP_S:
        return f"frame {index} has the timestamp {float(start):.4g} s"
    if previous is None:
        return None
    if start < previous - 1 / rate:
        return (f"frame {index}'s timestamp {float(start):.3f} s goes back from the previous frame's "
                f"{float(previous):.3f} s")
    if start - previous > MAX_TIMESTAMP_JUMP_S:
        return f"the timestamps jump by {float(start - previous):.4g} s at frame {index}"
    return None


def warn_broken_timestamps(path: str, reason: str, rate) -> None:
    log.warning("%s: broken timestamps (%s): from there on, frames are placed in their decoded order at the nominal "
                "%.4g fps; %s", path, reason, float(rate), REMUX_FIX)


def placeable_starts(starts: np.ndarray, rate: float) -> tuple[np.ndarray, str | None]:
    """float64 ``[n]`` starts every frame can be placed by, and why the timestamps were given up (None: they were
    not): :func:`timestamp_problem` applied in order (vectorised), the starts from the first frame that cannot be
    placed on replaced by one grid step after the previous one, as :class:`Timeline` does while streaming."""
    starts = np.asarray(starts, dtype=np.float64)
    n = len(starts)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(starts) | (np.abs(starts) > ABSURD_TIMESTAMP_S)
        if n > 1:
            steps = np.diff(starts)
            bad[1:] |= ~(steps >= -1 / rate) | (steps > MAX_TIMESTAMP_JUMP_S)  # NaN steps are bad too
    if not bad.any():
        return starts, None
    first = int(np.argmax(bad))
    reason = timestamp_problem(None if first == 0 else starts[first - 1], starts[first], first, rate)
    fixed = starts.copy()
    base = fixed[first - 1] if first else 0.0
    fixed[first:] = base + np.arange(0 if first == 0 else 1, n - first + (0 if first == 0 else 1)) / rate
    return fixed, reason


def grid_counts(starts: np.ndarray, end: float, rate: float) -> np.ndarray:
    """int64 ``[n]``: how many grid frames each of ``n`` decoded frames fills on the constant timeline (the rule of
    :class:`Timeline`, vectorised). ``starts`` float64 ``[n]`` seconds in decoding order, ``end`` the end of the
    last frame. The grid frames handed out after frame i are the running maximum of the next frames' slots (slot j
    shows the latest frame whose slot is at most j); the last frame is shown until ``end``, at least once."""
    n = len(starts)
    slots = np.floor((starts - starts[0]) * rate + 0.5).astype(np.int64)
    emitted = np.maximum.accumulate(np.maximum(slots[1:], 0)) if n > 1 else np.zeros(0, dtype=np.int64)
    before_last = int(emitted[-1]) if n > 1 else 0
    final = max(before_last + 1, math.floor((end - starts[0]) * rate + 0.5))
    return np.diff(np.concatenate([emitted, [final]]), prepend=0)


def _needed(first: int, count: int, needed: frozenset[int] | None, size: int) -> bool:
    """Whether a frame handed out at grid positions ``first .. first + count - 1`` lands on a snippet position the
    consumer reads."""
    if count <= 0:
        return False
    if needed is None or count >= size:
        return True
    return any((first + k) % size in needed for k in range(count))


class VideoDecoder(abc.ABC):
    """Sequential RGB frames of one video on its timeline (see the module docstring). Use as a context manager or
    call :meth:`close`.

    ``needed``: the positions within each 16-frame snippet that the consumer reads (None: all). A hint only: the
    other positions' pixels are unspecified (zeros, or a repeated frame's copy; a frame that lands only on them is
    not converted: decord skips its colour conversion and copy, a quarter of the decoding time at low resolution
    when every other frame is read, and PyAV its RGB conversion), so consumers must not read them; frame counting,
    truncation checks and snippet boundaries are unchanged.
    """

    info: VideoInfo
    needed: tuple[int, ...] | None = None
    stall_timeout_s: float | None = None  # watchdog (module docstring); None: snippets are decoded in the caller
    _stalled = False  # the watchdog gave up on the decoding thread, which still holds the decoder

    @abc.abstractmethod
    def _placed_frames(self, size: int) -> Iterator[tuple[np.ndarray | None, int]]:
        """Yields ``(frame, count)`` in display order: a uint8 ``[H, W, 3]`` frame (None when none of its positions
        is needed) handed out ``count`` times (0: dropped). Afterwards ``self._timeline`` holds the last frame's end
        and ``self._decoded`` the number of coded frames decoded."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self._stalled:  # a hung decoding thread may still be inside the decoder: leave it open
            self.close()

    @property
    def _needed_set(self) -> frozenset[int] | None:
        return frozenset(self.needed) if self.needed is not None else None

    def snippets(self, size: int = SNIPPET_FRAMES) -> Iterator[np.ndarray]:
        """Yields uint8 ``[size, H, W, 3]`` snippets of consecutive frames; a trailing partial snippet is dropped.

        After the generator is exhausted, ``self.info.n_frames`` holds the number of frames handed out (on the
        timeline) and ``self.info.decoded_frames`` the number decoded. Raises :class:`VideoError` when the stream is
        truncated, the frame size changes mid-stream, the timestamps are broken beyond use (module docstring) or,
        with ``stall_timeout_s``, a snippet takes longer than that to decode.
        """
        if not self.stall_timeout_s:
            yield from self._snippets(size)
            return
        try:
            yield from watched(self._snippets(size), self.stall_timeout_s, name=f"decode {Path(self.info.path).name}")
        except Stalled as exc:
            self._stalled = True
            raise VideoError(self.info.path, f"decoding made no progress for {exc.timeout_s:g} s (the decoder hung "
                             "on it, or the disk holding it stopped answering)",
                             "re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT) or check its disk; --decode-timeout "
                             "SECONDS allows a longer wait") from None

    def _snippets(self, size: int) -> Iterator[np.ndarray]:
        self._decoded = 0
        self._timeline: Timeline | None = None
        buf = None
        filled = 0
        handed = 0
        limit = self._frame_limit()
        for frame, count in self._placed_frames(size):
            if limit is not None and handed + count > limit:
                self._refuse_timeline(handed + count, limit)
            if frame is not None:
                if buf is None:
                    buf = np.zeros((size, *frame.shape), dtype=np.uint8)
                if frame.shape != buf.shape[1:]:
                    raise VideoError(self.info.path, f"frame size changed from {buf.shape[2]}x{buf.shape[1]} to "
                                     f"{frame.shape[1]}x{frame.shape[0]} at frame {handed}",
                                     "re-encode the video at one resolution (e.g. ffmpeg -vf scale=W:H)")
            elif buf is None and count > 0:
                buf = np.zeros((size, self.info.out_height, self.info.out_width, 3), dtype=np.uint8)
            for _ in range(count):  # a repeated frame is copied into the buffer, never stored
                if frame is not None:
                    buf[filled] = frame
                else:
                    buf[filled] = 0
                filled += 1
                handed += 1
                if filled == size:
                    yield buf.copy()
                    filled = 0
        self.info = replace(self.info, n_frames=handed, decoded_frames=self._decoded)
        self._check_complete()

    def _frame_limit(self) -> int | None:
        """The most grid frames the constant timeline may hand out (``TIMELINE_LIMIT_FACTOR`` times the declared
        length); None on the decoded timeline, for a folder of frames, or when the container declares nothing."""
        if self.info.timeline != "constant" or self.info.backend == "frames":
            return None
        rate = self.info.nominal_fps or self.info.fps
        declared = max(self.info.declared_frames, self.info.declared_duration * rate if rate else 0.0)
        return math.ceil(TIMELINE_LIMIT_FACTOR * declared) if declared > 0 else None

    def _refuse_timeline(self, frames: int, limit: int) -> None:
        rate = self.info.nominal_fps or self.info.fps
        declared = " and ".join(x for x in (
            f"{self.info.declared_frames} frames" if self.info.declared_frames else "",
            f"{self.info.declared_duration:.2f} s" if self.info.declared_duration else "") if x)
        raise VideoError(self.info.path, f"broken timestamps: they spread its {self._decoded} decoded frames over more "
                         f"than {frames} frames ({frames / rate:.4g} s at {rate:.4g} fps), over "
                         f"{TIMELINE_LIMIT_FACTOR}x the {declared} the container declares", REMUX_FIX)

    def _check_complete(self) -> None:
        decoded = self._decoded
        if decoded == 0:
            raise VideoError(self.info.path, "no frame could be decoded (corrupt or truncated file)",
                             "re-download or re-encode the file")
        declared_s = self.info.declared_duration
        timeline = self._timeline
        if declared_s > 0 and timeline is not None and timeline.timed and timeline.end is not None:
            rate = self.info.nominal_fps or self.info.fps or FRAME_FOLDER_FPS
            missing_s = declared_s - float(timeline.end)
            if missing_s > max(TRUNCATION_TOLERANCE_FRAMES / rate, TRUNCATION_TOLERANCE_FRACTION * declared_s):
                raise VideoError(self.info.path, f"truncated: the decoded frames end at {float(timeline.end):.2f} s "
                                 f"of the {declared_s:.2f} s the container declares ({decoded} frames decoded)",
                                 "re-download or re-encode the file")
            return
        declared = self.info.declared_frames
        if declared <= 0:
            return
        missing = declared - decoded
        if missing > max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE_FRACTION * declared):
            raise VideoError(self.info.path, f"truncated: decoded {decoded} of the {declared} frames the "
                             "container declares", "re-download or re-encode the file")


def _declared_duration(stream, container, nominal_fps: float) -> float:
    """Seconds the container declares for the video stream: its own duration, else Matroska's per-stream
    ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``); 0 when unknown. The container's overall duration is not used: it
    covers the audio too, which may run longer. An AVI's header counts the stream's frame slots, skipped (empty)
    frames included (``dwLength``), so ``frames / rate`` is its declared length; libavformat's duration of an AVI
    whose index is lost (a truncated file) is only what it found while scanning."""
    seconds = 0.0
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
        match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tag.strip()) if tag else None
        if match:
            hours, minutes, secs = match.groups()
            seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    if "avi" in (container.format.name or "").split(",") and stream.frames and nominal_fps > 0:
        seconds = max(seconds, stream.frames / nominal_fps)
    return seconds


def _probe(path: str) -> VideoInfo:
    """Container metadata via PyAV, without decoding. Raises VideoError when there is no video stream."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoError(path, "the file has no video stream", "pass a video file")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate or stream.guessed_rate
            nominal = stream.guessed_rate or stream.base_rate or stream.average_rate
            nominal = float(nominal) if nominal else 0.0
            return VideoInfo(path=path, fps=float(rate) if rate else 0.0, width=stream.codec_context.width,
                             height=stream.codec_context.height, codec=stream.codec_context.name,
                             backend="", declared_frames=int(stream.frames or 0), nominal_fps=nominal,
                             declared_duration=_declared_duration(stream, container, nominal))
    except VideoError:
        raise
    except Exception as exc:  # PyAV raises many error types for unreadable input
        raise VideoError(path, f"not a readable video ({type(exc).__name__}: {exc})",
                         "check that the file is a complete video (e.g. play it with ffprobe/ffplay)") from exc


def _rate(info: VideoInfo) -> Fraction:
    """The grid rate as an exact fraction (the probe's float, e.g. 30000/1001 from 29.97002997...)."""
    return Fraction(info.nominal_fps).limit_denominator(100_000) if info.nominal_fps > 0 else Fraction(0)


class DecordDecoder(VideoDecoder):
    """decord backend: consecutive ascending index batches, never a seek backwards or a jump. decord knows every
    frame's timestamp before decoding, so the whole timeline is placed first (:func:`grid_counts`) and frames that
    are dropped or land only on positions nobody reads are not converted."""

    BATCH = SNIPPET_FRAMES

    def __init__(self, path: str, info: VideoInfo):
        import decord

        size = {"width": info.out_width, "height": info.out_height} if info.resized else {}
        self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, **size)
        self.info = replace(info, backend="decord")

    def _counts(self, n: int) -> np.ndarray:
        """Grid frames per decoded frame (all 1 on the decoded timeline); sets ``self._timeline``'s end."""
        times = np.asarray(self._reader.get_frame_timestamp(list(range(n)))).reshape(n, 2)  # float32 [start, end]
        rate = float(_rate(self.info))
        # 8 bytes a frame: 2.6 MB for an hour at 90 fps
        self._starts, broken = placeable_starts(times[:, 0], rate or FRAME_FOLDER_FPS)
        timeline = self._timeline = Timeline(self.info.timeline, rate, self.info.path)
        if broken:
            timeline.fall_back(broken)
        timeline.first(float(self._starts[0]))
        timeline.last_start = float(self._starts[-1])  # the end of the video is all the truncation check needs
        timeline.finish(None if broken else float(times[-1, 1]))
        if not timeline.constant:
            return np.ones(n, dtype=np.int64)
        return grid_counts(self._starts, float(timeline.end), rate)

    def _placed_frames(self, size: int) -> Iterator[tuple[np.ndarray | None, int]]:
        n = len(self._reader)
        if n == 0:
            return
        counts = self._counts(n)
        needed = self._needed_set
        first = 0  # grid position of the next frame's first copy
        for start in range(0, n, self.BATCH):
            stop = min(start + self.BATCH, n)
            keep = []
            for i in range(start, stop):
                if _needed(first, int(counts[i]), needed, size):
                    keep.append(i)
                first += int(counts[i])
            # Still decoded in order (inter-coded frames need their references), but only the kept frames are
            # converted and copied out.
            try:
                frames = self._reader.get_batch(keep).asnumpy() if keep else None
            except Exception as exc:  # decord's DECORDError: a damaged packet part-way through
                # decord's decoding thread reads ahead, so where the damage lies is not known to the frame (it may
                # fail on the first batch of a file damaged at its end): the video fails by name. PyAV decodes up to
                # the damage and judges truncation by time.
                declared = f" of the {self.info.declared_duration:.2f} s the container declares" \
                    if self.info.declared_duration else ""
                raise VideoError(self.info.path, f"truncated or damaged: decord stopped decoding at "
                                 f"{float(self._starts[start]):.2f} s{declared} "
                                 f"({str(exc).splitlines()[0][-120:]})",
                                 "re-download or re-encode the file (--decoder pyav decodes up to the damage)"
                                 ) from None
            at = {i: k for k, i in enumerate(keep)}
            for i in range(start, stop):
                self._decoded += 1
                yield (frames[at[i]] if i in at else None), int(counts[i])

    def close(self) -> None:
        self._reader = None


class PyAVDecoder(VideoDecoder):
    """PyAV backend: demux + decode in display order, converted to RGB. A frame is converted only once the next
    frame's timestamp says how often it is shown (and only when a needed position gets it)."""

    def __init__(self, path: str, info: VideoInfo):
        import av

        self._container = av.open(path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.info = replace(info, backend="pyav")

    def _times(self, frame) -> tuple[Fraction | None, Fraction | None]:
        """(start, end) of a decoded frame in seconds from the stream's start, exact; None when unknown."""
        base = frame.time_base or self._stream.time_base
        if frame.pts is None or not base:
            return None, None
        start = (frame.pts - (self._stream.start_time or 0)) * Fraction(base)
        duration = getattr(frame, "duration", None)
        return start, (start + duration * Fraction(base)) if duration else None

    def _placed_frames(self, size: int) -> Iterator[tuple[np.ndarray | None, int]]:
        import av

        resize = ({"width": self.info.out_width, "height": self.info.out_height, "interpolation": "BILINEAR"}
                  if self.info.resized else {})
        needed = self._needed_set
        timeline = self._timeline = Timeline(self.info.timeline, _rate(self.info), self.info.path)
        pending = None  # the previous decoded frame and its end, waiting for its count
        first = 0  # grid position of the pending frame's first copy

        def hand_out(frame, count):
            nonlocal first
            pixels = frame.to_ndarray(format="rgb24", **resize) if _needed(first, count, needed, size) else None
            first += count
            return pixels, count

        try:
            for frame in self._container.decode(self._stream):
                start, end = self._times(frame)
                self._decoded += 1
                if pending is None:
                    timeline.first(start)
                else:
                    yield hand_out(pending[0], timeline.place(start))
                pending = (frame, end)
        except av.FFmpegError as exc:
            # A decode error part-way through: the frames so far are kept; _check_complete decides on truncation.
            log.warning("%s: decoding stopped early: %s", self.info.path, exc)
        if pending is not None:
            yield hand_out(pending[0], timeline.finish(pending[1]))

    def close(self) -> None:
        self._container.close()


def _natural_key(name: str):
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def frame_folder_files(folder: Path) -> list[Path]:
    """Image files of a frame folder in natural order (``2.jpg`` before ``10.jpg``)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: _natural_key(p.name))


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file())


class FrameFolderDecoder(VideoDecoder):
    """A folder of jpg/png frames (UCSD, ShanghaiTech style) read as a video at a given frame rate."""

    def __init__(self, folder: Path, fps: float, short_side: int | None = None, square: bool = False):
        from PIL import Image

        self._files = frame_folder_files(folder)
        if not self._files:
            raise VideoError(str(folder), "the folder holds no image frames",
                             f"put {'/'.join(IMAGE_EXTENSIONS)} frames in it")
        with Image.open(self._files[0]) as first:
            width, height = first.size
            codec = (first.format or "image").lower()
        out_w, out_h = decode_size(width, height, short_side, square)
        self.info = VideoInfo(path=str(folder), fps=fps, width=width, height=height, codec=codec,
                              backend="frames", declared_frames=len(self._files), out_width=out_w, out_height=out_h,
                              nominal_fps=fps)

    def _placed_frames(self, size: int) -> Iterator[tuple[np.ndarray | None, int]]:
        """Each frame once: a folder of frames is on a constant timeline by definition (no timestamps)."""
        from PIL import Image

        for f in self._files:
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    if im.size != (self.info.out_width, self.info.out_height):
                        im = im.resize((self.info.out_width, self.info.out_height), Image.BILINEAR)
                    self._decoded += 1
                    yield np.asarray(im), 1
            except OSError as exc:
                raise VideoError(str(f), f"unreadable frame ({exc})", "replace or remove the frame file") from exc


def open_video(path: str | Path, *, backend: str = "auto", fps: float | None = None,
               short_side: int | None = None, needed: tuple[int, ...] | None = None,
               square: bool = False, timeline: str = DEFAULT_TIMELINE,
               stall_timeout_s: float | None = DECODE_STALL_TIMEOUT_S) -> VideoDecoder:
    """Open a video file or a folder of frames for sequential snippet reading.

    backend: ``auto`` (decord, then PyAV when decord cannot open the file), ``decord`` or ``pyav``.
    fps: frame rate of a frame folder (default :data:`FRAME_FOLDER_FPS`); ignored for files.
    short_side: resize while decoding so the short side has this length (:data:`DECODE_RESIZE_FILTER`);
        None keeps the original size.
    needed: positions within each snippet the caller reads (see :class:`VideoDecoder`); None: all.
    square: resize the whole frame to ``short_side`` x ``short_side`` instead (aspect changed, one resize).
    timeline: ``constant`` (frames on the stream's constant-rate grid, as a player shows them) or ``decoded``
        (every decoded frame once); see the module docstring. A folder of frames is the same either way.
    stall_timeout_s: a snippet that takes longer than this to decode fails the video (:class:`VideoError`); None
        or 0: no watchdog (decoded in the caller's thread).
    """
    if timeline not in TIMELINES:
        raise ValueError(f"timeline must be one of {TIMELINES}, got {timeline!r}")
    decoder = _open(path, backend=backend, fps=fps, short_side=short_side, square=square)
    if decoder.info.backend != "frames":
        fps_out = decoder.info.nominal_fps if timeline == "constant" and decoder.info.nominal_fps > 0 else None
        decoder.info = replace(decoder.info, timeline=timeline, fps=fps_out or decoder.info.fps)
    decoder.needed = tuple(sorted(set(needed))) if needed is not None else None
    decoder.stall_timeout_s = stall_timeout_s
    return decoder


def _open(path: str | Path, *, backend: str, fps: float | None, short_side: int | None,
          square: bool = False) -> VideoDecoder:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    p = Path(path)
    if p.is_dir():
        return FrameFolderDecoder(p, fps or FRAME_FOLDER_FPS, short_side, square)
    if not p.exists():
        raise VideoError(str(p), "the file does not exist (moved or deleted?)", "check the path")
    if p.stat().st_size == 0:
        raise VideoError(str(p), "the file is empty (0 bytes)", "re-copy or re-download it")
    info = _probe(str(p))
    if info.width <= 0 or info.height <= 0:
        raise VideoError(str(p), "the video stream has no frame size", "re-encode the video")
    out_w, out_h = decode_size(info.width, info.height, short_side, square)
    info = replace(info, out_width=out_w, out_height=out_h)
    if backend in ("auto", "decord"):
        try:
            return DecordDecoder(str(p), info)
        except Exception as exc:  # decord raises bare RuntimeErrors (DECORDError) for files it cannot open
            if backend == "decord":
                raise VideoError(str(p), f"decord cannot open it ({exc})", "use --decoder pyav") from exc
            log.info("%s: decord cannot open it, using PyAV (%s)", p, exc)
    return PyAVDecoder(str(p), info)
