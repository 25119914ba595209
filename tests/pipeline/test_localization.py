"""Localisation metrics (pipeline/evaluate/localization.py) and pixel masks (data/pixel_masks.py): the pointing game
and its chance level, pixel AUC of upsampled cell maps, snippet masks, the localisation report (its keys, the
videos it uses and leaves out); on UCSD Ped1's official pixel masks, the chance level the issue's measurement quotes
(0.07 on 51 snippets), and the report of an oracle map and of a flat one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shared_data import shared_data

from data.pixel_masks import MASK_KEY, PixelMaskError, load_pixel_mask, load_pixel_masks
from pipeline.evaluate.localization import (REPORT_KEYS, cells_on_anomaly, localization_report, pixel_auc,
                                            pointing_game, snippet_masks, upsample)

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


def test_a_tie_for_the_top_cell_counts_the_share_of_tied_cells_that_hit():
    mask = _mask(box=(0, 20, 0, 20))  # the top-left cell and nothing else
    flat = np.zeros((1, *GRID))
    game = pointing_game([flat], [mask[None]])
    assert game.hits == pytest.approx(1 / 77) and game.rate == pytest.approx(game.chance)  # flat: chance, exactly
    two = flat.copy()
    two[0, 0, 0] = two[0, -1, -1] = 1.0  # the hit and a far corner tie
    assert pointing_game([two], [mask[None]]).hits == 0.5


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


def _video(snippets: int = 3, extra: int = 5, anomalous=range(0, 20)) -> np.ndarray:
    """Frame masks ``[16 snippets + extra, 158, 238]``: the box in the ``anomalous`` frames."""
    masks = np.zeros((16 * snippets + extra, 158, 238), bool)
    for f in anomalous:
        masks[f] = _mask()
    return masks


def test_the_report_has_its_documented_keys_and_is_json():
    masks = {"a": _video()}
    maps = {"a": np.stack([_oracle(m) for m in snippet_masks(masks["a"])])}
    report = localization_report(maps, masks)
    assert set(report) == set(REPORT_KEYS)
    json.dumps(report, allow_nan=False)
    assert report["videos"] == ["a"] and report["grid"] == list(GRID) and report["left_out"] == {}
    assert (report["snippets"], report["anomalous_snippets"], report["frames"], report["anomalous_frames"]) == \
        (3, 2, 48, 20)
    assert (report["regions"], report["tracks"]) == (20, 1)
    assert report["pointing_game"] == 1.0 and report["pixel_auc"] > 0.95
    # snippet 1 holds the box in its frames 16-19 only, but its map covers all 16 of its frames: where it finds
    # the box, it also fires in frames 20-31, 12 false positives in 48 frames; the curve rises from the origin to
    # (0.25, 1) and stays there, an area of 0.125 + 0.75
    assert report["rbdc"] == report["tbdc"] == pytest.approx(0.875)
    assert len(report["curves"]["fp_per_frame"]) == 100 and (report["beta"], report["alpha"]) == (0.1, 0.1)


def test_the_report_leaves_out_the_frames_past_the_last_whole_snippet():
    masks = {"a": _video(anomalous=[1, 50])}  # frame 50 of 53 lies past the 3 whole snippets
    report = localization_report({"a": np.zeros((3, *GRID))}, masks)
    assert (report["frames"], report["anomalous_frames"], report["regions"]) == (48, 1, 1)


def test_the_report_uses_normal_videos_by_their_frame_labels_and_names_what_it_leaves_out():
    masks = {"masked": _video(), "short": _video(snippets=1, extra=0, anomalous=range(5)), "unused": _video()}
    flat = np.full((3, *GRID), 0.5)
    maps = {"masked": flat, "normal": flat, "anomalous": flat, "short": flat, "unlabelled": flat}
    labels = {"normal": np.zeros(53), "anomalous": np.r_[np.zeros(20), np.ones(33)]}
    report = localization_report(maps, masks, labels)
    assert report["videos"] == ["masked", "normal"] and (report["masked_videos"], report["normal_videos"]) == (1, 1)
    assert set(report["left_out"]) == {"anomalous", "short", "unlabelled"}
    assert "no pixel mask" in report["left_out"]["anomalous"] and "16 frames, fewer than the 48" in \
        report["left_out"]["short"]
    assert (report["frames"], report["snippets"], report["anomalous_snippets"]) == (96, 6, 2)
    alone = localization_report({"masked": flat}, masks)
    assert report["pixel_auc"] == alone["pixel_auc"] == 0.5
    # a flat map: the whole frame is its one region, a false positive in every frame
    assert report["rbdc"] == report["tbdc"] == 0.0 and report["curves"]["fp_per_frame"] == [1.0]
    without = localization_report(maps, masks)  # no frame labels: masked videos only
    assert without["videos"] == ["masked"] and without["left_out"]["normal"] == "no pixel mask"
    sized = localization_report({"normal": flat}, {"a": _video(), "b": _video()[:, :100]}, labels)
    assert "pass frame_size" in sized["left_out"]["normal"] and sized["rbdc"] is None
    assert localization_report({"normal": flat}, {}, labels, frame_size=(158, 238))["frames"] == 48
    with pytest.raises(ValueError, match="several grids"):
        localization_report({"masked": flat, "normal": np.zeros((3, 2, 2))}, masks, labels)
    with pytest.raises(ValueError, match="masked: maps must be"):
        localization_report({"masked": flat[0]}, masks)


@pytest.mark.real_data
def test_ped1s_report_of_an_oracle_map_and_of_a_flat_one():
    """On the six masked clips of the weak split's test half: the mask pooled to 7 x 11 cells (and upsampled back
    by the report) points right every time with a high pixel AUC and finds the objects (RBDC 0.82, TBDC 0.96 at
    the time of writing); a flat map scores the chance level of the pointing game, pixel AUC 0.5 and no region."""
    masks = load_pixel_masks(shared_data("ucsd_ped1") / "pixel_masks")
    names = [f"test_{n}" for n in (19, 21, 22, 23, 24, 32)]
    oracle = {n: np.stack([_oracle(s) for s in snippet_masks(masks[n])]) for n in names}
    report = localization_report(oracle, masks)
    assert report["videos"] == names and (report["snippets"], report["anomalous_snippets"]) == (72, 51)
    assert (report["frames"], report["tracks"]) == (1152, 7)
    assert report["pointing_game"] == 1.0 and report["pixel_auc"] > 0.99
    assert report["rbdc"] > 0.7 and report["tbdc"] > 0.9
    flat = localization_report({n: np.full_like(m, 0.5) for n, m in oracle.items()}, masks)
    assert flat["pointing_game"] == pytest.approx(flat["pointing_game_chance"])
    assert flat["pointing_game_chance"] == pytest.approx(0.071, abs=0.001)
    assert flat["pixel_auc"] == 0.5 and flat["rbdc"] == flat["tbdc"] == 0.0
