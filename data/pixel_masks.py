"""Pixel-level anomaly masks: where in the frame an anomaly is, for the clips a dataset annotated spatially.

A frame-label folder (``videos/`` + ``labels/``, :mod:`data.datasets.frame_labels`) may hold a ``pixel_masks/``
folder beside them: one ``<name>.npz`` per annotated video, holding ``mask``, a 0/1 array ``[T, H, W]`` (bool or an
integer dtype) of the video's T frames at its decoded size, 1 = an anomalous pixel. UCSD Ped1 ships this for 10 of
its 36 test clips (the official ``TestNNN_gt`` bitmaps). Videos without a file have no spatial annotation (which is
not the same as "no anomaly": their frame labels still hold).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PIXEL_MASK_FOLDER = "pixel_masks"  # beside videos/ and labels/
MASK_KEY = "mask"  # the array's name in each .npz


class PixelMaskError(ValueError):
    """A mask file that cannot be used; the message names the file and the fix."""


def load_pixel_mask(path: str | Path) -> np.ndarray:
    """One video's mask file -> bool ``[T, H, W]``. Raises PixelMaskError naming the file."""
    path = Path(path)
    try:
        with np.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise PixelMaskError(f"{path}: not a readable .npz ({exc}); write it with np.savez") from exc
    if MASK_KEY not in arrays:
        raise PixelMaskError(f"{path}: no array {MASK_KEY!r} (it holds {', '.join(arrays) or 'nothing'}); save the "
                             f"mask as np.savez(path, {MASK_KEY}=array)")
    mask = arrays[MASK_KEY]
    if mask.ndim != 3 or not (mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
        raise PixelMaskError(f"{path}: {MASK_KEY} must be a 0/1 array [T, H, W], got {mask.dtype} {mask.shape}")
    if mask.size and not np.isin(np.unique(mask), (0, 1)).all():
        raise PixelMaskError(f"{path}: {MASK_KEY} must hold only 0 and 1")
    return mask.astype(bool)


def load_pixel_masks(folder: str | Path) -> dict[str, np.ndarray]:
    """Every ``<name>.npz`` of ``folder`` (a ``pixel_masks/`` folder) -> name -> bool ``[T, H, W]``, by name. A
    missing folder is no masks."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {path.stem: load_pixel_mask(path) for path in sorted(folder.glob("*.npz"))}
