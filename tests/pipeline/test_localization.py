"""Localisation metrics (pipeline/evaluate/localization.py) and pixel masks (data/pixel_masks.py): the pointing game
and its chance level, pixel AUC of upsampled cell maps, snippet masks; on UCSD Ped1's official pixel masks, the
chance level the issue's measurement quotes (0.07 on 51 snippets)."""

from __future__ import annotations

import numpy as np
import pytest
from shared_data import shared_data

from data.pixel_masks import MASK_KEY, PixelMaskError, load_pixel_mask, load_pixel_masks
from pipeline.evaluate.localization import (cells_on_anomaly, pixel_auc, pointing_game, snippet_masks, upsample)

GRID = (7, 11)  # I3D Mixed_5c's cells over a 238 x 158 frame in the full view


def _mask(h=158, w=238, box=(20, 40, 150, 180)) -> np.ndarray:
    m = np.zeros((h, w), bool)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = True
    return m


def _oracle(mask: np.ndarray, grid=GRID) -> np.ndarray:
    """The share of anomalous pixels in each cell: the best a cell map can do."""
    ys = np.linspace(0, mask.shape[0], grid[0] + 1).round().astype(int)
    xs = np.linspace(0, mask.shape[1], grid[1] + 1).round().astype(int)
    return np.array([[mask[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].mean() for j in range(grid[1])]
                     for i in range(grid[0])])


def test_snippet_masks_are_the_union_of_sixteen_frames_and_drop_the_partial_tail():
    frames = np.zeros((40, 4, 4), bool)
    frames[3, 0, 0] = frames[20, 1, 1] = frames[35, 2, 2] = True  # frame 35 lies past the last whole snippet
    s = snippet_masks(frames)
    assert s.shape == (2, 4, 4) and s[0, 0, 0] and s[1, 1, 1] and s.sum() == 2


def test_cells_on_anomaly_marks_exactly_the_cells_the_box_touches():
    on = cells_on_anomaly(_mask(box=(0, 10, 0, 10)), GRID)
    assert on.shape == GRID and on[0, 0] and on.sum() == 1


def test_the_pointing_game_counts_hits_against_the_share_of_touched_cells():
    masks = np.stack([_mask(), _mask(), np.zeros((158, 238), bool)])  # the third snippet is normal: left out
    oracle = np.stack([_oracle(m) for m in masks])
    wrong = np.zeros((3, *GRID))
    wrong[:, -1, -1] = 1.0  # the far corner, off the box
    assert pointing_game([oracle], [masks]).rate == 1.0
    result = pointing_game([wrong], [masks])
    assert (result.hits, result.n, result.rate) == (0, 2, 0.0)
    assert result.chance == pytest.approx(cells_on_anomaly(masks[0], GRID).mean())
    with pytest.raises(ValueError, match="3 maps for 2 snippet masks"):
        pointing_game([oracle], [masks[:2]])


def test_pixel_auc_ranks_the_oracle_high_its_inverse_low_and_a_flat_map_at_chance():
    masks = np.stack([_mask(), np.zeros((158, 238), bool)])
    oracle = np.stack([_oracle(m) for m in masks])
    assert pixel_auc([oracle], [masks]) > 0.95
    assert pixel_auc([-oracle], [masks]) < 0.05
    assert pixel_auc([np.zeros_like(oracle)], [masks]) == 0.5
    assert np.isnan(pixel_auc([oracle[1:]], [masks[1:]]))  # no anomalous pixel at all


def test_upsampling_keeps_a_constant_map_and_the_frame_size():
    up = upsample(np.full((2, 7, 11), 0.3), (158, 238))
    assert up.shape == (2, 158, 238) and np.allclose(up, 0.3)


def test_a_mask_file_is_read_and_a_bad_one_is_named(tmp_path):
    folder = tmp_path / "pixel_masks"
    folder.mkdir()
    np.savez(folder / "v1.npz", **{MASK_KEY: np.zeros((32, 8, 8), np.uint8)})
    np.savez(tmp_path / "wrong_key.npz", other=np.zeros((2, 2, 2)))
    np.savez(tmp_path / "not_binary.npz", **{MASK_KEY: np.full((2, 2, 2), 3, np.uint8)})
    (tmp_path / "garbage.npz").write_bytes(b"not an archive")
    masks = load_pixel_masks(folder)
    assert list(masks) == ["v1"] and masks["v1"].dtype == bool and masks["v1"].shape == (32, 8, 8)
    assert load_pixel_masks(tmp_path / "absent") == {}
    for name, words in (("wrong_key", "no array 'mask'"), ("not_binary", "only 0 and 1"),
                        ("garbage", "not a readable .npz")):
        with pytest.raises(PixelMaskError, match=words) as exc:
            load_pixel_mask(tmp_path / f"{name}.npz")
        assert f"{name}.npz" in str(exc.value)


@pytest.mark.real_data
def test_ped1s_official_masks_give_the_chance_level_of_the_pointing_game():
    """The six spatially annotated clips of the weak split's test half (19, 21, 22, 23, 24, 32), 7 x 11 cells:
    51 anomalous snippets and a chance level of 0.071, the figures issue 22 quotes; a map that is the mask itself
    hits every time."""
    masks = load_pixel_masks(shared_data("ucsd_ped1") / "pixel_masks")
    test_half = [masks[f"test_{n}"] for n in (19, 21, 22, 23, 24, 32)]
    assert all(m.shape == (200, 158, 238) for m in test_half)
    snippets = [snippet_masks(m) for m in test_half]
    oracle = [np.stack([_oracle(s) for s in video]) for video in snippets]
    game = pointing_game(oracle, snippets)
    assert (game.n, game.hits) == (51, 51) and game.chance == pytest.approx(0.071, abs=0.001)
    assert pixel_auc(oracle, snippets) > 0.9
