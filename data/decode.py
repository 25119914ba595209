"""One decoder interface over decord, PyAV and folders of frames.

Frames are read **sequentially** and handed out as 16-frame snippets. Random access is never used: decord's
and PyAV's seeking return wrong frames on some AVI / B-frame files, while sequential reads were exact in every
decoder we measured. Only one snippet is held at a time, so memory stays bounded for hour-long videos.

``open_video(path)`` probes the file with PyAV (container metadata: codec, fps, size, declared frame count),
then decodes with decord, falling back to PyAV when decord cannot open the file.
"""

from __future__ import annotations

import abc
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from data.errors import VideoError

SNIPPET_FRAMES = 16
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".3gp", ".ogv", ".gif")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
FRAME_FOLDER_FPS = 25.0  # frame rate assumed for a folder of frames unless the caller gives one
# A file whose decoded frame count falls short of its container's declared count by more than this many frames
# (and this fraction) is reported as truncated instead of silently giving fewer snippets.
TRUNCATION_TOLERANCE_FRAMES = 2
TRUNCATION_TOLERANCE_FRACTION = 0.01
BACKENDS = ("auto", "decord", "pyav")
# Resizing while decoding: libswscale converts YUV->RGB and scales in one pass, ~20x cheaper than resizing
# decoded RGB frames in torch on a CPU. decord's `width/height` and PyAV's `interpolation="BILINEAR"` both use
# swscale's bilinear filter (measured equal to within one grey level), which widens with the downscale factor,
# so it is antialiased like torchvision's `antialias=True` bilinear resize.
DECODE_RESIZE_FILTER = "swscale-bilinear"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What a decoder knows about a video. ``n_frames`` is the count actually decoded (set after a full read);
    ``declared_frames`` the container's own count (0 when unknown)."""

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


class VideoDecoder(abc.ABC):
    """Sequential RGB frames of one video. Use as a context manager or call :meth:`close`.

    ``needed``: the positions within each 16-frame snippet that the consumer reads (None: all). A hint only: a
    backend may leave the other positions' pixels unset (decord then skips their colour conversion and copy,
    a quarter of the decoding time at low resolution when every other frame is read), so consumers must not read
    them; frame counting, truncation checks and snippet boundaries are unchanged.
    """

    info: VideoInfo
    needed: tuple[int, ...] | None = None

    @abc.abstractmethod
    def _frame_batches(self) -> Iterator[np.ndarray]:
        """Yields consecutive uint8 ``[n, H, W, 3]`` batches (n >= 1) in display order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def snippets(self, size: int = SNIPPET_FRAMES) -> Iterator[np.ndarray]:
        """Yields uint8 ``[size, H, W, 3]`` snippets of consecutive frames; a trailing partial snippet is dropped.

        After the generator is exhausted, ``self.info.n_frames`` holds the number of frames decoded. Raises
        :class:`VideoError` when the stream is truncated or the frame size changes mid-stream.
        """
        buf = None
        filled = 0
        decoded = 0
        for batch in self._frame_batches():
            if buf is None:
                buf = np.empty((size, *batch.shape[1:]), dtype=np.uint8)
            if batch.shape[1:] != buf.shape[1:]:
                raise VideoError(self.info.path, f"frame size changed from {buf.shape[2]}x{buf.shape[1]} to "
                                 f"{batch.shape[2]}x{batch.shape[1]} at frame {decoded}",
                                 "re-encode the video at one resolution (e.g. ffmpeg -vf scale=W:H)")
            start = 0
            while start < len(batch):
                take = min(size - filled, len(batch) - start)
                buf[filled:filled + take] = batch[start:start + take]
                filled += take
                start += take
                if filled == size:
                    yield buf.copy()
                    filled = 0
            decoded += len(batch)
        self.info = replace(self.info, n_frames=decoded)
        self._check_complete(decoded)

    def _check_complete(self, decoded: int) -> None:
        if decoded == 0:
            raise VideoError(self.info.path, "no frame could be decoded (corrupt or truncated file)",
                             "re-download or re-encode the file")
        declared = self.info.declared_frames
        if declared <= 0:
            return
        missing = declared - decoded
        if missing > max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE_FRACTION * declared):
            raise VideoError(self.info.path, f"truncated: decoded {decoded} of the {declared} frames the "
                             "container declares", "re-download or re-encode the file")


def _probe(path: str) -> VideoInfo:
    """Container metadata via PyAV, without decoding. Raises VideoError when there is no video stream."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoError(path, "the file has no video stream", "pass a video file")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            return VideoInfo(path=path, fps=fps, width=stream.codec_context.width,
                             height=stream.codec_context.height, codec=stream.codec_context.name,
                             backend="", declared_frames=int(stream.frames or 0))
    except VideoError:
        raise
    except Exception as exc:  # PyAV raises many error types for unreadable input
        raise VideoError(path, f"not a readable video ({type(exc).__name__}: {exc})",
                         "check that the file is a complete video (e.g. play it with ffprobe/ffplay)") from exc


