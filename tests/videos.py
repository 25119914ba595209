"""Small real video files written at test time with PyAV (no network, no committed binaries)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, H, W, 3]: a moving gradient plus seeded noise, so every frame differs from the next."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for t in range(n):
        frames[t, ..., 0] = (xx * 3 + t * 7) % 256
        frames[t, ..., 1] = (yy * 5 + t * 3) % 256
        frames[t, ..., 2] = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    return frames


def encode(path: Path, frames: np.ndarray, *, fps: int = 25, codec: str = "libx264rgb", lossless: bool = True,
           pts: list[int] | None = None, pix_fmt: str | None = None, options: dict | None = None) -> Path:
    """Write RGB frames [n, H, W, 3]. ``libx264rgb`` + ``qp=0`` is lossless RGB; ``pts`` (in 1/fps units)
    gives a variable frame rate (in an AVI, the muxer writes the skipped slots as empty frames). ``pix_fmt``
    overrides the encoder's pixel format (``yuvj420p`` for ``mjpeg``); ``options`` are the muxer's
    (``{"movflags": "faststart"}``: an mp4's index before its frames)."""
    path = Path(path)
    with av.open(str(path), mode="w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        if codec == "libx264rgb":
            stream.pix_fmt = "rgb24"
            stream.options = {"qp": "0"} if lossless else {"crf": "23"}
        else:
            stream.pix_fmt = "yuv420p"
        if pix_fmt:
            stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, fps)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mux_packets(path: Path, frames: np.ndarray, stamps, *, fps: int = 25, b_frames: int = 0,
                format: str | None = None) -> Path:
    """Write RGB frames [n, H, W, 3] as MPEG-4 part 2 (the codec of phones' and old DVRs' AVIs), with packet
    timestamps of our choosing: ``stamps(k)`` gives packet k's ``(pts, dts)`` in 1/fps units, or None to keep the
    encoder's. ``b_frames`` > 0 in an AVI gives packed B-frames, whose packets carry no timestamps of their own."""
    path = Path(path)
    enc = av.CodecContext.create("mpeg4", "w")
    enc.width, enc.height, enc.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, fps), Fraction(fps)
    enc.max_b_frames = b_frames
    enc.open()
    packets = []
    for i, f in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    with av.open(str(path), mode="w", format=format) as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = enc.width, enc.height, "yuv420p"
        stream.codec_context.extradata = enc.extradata
        stream.time_base = Fraction(1, fps)
        for k, packet in enumerate(packets):
            packet.stream = stream
            chosen = stamps(k)
            if chosen is not None:
                packet.pts, packet.dts = chosen
            packet.time_base = Fraction(1, fps)
            container.mux(packet)
    return path
