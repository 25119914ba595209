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
