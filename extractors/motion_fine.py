"""``motion_fine``: the ``motion`` statistics (:mod:`extractors.motion`) on 16 x 16-pixel cells.

The cells of ``i3d_mixed4f`` (Mixed_4f's total stride is 16): 14 x 22 on UCSD Ped1's 224 x 337 full view, where
``motion``'s 32-pixel cells give 7 x 11. The same eight statistics of the 15 absolute frame differences, each over
its cell's own pixels; "top_mean" averages the largest 1 % of a whole cell's values, 39 of 15 x 16 x 16.
"""

from __future__ import annotations

import torch

from extractors import motion

NAME = "motion_fine"
FINE_CELL_PIXELS = 16  # i3d's total stride at Mixed_4f


class FineMotionBackbone(motion.MotionBackbone):
    """``[M, 3, 16, h, w] -> [M, 8]`` or, with a grid, ``[M, 8, ceil(h / 16), ceil(w / 16)]``."""

    name = NAME
    cell_pixels = FINE_CELL_PIXELS


def build(weights: str | None = None, *, crops: int = 1, device: torch.device | str = "cpu") -> FineMotionBackbone:
    """The ``motion_fine`` backbone (no weights: ``weights`` must be None or ``"none"``)."""
    return motion.build(weights, crops=crops, device=device, backbone=FineMotionBackbone)
