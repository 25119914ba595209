"""The ``i3d_mixed4f`` backbone: Inception-I3D's Mixed_4f, the block before the last pool, as finer cells.

The same network and weights as ``i3d`` (:mod:`extractors.i3d`), read one stage earlier: Mixed_4f has 832 channels
at a total stride of 16 pixels, so its grid has twice the rows and columns of Mixed_5c's (14 x 22 on UCSD Ped1's
224 x 337 full view, against 7 x 11), each cell a quarter of the area, and the smaller receptive field of a
layer before the last two inception blocks. For localisation: an anomaly covering 0.3-2 % of the frame (Ped1's
bikers and carts) fills about one Mixed_5c cell (1.3 % of the frame) but several of these. Like Mixed_5c it is
averaged over its time steps (4 for a 16-frame snippet); its global feature is its cells' mean, as every grid
backbone's. Not a standard VAD feature: the community's features (and ``--config paper``) are Mixed_5c.
"""

from __future__ import annotations

import torch

from extractors import i3d
from extractors.i3d_net import mixed_channels

ENDPOINT = "Mixed_4f"


class I3DMixed4fBackbone(i3d.I3DBackbone):
    """``[M, 3, 16, h, w]`` -> Mixed_4f: 832-d features, or with a grid ``ceil(h/16) x ceil(w/16)`` cells."""

    name = "i3d_mixed4f"
    dim = mixed_channels(ENDPOINT)
    endpoint = ENDPOINT


def build(weights: str | None = None, *, crops: int = 1, frame_indices=None,
          device: torch.device | str = "cpu") -> I3DMixed4fBackbone:
    """The ``i3d_mixed4f`` backbone with i3d's weights (``weights`` as :func:`extractors.i3d.build` takes them)."""
    return i3d.build(weights, crops=crops, frame_indices=frame_indices, device=device, backbone=I3DMixed4fBackbone)
