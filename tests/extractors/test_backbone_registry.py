"""docs/design.md "Adding a backbone", done in a test: a module with a ``build`` function and one registry row, and
extract, the command line and the store know it; unregistering puts everything back.

The backbone here is a tiny real network (a 3D convolution with fixed weights, then a global average), built the
way the project's backbones are: a :class:`extractors.base.Backbone` subclass naming its preprocessing and
implementing ``embed``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from extractors import registry
from extractors.base import Backbone, Preprocessing
from pipeline import api
from pipeline.cli import commands
from pipeline.store import open_store
from videos import encode, pattern_frames

NAME = "toy_colour_motion"
DIM = 6


class ColourMotion(Backbone):
    """Per snippet: the mean of each colour channel and of its change from frame to frame (a [2, 1, 1] temporal
    difference convolution), globally averaged. ``[M, 3, F, h, w]`` -> ``[M, 6]``."""

    name = NAME
    dim = DIM
    kind = "video"
    views = ("crop", "full", "squash")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).mean(dim=(2, 3, 4))


def _network() -> nn.Module:
    conv = nn.Conv3d(3, DIM, kernel_size=(2, 1, 1), bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[c, c, :, 0, 0] = torch.tensor([0.5, 0.5])  # the channel's mean over two frames
            conv.weight[3 + c, c, :, 0, 0] = torch.tensor([-1.0, 1.0])  # its change between them
    return conv


def build(weights: str | None = None, *, crops: int = 1, device="cpu") -> ColourMotion:
    """What a backbone module's ``build`` does: resolve weights (none here), name the preprocessing."""
    preprocessing = Preprocessing(resize="short_side", resize_size=32, interpolation="bilinear", crop_size=32,
                                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return ColourMotion(_network(), preprocessing, crops=crops, frame_indices=tuple(range(0, 16, 2)),
                        weights_id="fixed", device=device)


@pytest.fixture
def toy_backbone():
    # the row's module is this file, imported by name as extract imports every backbone's module
    spec = registry.BackboneSpec(NAME, "video", DIM, "colour means and their frame-to-frame change", __name__,
                                 "none: fixed weights", default_view="squash")
    registry.register(spec)
    yield spec
    registry.unregister(NAME)


def test_a_registered_backbone_is_extracted_listed_and_stored(toy_backbone, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    encode(videos / "a.mp4", pattern_frames(40, 48, 64, seed=1))
    result = api.extract([videos], store=tmp_path / "store", backbones=NAME)
    assert (result.extracted, result.failed, tuple(result.backbones)) == (1, 0, (NAME,))
    store = open_store(tmp_path / "store", create=False)
    try:
        (row,) = store.features(NAME)
        features = store.load_feature(row["key"])
    finally:
        store.close()
    assert features.shape == (2, 1, DIM) and np.isfinite(features).all()  # 40 frames: two 16-frame snippets
    assert NAME in commands.stage_parser("extract").format_help()
    with pytest.raises(ValueError, match="already registered"):
        registry.register(toy_backbone)


def test_unregistering_a_backbone_puts_the_table_back(toy_backbone):
    before = tuple(registry.BACKBONES)
    registry.unregister(NAME)
    assert NAME not in registry.BACKBONES and tuple(registry.BACKBONES) == before[:-1]
    with pytest.raises(ValueError, match="unknown backbone"):
        registry.backbone_spec(NAME)
    registry.register(toy_backbone)  # the fixture unregisters it again
