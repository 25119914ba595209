"""Re-encode DeepMind's cricket GIF as ``cricket_frames.npz.xz``: the same decoded frames, losslessly, in under
2 MB (the GIF is 2.4 MB; lossless WebP 2.15 MB, xz of the raw RGB 2.17 MB, FFV1 5.6 MB, lossless H.264 5.2 MB).

Every frame of the GIF has at most 256 colours, so it is stored as that frame's palette and one uint8 index per
pixel; xz compresses the indices far better than GIF's LZW. ``tests/test_i3d.py`` decodes it with numpy alone
and, where the original GIF is at hand (CI), checks that the decoded frames equal Pillow's decoding of it.

Usage: ``python tests/data/i3d_reference/make_frames.py v_CricketShot_g04_c01_rgb.gif``
(the GIF is ``data/v_CricketShot_g04_c01_rgb.gif`` of github.com/deepmind/kinetics-i3d).
"""

from __future__ import annotations

import io
import lzma
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

OUT = Path(__file__).with_name("cricket_frames.npz.xz")
PALETTE_SIZE = 256  # a GIF frame has at most 256 colours
XZ_PRESET = 9 | lzma.PRESET_EXTREME  # smallest standard xz; decoding speed does not depend on it


def gif_frames(path: Path) -> np.ndarray:
    """[T, H, W, 3] uint8: every frame of the GIF in RGB, as Pillow decodes it (what the I3D test feeds)."""
    with Image.open(path) as gif:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)])


def encode(frames: np.ndarray) -> bytes:
    """xz of an uncompressed .npz holding ``palettes`` [T, 256, 3] and ``indices`` [T, H, W], both uint8, with
    ``palettes[t][indices[t]] == frames[t]``."""
    palettes = np.zeros((len(frames), PALETTE_SIZE, 3), np.uint8)
    indices = np.empty(frames.shape[:3], np.uint8)
    for t, frame in enumerate(frames):
        colours, index = np.unique(frame.reshape(-1, 3), axis=0, return_inverse=True)
        if len(colours) > PALETTE_SIZE:
            raise ValueError(f"frame {t} has {len(colours)} colours, more than a palette holds")
        palettes[t, :len(colours)] = colours
        indices[t] = index.reshape(frame.shape[:2])
    buffer = io.BytesIO()
    np.savez(buffer, palettes=palettes, indices=indices)
    return lzma.compress(buffer.getvalue(), preset=XZ_PRESET)


def decode(blob: bytes) -> np.ndarray:
    """[T, H, W, 3] uint8 frames back from :func:`encode`'s bytes."""
    with np.load(io.BytesIO(lzma.decompress(blob))) as npz:
        palettes, indices = npz["palettes"], npz["indices"]
    return palettes[np.arange(len(indices))[:, None, None], indices]


def main(argv: list[str]) -> int:
    frames = gif_frames(Path(argv[0]))
    blob = encode(frames)
    if not np.array_equal(decode(blob), frames):
        raise AssertionError("the encoding is not lossless")
    OUT.write_bytes(blob)
    print(f"{OUT}: {frames.shape} frames, {len(blob)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
