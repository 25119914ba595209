"""Views that cover a non-square frame (``extractors.transforms.VIEWS``): what each view hands the backbone, how it
enters the fingerprint, and the extract CLI's ``--view`` on real encoded videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode
from videos import encode, pattern_frames

from extractors import transforms
from extractors.base import preprocess_snippets
from extractors.effnet_lite import PREPROCESSING as EFFNET_PREPROCESSING
from extractors.registry import build_backbone
from pipeline.cli import extract
from pipeline.store import FeatureStore

# A UCSD-shaped frame: 238 x 158 (3:2). Short side 224 keeps the whole frame at 337 x 224.
H, W = 158, 238
FULL_W = int(224 * W / H)  # torchvision's rule: the long side truncated


def _snippets(n: int = 2, h: int = H, w: int = W) -> torch.Tensor:
    return torch.from_numpy(pattern_frames(16 * n, h, w, seed=1).reshape(n, 16, h, w, 3))


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return transforms.normalize(x, EFFNET_PREPROCESSING.mean, EFFNET_PREPROCESSING.std)


def test_full_view_is_the_whole_frame_at_the_crop_size_short_side():
    snippets = _snippets()
    p = EFFNET_PREPROCESSING.__class__(**{**EFFNET_PREPROCESSING.__dict__, "view": "full"})
    out = preprocess_snippets(snippets, p, (8,), 1)
    assert out.shape == (2, 3, 1, 224, FULL_W)
    frame = snippets[1, 8].permute(2, 0, 1).float() / 255.0  # independent: torchvision on the whole frame
    expected = _normalised(TF.resize(frame[None], 224, interpolation=InterpolationMode.BILINEAR, antialias=True))[0]
    torch.testing.assert_close(out[1, :, 0], expected, atol=1e-5, rtol=0)


def test_squash_view_resizes_the_whole_frame_to_a_square():
    snippets = _snippets()
    p = EFFNET_PREPROCESSING.__class__(**{**EFFNET_PREPROCESSING.__dict__, "view": "squash"})
    out = preprocess_snippets(snippets, p, (8,), 1)
    assert out.shape == (2, 3, 1, 224, 224)
    frame = snippets[0, 8].permute(2, 0, 1).float() / 255.0
    expected = _normalised(TF.resize(frame[None], [224, 224], interpolation=InterpolationMode.BILINEAR,
                                     antialias=True))[0]
    torch.testing.assert_close(out[0, :, 0], expected, atol=1e-5, rtol=0)


def test_crop_view_drops_the_sides_the_full_view_keeps():
    """The published crop view of a 3:2 frame sees the middle 224 of its 385 columns (short side 256), so the
    left fifth of the frame, where a biker may ride, is invisible to it and kept by the full view."""
    snippets = torch.zeros(1, 16, H, W, 3, dtype=torch.uint8)
    snippets[..., : W // 5, :] = 255
    crop = preprocess_snippets(snippets, EFFNET_PREPROCESSING, (8,), 1)
    full = preprocess_snippets(snippets, EFFNET_PREPROCESSING.__class__(
        **{**EFFNET_PREPROCESSING.__dict__, "view": "full"}), (8,), 1)
    bright = lambda x: float((x > 0).float().mean())  # noqa: E731  (normalised: 0 grey is -1)
    assert bright(crop) < 0.01 and abs(bright(full) - 1 / 5) < 0.02


def test_whole_frame_views_take_one_view_and_name_the_fix():
    b = build_backbone("effnet_lite0", weights="random", crops=5)
    with pytest.raises(ValueError, match="crops 1"):
        b.use_view("full")
    clip = build_backbone("clip_b32", weights="random")
    with pytest.raises(ValueError, match="takes the views crop, squash"):
        clip.use_view("full")  # a ViT needs its square input
    with pytest.raises(ValueError, match="view must be one of"):
        EFFNET_PREPROCESSING.__class__(**{**EFFNET_PREPROCESSING.__dict__, "view": "wide"})


def test_the_view_enters_the_fingerprint_and_the_default_view_leaves_it_as_before():
    from pipeline.extract.extractor import extractor_fingerprint

    crop = build_backbone("effnet_lite0", weights="random", view="crop")
    assert "view" not in crop.fingerprint_params()["preprocessing"]  # stores made before views stay valid
    fingerprints = {}
    for view in transforms.VIEWS:
        b = build_backbone("effnet_lite0", weights="random", view=view)
        fp, params = extractor_fingerprint(b, dtype="float32", decoder="auto")
        fingerprints[view] = fp
        assert params["preprocessing"].get("view", transforms.DEFAULT_VIEW) == view
    assert len(set(fingerprints.values())) == len(transforms.VIEWS)
    assert build_backbone("effnet_lite0", weights="random", view="full").preprocessing.decode_short_side == 224


def test_lowres_squash_is_the_whole_frame_in_grey(tmp_path):
    lowres = build_backbone("lowres", view="squash")
    snippets = _snippets(1)
    grey = lowres.preprocess(snippets)  # [1, 8, 64, 64]
    frame = snippets[0, 0].permute(2, 0, 1).float()
    resized = TF.resize(frame[None], [64, 64], interpolation=InterpolationMode.BILINEAR, antialias=True)[0]
    expected = (0.299 * resized[0] + 0.587 * resized[1] + 0.114 * resized[2]).round().clamp(0, 255)
    assert grey.shape == (1, 8, 64, 64)
    assert float((grey[0, 0] - expected).abs().max()) <= 1.0  # integer-weight rounding at exact ties


def test_extract_cli_view_flag_on_real_videos(tmp_path, capsys):
    video = encode(tmp_path / "wide.mp4", pattern_frames(40, H, W, seed=2), fps=10)
    store = tmp_path / "store"
    common = [str(video), "--store", str(store), "--backbones", "effnet_lite0,lowres", "--weights",
              "effnet_lite0=random", "--quiet"]
    assert extract.main(common + ["--view", "effnet_lite0=full", "--view", "lowres=squash"]) == 0
    s = FeatureStore(store)
    rows = {r["backbone"]: r for r in s.features()}
    params = s.extractor_params(s.get_feature(rows["effnet_lite0"]["key"]).fingerprint)
    assert params["preprocessing"]["view"] == "full" and params["decode"]["short_side"] == 224
    assert s.extractor_params(s.get_feature(rows["lowres"]["key"]).fingerprint)["preprocessing"]["view"] == "squash"
    assert np.load(s.get_feature(rows["effnet_lite0"]["key"]).file).shape == (2, 1, 1280)
    s.close()
    # the crop view is another extraction: computed again, not taken from the cache
    capsys.readouterr()
    assert extract.main(common) == 0  # the default views are these
    assert "0 extracted, 1 cached" in capsys.readouterr().out
    assert extract.main(common + ["--view", "crop"]) == 0
    assert "1 extracted, 0 cached" in capsys.readouterr().out
    s = FeatureStore(store)
    assert len({r["key"] for r in s.features("effnet_lite0")}) == 2
    s.close()
    # a view a backbone cannot take, or a malformed flag, is a user error before any video is read
    assert extract.main(common + ["--view", "lowres=full"]) == 2
    assert "lowres takes the views crop, squash" in capsys.readouterr().err
    assert extract.main(common + ["--view", "wide"]) == 2
    assert extract.main(common + ["--view", "i3d=full"]) == 2
    assert "not in --backbones" in capsys.readouterr().err


def test_default_views_cover_the_frame_with_one_crop_and_tile_it_with_several():
    assert build_backbone("i3d", weights="random").preprocessing.view == "full"
    assert build_backbone("effnet_lite0", weights="random").preprocessing.view == "full"
    assert build_backbone("lowres").preprocessing.view == "squash"
    assert build_backbone("effnet_lite0", weights="random", crops=5).preprocessing.view == "crop"
    assert build_backbone("clip_b32", weights="random").preprocessing.view == "crop"  # not measured: published
