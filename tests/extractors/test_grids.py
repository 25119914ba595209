"""The feature maps of s3d and CLIP (``embed_map``): shapes, the cells' relation to the global feature, and a CLIP
grid extraction through the command line on a real video. Random weights (neither is installed here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videos import encode, pattern_frames

from data.datasets.base import VideoEntry
from extractors.registry import build_backbone
from pipeline.cli import extract
from pipeline.features import VideoFeatures, extraction_candidates
from pipeline.store import FeatureStore


@pytest.mark.slow
def test_s3d_map_is_its_last_feature_map_averaged_over_time_and_its_mean_the_global_feature():
    b = build_backbone("s3d", weights="random", view="full")
    assert b.grids
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 224, 299)  # a 3:4 frame in the full view
    with torch.inference_mode():
        last = b.model.features(x)  # [1, 1024, T', h, w]
        fmap = b.embed_map(x)
        assert fmap.shape == (1, 1024, *last.shape[-2:]) and last.shape[-2:] == (7, 9)
        torch.testing.assert_close(fmap, last.mean(dim=2))
        whole = b.embed(x)
        torch.testing.assert_close(fmap.mean(dim=(-2, -1)), whole, rtol=1e-5, atol=1e-5 * whole.abs().max().item())
    b.use_grid("2x3")
    snippets = torch.randint(0, 256, (1, 16, 48, 64, 3), dtype=torch.uint8)
    cells = b.extract(snippets)
    assert cells.shape == (1, 6, 1024) and b.last_grid == (2, 3)
    assert cells.std(dim=1).mean() > 0  # six different cells


@pytest.mark.parametrize("name, side", [("clip_b32", 7), pytest.param("clip", 14, marks=pytest.mark.slow)])
def test_clip_cells_are_the_patch_tokens_normed_and_projected_like_the_class_token(name, side):
    b = build_backbone(name, weights="random")
    visual = b.model
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    b.use_grid("native")
    with torch.inference_mode():
        fmap = b.embed_map(x)
        # open_clip's own forward, asked for its tokens: the class token pooled and projected, and the patch
        # tokens after the final layer norm (not projected).
        visual.output_tokens = True
        try:
            pooled, tokens = visual(x)
        finally:
            visual.output_tokens = False
        assert fmap.shape == (2, 512, side, side)
        cells = fmap.flatten(2).transpose(1, 2)  # [2, side * side, 512], row-major
        torch.testing.assert_close(cells, tokens @ visual.proj, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(pooled, b.embed(x))
        # The class token is not the cells' mean: a grid extraction's global feature is another feature.
        assert not torch.allclose(fmap.mean(dim=(-2, -1)), pooled, atol=1e-2)


@pytest.mark.slow
def test_clip_grid_extraction_stores_the_cells_and_their_mean_as_global_feature(tmp_path):
    video = encode(tmp_path / "cam.mkv", pattern_frames(32, 48, 64, seed=7))
    store = tmp_path / "s"
    common = [str(video), "--store", str(store), "--backbones", "clip_b32", "--weights", "clip_b32=random", "--quiet"]
    assert extract.main(common) == 0
    assert extract.main([*common, "--grid", "native", "--frames-per-snippet", "2"]) == 0
    assert extract.main([*common, "--grid", "native"]) == 0
    records = list(extraction_candidates(FeatureStore(store), "cam", "clip_b32").values())
    assert len(records) == 3
    whole = next(r for r in records if r.grid is None)
    grids = [r for r in records if r.grid is not None]
    assert all(r.grid == (7, 7) and r.read().shape == (2, 49, 512) for r in grids)
    params = FeatureStore(store)
    one = next(r for r in grids if params.extractor_params(r.fingerprint)["frame_indices"] == [8])
    two = next(r for r in grids if r is not one)
    assert not np.allclose(one.read(), two.read())  # k frames are embedded and averaged per cell
    entry = VideoEntry("cam", 0, "Normal", "test")
    on_grid = VideoFeatures(entry, {"clip_b32": one})
    np.testing.assert_allclose(on_grid.load("clip_b32"), one.read().mean(axis=1, keepdims=True), rtol=1e-6)
    assert not np.allclose(on_grid.load("clip_b32"), whole.read(), atol=1e-2)  # not the class token


def test_clip_grid_on_an_open_clip_without_the_layout_is_refused_by_name(monkeypatch):
    b = build_backbone("clip_b32", weights="random")
    monkeypatch.setattr(b.model, "pool_type", "avg")  # an open_clip tower that pools otherwise
    with pytest.raises(ValueError, match="clip_b32 cannot keep a grid with this open_clip"):
        b.use_grid("native")
    assert b.grid is None


@pytest.mark.slow
def test_i3d_mixed4f_cells_are_the_same_network_one_stage_earlier_at_twice_the_grid():
    """i3d_mixed4f reads Mixed_4f of i3d's network with i3d's weights: 832 channels averaged over time, a grid of
    twice Mixed_5c's rows and columns on the same view (14 x 22 against 7 x 11 on Ped1's 224 x 337 full view), its
    cells' mean the global feature, and a fingerprint of its own."""
    from extractors.base import preprocess_snippets

    fine = build_backbone("i3d_mixed4f", weights="random", grid="native")
    coarse = build_backbone("i3d", weights="random", grid="native")
    assert fine.dim == 832 and fine.preprocessing == coarse.preprocessing
    snippets = torch.randint(0, 256, (1, 16, 158, 238, 3), dtype=torch.uint8)  # a Ped1 frame's size
    cells, coarse_cells = fine.extract(snippets), coarse.extract(snippets)
    assert fine.last_grid == (14, 22) and coarse.last_grid == (7, 11)
    assert cells.shape == (1, 14 * 22, 832) and coarse_cells.shape == (1, 7 * 11, 1024)
    x = preprocess_snippets(snippets, fine.preprocessing, fine.frame_indices, 1)
    with torch.inference_mode():
        mixed_4f = coarse.model.extract_endpoint(x, "Mixed_4f")  # [1, 832, 4, 14, 22]: the same random network
    assert mixed_4f.shape == (1, 832, 4, 14, 22)
    torch.testing.assert_close(cells[0], mixed_4f.mean(dim=2)[0].reshape(832, -1).T)
    fine.use_grid(None)
    torch.testing.assert_close(fine.extract(snippets)[0, 0], cells[0].mean(0), rtol=1e-5, atol=1e-6)
    assert fine.fingerprint_params()["backbone"] == "i3d_mixed4f"
    assert fine.fingerprint_params()["weights"] == coarse.fingerprint_params()["weights"]
