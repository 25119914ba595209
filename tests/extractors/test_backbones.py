"""Preprocessing and the torchvision / open_clip backbones (random weights by name; loading from a file)."""

from __future__ import annotations

import pytest
import torch

from extractors import clip, s3d, transforms
from extractors.registry import build_backbone
from extractors.weights import WeightsNotFound


def test_crops_follow_the_documented_order():
    frame = torch.zeros(1, 3, 256, 320)
    frame[..., :128, :160] = 1.0  # top-left quadrant bright
    five = transforms.multi_crop(frame, 5, 224)
    assert five.shape == (5, 1, 3, 224, 224)
    means = five.mean(dim=(1, 2, 3, 4))
    assert transforms.crop_order(5)[int(means.argmax())] == "top_left"
    ten = transforms.multi_crop(frame, 10, 224)
    torch.testing.assert_close(ten[5], torch.flip(ten[0], dims=[-1]))
    assert transforms.crop_order(10)[5] == "flip_top_left"
    with pytest.raises(ValueError):
        transforms.multi_crop(frame, 3, 224)


def test_resize_modes():
    x = torch.rand(2, 3, 240, 320)
    assert transforms.resize(x, "short_side", 256, "bilinear", True).shape == (2, 3, 256, 341)
    assert transforms.resize(x, "square", 256, "bilinear", True).shape == (2, 3, 256, 256)
    out = transforms.resize(x, "short_side", 224, "bicubic", True)
    assert out.min() >= 0 and out.max() <= 1


def test_centre_frames():
    assert clip.centre_frames(1) == (8,)
    assert clip.centre_frames(4) == (2, 6, 10, 14)
    assert clip.centre_frames(16) == tuple(range(16))
    with pytest.raises(ValueError):
        clip.centre_frames(0)


def test_s3d_random_and_from_file(tmp_path):
    b = build_backbone("s3d", weights="random", crops=1)
    assert b.weights_id == "random" and b.dim == 1024
    snippets = torch.randint(0, 256, (1, 16, 120, 160, 3), dtype=torch.uint8)
    feats = b.extract(snippets)
    assert feats.shape == (1, 1, 1024) and torch.isfinite(feats).all()
    path = tmp_path / "s3d.pth"
    torch.save(b.model.state_dict(), path)
    again = build_backbone("s3d", weights=str(path))
    assert again.weights_id.startswith("sha256:")
    torch.testing.assert_close(again.extract(snippets), feats)


def test_s3d_missing_weights_names_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("DAKD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(s3d, "_download", lambda: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(WeightsNotFound, match="--weights s3d=PATH"):
        s3d.build()
    with pytest.raises(WeightsNotFound, match="not found at"):
        s3d.build(str(tmp_path / "nope.pth"))


def test_clip_b32_random_two_frames_and_ten_crops():
    b = build_backbone("clip_b32", weights="random", crops=10, frames=2)
    assert b.frame_indices == (4, 12) and b.dim == 512
    feats = b.extract(torch.randint(0, 256, (1, 16, 240, 320, 3), dtype=torch.uint8))
    assert feats.shape == (1, 10, 512)
    assert not torch.allclose(feats[0, 0], feats[0, 5])  # a crop and its mirror differ


def test_clip_offline_error_names_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("DAKD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(clip, "_library_download", lambda name: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(WeightsNotFound, match="--weights clip=PATH"):
        clip.build()


def test_fingerprint_changes_with_every_setting():
    from pipeline.extract.extractor import extractor_fingerprint

    a = build_backbone("clip_b32", weights="random")
    b = build_backbone("clip_b32", weights="random", crops=5)
    c = build_backbone("clip_b32", weights="random", frames=2)
    fps = {extractor_fingerprint(x, dtype="float32", decoder="auto")[0] for x in (a, b, c)}
    fps.add(extractor_fingerprint(a, dtype="float16", decoder="auto")[0])
    fps.add(extractor_fingerprint(a, dtype="float32", decoder="auto", decode_short_side=256)[0])
    fps.add(extractor_fingerprint(a, dtype="float32", decoder="pyav")[0])
    assert len(fps) == 6


def test_registry_rows_match_the_backbone_classes():
    """Each row's kind and D are those of the class its module builds (no backbone built, no weights needed)."""
    import importlib
    import inspect

    from extractors.base import Backbone
    from extractors.registry import REGISTRY, frame_backbones

    for spec in REGISTRY.values():
        module = importlib.import_module(spec.module)
        assert callable(getattr(module, "build")), spec.name
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
                   if issubclass(c, Backbone) and c is not Backbone and c.__module__ == module.__name__]
        assert classes, spec.name
        assert {(c.kind, c.dim) for c in classes} == {(spec.kind, spec.dim)}, spec.name
        assert spec.default_view in transforms.VIEWS
        if spec.fetch is not None:
            assert callable(spec.fetcher()), spec.name
    assert frame_backbones() == ("clip", "clip_b32", "effnet_lite0")


def test_the_usage_guide_backbone_table_is_the_registry():
    """The usage guide's backbone table lists every registered backbone with its D, and nothing else."""
    import re
    from pathlib import Path

    from extractors.registry import REGISTRY

    readme = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\s*\| ((?:`\w+`(?: / )?)+) \| [^|]+ \| (\d+) \|", readme, flags=re.M)
    documented = {name: int(dim) for names, dim in rows for name in re.findall(r"`(\w+)`", names)}
    assert documented == {name: spec.dim for name, spec in REGISTRY.items()}


def test_unknown_backbone_names_the_choices():
    from extractors.registry import BACKBONES

    with pytest.raises(ValueError, match="choose from " + ", ".join(BACKBONES)):
        build_backbone("resnet")
