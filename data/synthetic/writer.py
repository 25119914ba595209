"""Rendering a spec's frames and encoding them with PyAV: H.264 (``yuv420p``) or lossless RGB H.264, one
frame at a time, single-threaded so that the same spec always gives the same bytes."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from data.synthetic.scene import SyntheticScene
from data.synthetic.spec import SyntheticSpec

H264_CODEC = "libx264"
H264_PIX_FMT = "yuv420p"
# One encoder thread: x264's frame threads made the same frames encode to different bytes (and decoded pixels, up
# to 45 grey levels apart) in about a third of the runs on a loaded machine, so a regenerated dataset missed the
# feature cache and its numbers moved. A 320x240 video encodes fast enough single-threaded.
# No B-frames either: even single-threaded, x264's B-frame decisions (its lookahead) varied with the timing and
# memory layout of the calling process, so the same rendered frames encoded to different bytes in 3 of 4 runs and
# decoded up to 53 grey levels apart; without B-frames every run gave one file.
SINGLE_THREAD = {"x264-params": "threads=1:bframes=0"}
H264_OPTIONS = {"crf": "18", "preset": "veryfast", **SINGLE_THREAD}
LOSSLESS_CODEC = "libx264rgb"  # RGB H.264: decodes to exactly the rendered RGB frames
LOSSLESS_PIX_FMT = "rgb24"
# noise makes slower presets ~4x slower for ~10% smaller files
LOSSLESS_OPTIONS = {"qp": "0", "preset": "ultrafast", **SINGLE_THREAD}
FPS_MAX_DENOMINATOR = 1001


def render_frames(spec: SyntheticSpec) -> Iterator[np.ndarray]:
    """Yields ``spec.n_frames`` frames, uint8 ``[H, W, 3]`` RGB, one per frame index; deterministic in ``spec``."""
    yield from SyntheticScene(spec)


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)


def write_video(spec: SyntheticSpec, path, *, lossless: bool = False, codec_options=None) -> Path:
    """Render ``spec`` and encode it with PyAV, one frame at a time (never holding the whole video).

    Default: H.264 (``libx264``, ``yuv420p``, :data:`H264_OPTIONS`), needs even width and height.
    ``lossless=True``: RGB H.264 (``libx264rgb``, ``rgb24``, ``qp=0``), whose decoded RGB frames equal the
    rendered frames exactly (PyAV and decord); works in ``.mp4`` and ``.mkv``. ``codec_options`` (str -> str)
    override the defaults. The stream's frame rate is ``spec.fps``. Returns the path.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if lossless:
        codec, pix_fmt, options = LOSSLESS_CODEC, LOSSLESS_PIX_FMT, dict(LOSSLESS_OPTIONS)
    else:
        codec, pix_fmt, options = H264_CODEC, H264_PIX_FMT, dict(H264_OPTIONS)
        if spec.width % 2 or spec.height % 2:
            raise ValueError(f"H.264 {H264_PIX_FMT} needs an even frame size, got {spec.width}x{spec.height} "
                             f"(use an even size or lossless=True)")
    options.update({str(k): str(v) for k, v in (codec_options or {}).items()})
    rate = _fps_fraction(spec.fps)
    time_base = Fraction(rate.denominator, rate.numerator)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, pix_fmt
        stream.time_base = time_base
        for i, frame in enumerate(render_frames(spec)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, time_base
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
