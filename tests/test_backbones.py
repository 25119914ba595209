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
    from pipeline.extract import extractor_fingerprint

    a = build_backbone("clip_b32", weights="random")
    b = build_backbone("clip_b32", weights="random", crops=5)
    c = build_backbone("clip_b32", weights="random", frames=2)
    fps = {extractor_fingerprint(x, dtype="float32", decoder="auto")[0] for x in (a, b, c)}
    fps.add(extractor_fingerprint(a, dtype="float16", decoder="auto")[0])
    fps.add(extractor_fingerprint(a, dtype="float32", decoder="auto", decode_short_side=256)[0])
    fps.add(extractor_fingerprint(a, dtype="float32", decoder="pyav")[0])
    assert len(fps) == 6
