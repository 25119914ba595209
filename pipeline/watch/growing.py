"""A video file still being written (a recorder appending to it), read as ``tail -f`` does: :class:`GrowingFile` is a
read-only, non-seekable raw file object to hand to ``av.open``; at the current end of the file it waits for the file
to grow, and it ends the stream once the file has stopped growing for ``idle_timeout_s`` (the recorder has finished)
or ``stop`` is set.

Which containers work: the streamable ones, those a demuxer reads front to back without seeking: MPEG-TS (``.ts``),
Matroska/WebM written as a stream (``.mkv``, ``.webm``: FFmpeg's default when it records), fragmented MP4
(``ffmpeg -movflags frag_keyframe+empty_moov``). A plain MP4 being written cannot be read until it is complete: its
index (the ``moov`` box) is written at the end, after the frames (``mdat``). :func:`check_streamable` detects that
case from the file's top-level boxes (an ``ftyp`` box, then ``mdat`` before any ``moov``) and raises a ValueError
naming the file and the fix; :class:`GrowingFile` runs it when it opens.

Not handled: a recorder that truncates or replaces the file (rotation) ends the stream, as the end of the file does.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time

# A recorder flushes its muxer every few frames and at least every second or two (FFmpeg's TS and Matroska muxers
# flush each packet or cluster, ~1 s of video at most); 10 s without a new byte is far beyond a healthy recorder's
# pause, so the recording has finished (or the recorder died) and the stream ends, as a complete file does.
IDLE_TIMEOUT_S = 10.0
# How often the end of the file is checked for new bytes: 0.1 s adds at most 0.1 s of latency (2-3 frames at
# 25 fps), far below a clip's length, and an fstat ten times a second costs nothing.
POLL_S = 0.1

MP4_FIX = "record to .ts or .mkv, or fragmented mp4: ffmpeg -movflags frag_keyframe+empty_moov"
_MAX_BOXES = 64  # top-level boxes looked at before the first moov or mdat (ftyp, free, uuid, ...)


def _wait_for_bytes(fd: int, offset: int, n: int, *, stop: threading.Event, idle_timeout_s: float,
                    poll_s: float) -> bytes | None:
    """``n`` bytes at ``offset`` once the file holds them; None when it stops growing first or ``stop`` is set."""
    last_size, last_growth = -1, time.monotonic()
    while True:
        size = os.fstat(fd).st_size
        if size >= offset + n:
            return os.pread(fd, n, offset)
        if size != last_size:
            last_size, last_growth = size, time.monotonic()
        if stop.is_set() or time.monotonic() - last_growth >= idle_timeout_s:
            return None
        stop.wait(poll_s)


def check_streamable(path, fd: int | None = None, *, stop: threading.Event, idle_timeout_s: float = IDLE_TIMEOUT_S,
                     poll_s: float = POLL_S) -> None:
    """Raises ValueError for a plain (non-fragmented) MP4 being written: it starts with an ``ftyp`` box and has its
    ``mdat`` (the frames) before any ``moov`` (the index, written when the recording ends). Any other file passes
    (the demuxer decides); it waits, as a read does, for the first box headers to be written."""
    own = fd is None
    if own:
        fd = os.open(path, os.O_RDONLY)
    try:
        wait = dict(stop=stop, idle_timeout_s=idle_timeout_s, poll_s=poll_s)
        head = _wait_for_bytes(fd, 0, 8, **wait)
        if head is None or head[4:8] != b"ftyp":
            return
        offset = 0
        for _ in range(_MAX_BOXES):
            header = _wait_for_bytes(fd, offset, 8, **wait)
            if header is None:
                return
            size, kind = struct.unpack(">I4s", header)
            if kind in (b"moov", b"moof"):
                return
            if kind == b"mdat":
                raise ValueError(f"{path}: a plain MP4 being written cannot be read until it is complete (its "
                                 f"index, the moov box, is written at the end); {MP4_FIX}; or read it without "
                                 f"follow once it is complete")
            if size == 1:  # a 64-bit size follows the type
                large = _wait_for_bytes(fd, offset + 8, 8, **wait)
                if large is None:
                    return
                size = struct.unpack(">Q", large)[0]
            if size < 8:  # 0 (to the end of the file) or malformed: let the demuxer decide
                return
            offset += size
    finally:
        if own:
            os.close(fd)


class GrowingFile(io.RawIOBase):
    """``path`` read front to back while it grows: :meth:`readinto` returns the bytes available; at the current end
    of the file it polls every ``poll_s`` for more (returning at once when ``stop`` is set) and returns 0 (the end of
    the stream) once the file has not grown for ``idle_timeout_s`` or ``stop`` is set. Not seekable, so FFmpeg reads
    it as a stream. Raises ValueError for a plain MP4 still being written (see :func:`check_streamable`)."""

    def __init__(self, path, *, stop: threading.Event, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 poll_s: float = POLL_S):
        super().__init__()
        self.path, self.stop = str(path), stop
        self.idle_timeout_s, self.poll_s = idle_timeout_s, poll_s
        self._file = open(self.path, "rb", buffering=0)
        self._pos = 0
        self._seen_size, self._last_growth = -1, time.monotonic()  # the size at the last end reached, and when
        try:
            check_streamable(self.path, self._file.fileno(), stop=stop, idle_timeout_s=idle_timeout_s,
                             poll_s=poll_s)
        except BaseException:
            self._file.close()
            raise

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._file.fileno()

    def readinto(self, buffer) -> int:
        while True:
            n = self._file.readinto(buffer)
            if n:
                self._pos += n
                return n
            size = os.fstat(self._file.fileno()).st_size
            if size < self._pos:  # truncated or rewritten in place: not the recording being followed any more
                return 0
            if size > self._pos:
                continue
            # the growth clock lives across calls: FFmpeg reads again after an end of stream, and those reads
            # return 0 at once instead of waiting another idle_timeout_s each
            if size != self._seen_size:
                self._seen_size, self._last_growth = size, time.monotonic()
            if self.stop.is_set() or time.monotonic() - self._last_growth >= self.idle_timeout_s:
                return 0
            if self.stop.wait(self.poll_s):
                return 0

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()