class DecordDecoder(VideoDecoder):
    """decord backend: consecutive ascending index batches, never a seek backwards or a jump."""

    BATCH = SNIPPET_FRAMES

    def __init__(self, path: str, info: VideoInfo):
        import decord

        size = {"width": info.out_width, "height": info.out_height} if info.resized else {}
        self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, **size)
        self.info = replace(info, backend="decord")

    def _frame_batches(self) -> Iterator[np.ndarray]:
        n = len(self._reader)
        for start in range(0, n, self.BATCH):
            stop = min(start + self.BATCH, n)
            if self.needed is None or len(self.needed) == self.BATCH:
                yield self._reader.get_batch(list(range(start, stop))).asnumpy()
                continue
            # Still decoded in order (inter-coded frames need their references), but only the needed frames are
            # converted and copied out; the batch keeps its full length so snippets stay aligned.
            keep = [start + k for k in self.needed if start + k < stop]
            batch = np.zeros((stop - start, self.info.out_height, self.info.out_width, 3), dtype=np.uint8)
            if keep:
                batch[[i - start for i in keep]] = self._reader.get_batch(keep).asnumpy()
            yield batch

    def close(self) -> None:
        self._reader = None


class PyAVDecoder(VideoDecoder):
    """PyAV backend: demux + decode in display order, converted to RGB."""

    def __init__(self, path: str, info: VideoInfo):
        import av

        self._container = av.open(path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.info = replace(info, backend="pyav")

    def _frame_batches(self) -> Iterator[np.ndarray]:
        import av

        size = ({"width": self.info.out_width, "height": self.info.out_height, "interpolation": "BILINEAR"}
                if self.info.resized else {})
        try:
            for frame in self._container.decode(self._stream):
                yield frame.to_ndarray(format="rgb24", **size)[None]
        except av.FFmpegError as exc:
            # A decode error part-way through: the frames so far are kept; _check_complete decides on truncation.
            log.warning("%s: decoding stopped early: %s", self.info.path, exc)

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
                              backend="frames", declared_frames=len(self._files), out_width=out_w, out_height=out_h)

    def _frame_batches(self) -> Iterator[np.ndarray]:
        from PIL import Image

        for f in self._files:
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    if im.size != (self.info.out_width, self.info.out_height):
                        im = im.resize((self.info.out_width, self.info.out_height), Image.BILINEAR)
                    yield np.asarray(im)[None]
            except OSError as exc:
                raise VideoError(str(f), f"unreadable frame ({exc})", "replace or remove the frame file") from exc


def open_video(path: str | Path, *, backend: str = "auto", fps: float | None = None,
               short_side: int | None = None, needed: tuple[int, ...] | None = None,
               square: bool = False) -> VideoDecoder:
    """Open a video file or a folder of frames for sequential snippet reading.

    backend: ``auto`` (decord, then PyAV when decord cannot open the file), ``decord`` or ``pyav``.
    fps: frame rate of a frame folder (default :data:`FRAME_FOLDER_FPS`); ignored for files.
    short_side: resize while decoding so the short side has this length (:data:`DECODE_RESIZE_FILTER`);
        None keeps the original size.
    needed: positions within each snippet the caller reads (see :class:`VideoDecoder`); None: all.
    square: resize the whole frame to ``short_side`` x ``short_side`` instead (aspect changed, one resize).
    """
    decoder = _open(path, backend=backend, fps=fps, short_side=short_side, square=square)
    decoder.needed = tuple(sorted(set(needed))) if needed is not None else None
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
