"""S3D (Xie et al. 2018) through torchvision: 1024-d features before the classifier."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.video import S3D_Weights, s3d

from extractors import weights as W
from extractors.base import Backbone, Preprocessing
from extractors.files import load_module_state, load_torch_file

# torchvision's own transforms for S3D_Weights.KINETICS400_V1: resize 256 x 256, crop 224, Kinetics mean/std.
PREPROCESSING = Preprocessing(resize="square", resize_size=256, interpolation="bilinear", crop_size=224,
                              mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))
TORCHVISION_WEIGHTS = S3D_Weights.KINETICS400_V1
HOW_TO_GET = ("or run once with network access so torchvision downloads S3D_Weights.KINETICS400_V1 "
              f"({TORCHVISION_WEIGHTS.url})")
# What to do about a weights file that cannot be read (a damaged download, a foreign file).
BAD_WEIGHTS_FIX = ("delete it and run once with network access so torchvision downloads it again, or pass "
                   "--weights s3d=PATH with torchvision's S3D_Weights.KINETICS400_V1 file")


class S3DBackbone(Backbone):
    name = "s3d"
    dim = 1024
    kind = "video"
    views = ("crop", "full", "squash")  # fully convolutional, global average: any frame size
    grids = True
    version = 1

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, 16, 224, 224] -> [M, 1024]``: the last feature map averaged over time and space."""
        return self.model.features(x).mean(dim=(2, 3, 4))

    def embed_map(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, 16, h, w] -> [M, 1024, ceil(h/32), ceil(w/32)]`` (7 x 7 at 224): the last feature map averaged
        over time only; its mean over space is :meth:`embed`."""
        return self.model.features(x).mean(dim=2)


def _hub_checkpoint() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(TORCHVISION_WEIGHTS.url).name


def _download() -> None:
    """torchvision's own download into the torch hub cache (needs network access)."""
    torch.hub.load_state_dict_from_url(TORCHVISION_WEIGHTS.url, progress=False, check_hash=True)


def build(weights: str | None = None, *, crops: int = 1, frame_indices=None, device="cpu") -> S3DBackbone:
    """weights: None (torchvision's Kinetics-400 checkpoint from the cache, downloading it when online),
    ``"random"``, or a path to a torchvision-format state dict."""
    defaults = [W.weights_dir() / _hub_checkpoint().name, _hub_checkpoint()]
    try:
        choice = W.resolve("s3d", weights, defaults, how_to_get=HOW_TO_GET)
    except W.WeightsNotFound:
        if weights is not None:
            raise
        try:
            _download()
        except Exception as exc:  # offline: urllib / socket errors of many kinds
            raise W.WeightsNotFound(f"weights for s3d not found and the download failed ({type(exc).__name__}): "
                                    f"pass --weights s3d=PATH, {HOW_TO_GET}") from exc
        choice = W.resolve("s3d", None, defaults, how_to_get=HOW_TO_GET)
    model = s3d(weights=None)
    if not choice.is_random:
        state = load_torch_file(choice.path, "the s3d weights", BAD_WEIGHTS_FIX)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        load_module_state(model, state, choice.path, "the s3d weights", BAD_WEIGHTS_FIX)
    return S3DBackbone(model, PREPROCESSING, crops=crops, frame_indices=frame_indices, weights_id=choice.id,
                       device=device)
