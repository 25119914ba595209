"""Presentation timelines (``data.decode`` timelines, ``--timeline``) and extractions that do not depend on what a
backbone is extracted beside, on real files written with PyAV: a variable-frame-rate mkv and AVI with fewer coded
frames than their declared timeline, an mp4 with a 10 s gap in its timestamps, truly truncated files."""

from __future__ import annotations

import json
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from feature_sets import TINY_MODEL
from videos import encode, pattern_frames

from data.decode import SNIPPET_FRAMES, Timeline, grid_counts, open_video
from data.errors import VideoError
from extractors.registry import build_backbone
from pipeline.cli import detect, extract, train
from pipeline.extract import extractor
from pipeline.features import FeatureLookupError, describe_extraction, resolve_features
from pipeline.store import FeatureStore

BACKENDS = ["decord", "pyav"]
FPS = 25
# 68 coded frames over a 444-frame timeline (frames at these 1/25 s slots; the last at slot 443), as DVR footage
# and MJPEG exports often are.
VFR_SLOTS = [0, *sorted(np.random.default_rng(0).choice(np.arange(1, 443), 66, replace=False).tolist()), 443]
GAP_PTS = list(range(40)) + [i + 250 for i in range(40, 80)]  # 80 frames, a 10 s gap after frame 39
GAP_GRID = 330  # 40 frames, 250 slots of gap, 40 frames


def _on_grid(frames: np.ndarray, slots: list[int], n: int) -> np.ndarray:
    """What a player shows at each of n grid slots: the latest frame whose slot is at most the slot's."""
    return frames[np.searchsorted(slots, np.arange(n), side="right") - 1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("timeline")
    vfr_frames = pattern_frames(len(VFR_SLOTS), 48, 64, seed=1)
    gap_frames = pattern_frames(len(GAP_PTS), 48, 64, seed=2)
    return {
        "vfr_frames": vfr_frames,
        "mkv": encode(root / "vfr.mkv", vfr_frames, pts=VFR_SLOTS),  # lossless RGB
        "avi": encode(root / "vfr.avi", vfr_frames, pts=VFR_SLOTS, codec="mjpeg", lossless=False,
                      pix_fmt="yuvj420p"),
        "gap": encode(root / "gap.mp4", gap_frames, pts=GAP_PTS, codec="libx264", lossless=False,
                      options={"movflags": "faststart"}),
        "cfr": encode(root / "cfr.mp4", pattern_frames(72, 48, 64, seed=3), codec="libx264", lossless=False),
    }


def _decode(path, **kwargs) -> tuple[np.ndarray, object]:
    with open_video(path, **kwargs) as video:
        frames = np.concatenate(list(video.snippets()))
    return frames, video.info


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_vfr_file_decodes_to_its_constant_rate_grid_with_the_gaps_repeating_the_previous_frame(videos, backend):
    frames, info = _decode(videos["mkv"], backend=backend)
    assert (info.n_frames, info.decoded_frames, info.fps, info.timeline) == (444, 68, FPS, "constant")
    assert len(frames) == 444 // SNIPPET_FRAMES * SNIPPET_FRAMES  # N and T come from the grid: 27 snippets
    np.testing.assert_array_equal(frames, _on_grid(videos["vfr_frames"], VFR_SLOTS, len(frames)))

    decoded, info = _decode(videos["mkv"], backend=backend, timeline="decoded")
    assert (info.n_frames, info.decoded_frames) == (68, 68)
    np.testing.assert_array_equal(decoded, videos["vfr_frames"][:64])


@pytest.mark.parametrize("backend", BACKENDS)
def test_needed_positions_hold_the_grid_frames(videos, backend):
    needed = (0, 7, 15)
    frames, info = _decode(videos["mkv"], backend=backend, needed=needed)
    assert info.n_frames == 444
    at = np.isin(np.arange(len(frames)) % SNIPPET_FRAMES, needed)
    np.testing.assert_array_equal(frames[at], _on_grid(videos["vfr_frames"], VFR_SLOTS, len(frames))[at])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_vfr_avi_with_skipped_frames_is_not_truncated(videos, backend):
    # The header declares 444 frames, 68 are coded: truncation is judged by time, not by frame counts.
    with av.open(str(videos["avi"])) as container:
        assert container.streams.video[0].frames == 444
    frames, info = _decode(videos["avi"], backend=backend)
    assert (info.declared_frames, info.n_frames, info.decoded_frames) == (444, 444, 68)
    assert len(frames) == 432
    _, info = _decode(videos["avi"], backend=backend, timeline="decoded")
    assert info.n_frames == 68


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_10_s_gap_repeats_the_last_frame_on_the_grid(videos, backend):
    decoded, info = _decode(videos["gap"], backend=backend, timeline="decoded")
    assert info.n_frames == 80
    frames, info = _decode(videos["gap"], backend=backend)
    assert (info.n_frames, info.fps, len(frames)) == (GAP_GRID, FPS, GAP_GRID // 16 * 16)
    np.testing.assert_array_equal(frames[:40], decoded[:40])
    assert all(np.array_equal(frames[j], decoded[39]) for j in range(40, 290))  # the gap: frame 39 held 10 s
    np.testing.assert_array_equal(frames[290:320], decoded[40:70])


def test_repeated_frames_are_not_stored(videos):
    # 250 repeats of one frame go through a 16-frame buffer: peak memory stays a few snippets, not the gap.
    tracemalloc.start()
    with open_video(videos["gap"], backend="pyav") as video:
        for _ in video.snippets():
            pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    frame = 48 * 64 * 3
    assert video.info.n_frames == GAP_GRID
    assert peak < 4 * SNIPPET_FRAMES * frame  # the gap alone is 250 frames


def test_a_frame_folder_is_constant_by_definition(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(pattern_frames(20, 32, 40, seed=4)):
        Image.fromarray(f).save(folder / f"{i}.png")
    counts = {tl: _decode(folder, fps=10.0, timeline=tl)[1].n_frames for tl in ("constant", "decoded")}
    assert counts == {"constant": 20, "decoded": 20}


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_truly_truncated_files_still_fail_as_truncated(videos, tmp_path, backend):
    # PyAV decodes up to the cut and judges by time; decord (auto) gives up on the damaged last packet
    # ("truncated or damaged") or cannot open the file (then auto is PyAV).
    expected = "truncated: the decoded frames end at" + ("|truncated or damaged" if backend == "auto" else "")
    for name in ("avi", "mkv", "gap"):  # the AVI loses its index, the mp4 keeps its (faststart) index
        data = videos[name].read_bytes()
        cut = tmp_path / f"cut_{videos[name].name}"
        cut.write_bytes(data[:len(data) * 6 // 10])
        for timeline in ("constant", "decoded"):
            with pytest.raises(VideoError, match=expected):
                _decode(cut, backend=backend, timeline=timeline)


def test_the_streaming_and_the_vectorised_placements_agree():
    # Duplicates (two frames in one slot: the later kept), gaps, a jitter under half a slot, out-of-order stamps.
    rng = np.random.default_rng(5)
    for _ in range(50):
        starts = np.sort(rng.integers(0, 400, size=60)) / 50 + rng.uniform(-0.004, 0.004, size=60)
        starts[0] = 0.0
        end = starts[-1] + 0.04
        timeline = Timeline("constant", FPS)
        timeline.first(Fraction(starts[0]))
        counts = [timeline.place(Fraction(s)) for s in starts[1:]] + [timeline.finish(Fraction(end))]
        np.testing.assert_array_equal(counts, grid_counts(starts, end, FPS))
        assert sum(counts) == max(round(end * FPS), sum(counts[:-1]) + 1)
    # Two frames 1/100 s apart share slot 0: the first is dropped, the second shown.
    np.testing.assert_array_equal(grid_counts(np.array([0.0, 0.01, 0.04]), 0.08, FPS), [0, 1, 1])


# ------------------------------------------------------------------------------------------- extract, detect
def _extract(paths, store, *args) -> int:
    return extract.main([*map(str, paths), "--store", str(store), "--quiet", *args])


def _features(store: Path, backbone: str) -> dict[str, tuple[str, np.ndarray]]:
    """file name -> (fingerprint, array) of every stored feature of ``backbone``."""
    s = FeatureStore(store)
    return {(Path(r["first_path"]).name, r["fingerprint"]): np.load(store / r["file"]) for r in s.features(backbone)}


def test_constant_rate_files_give_the_same_features_and_fingerprint_as_before(videos, tmp_path):
    store = tmp_path / "store"
    assert _extract([videos["cfr"]], store, "--backbones", "lowres") == 0
    assert _extract([videos["cfr"]], store, "--backbones", "lowres", "--timeline", "decoded") == 0
    feats = _features(store, "lowres")
    assert len(feats) == 2
    (default_fp, default), (decoded_fp, decoded) = sorted(
        ((fp, a) for (_, fp), a in feats.items()),
        key=lambda item: "timeline" in FeatureStore(store).extractor_params(item[0])["decode"])
    np.testing.assert_array_equal(default, decoded)  # bit for bit
    assert default.dtype == decoded.dtype and default.shape == (72 // 16, 1, 8 * 64 * 64)
    params = FeatureStore(store).extractor_params(decoded_fp)
    assert params["decode"]["timeline"] == "decoded"
    # The default is left out of the fingerprint: the one of stores made before timelines existed.
    default_params = FeatureStore(store).extractor_params(default_fp)
    assert "timeline" not in default_params["decode"]
    old = extractor.extractor_fingerprint(build_backbone("lowres"), dtype="uint8", decoder="auto",
                                        decode_short_side=64, decode_square=True)
    assert old[0] == default_fp


def test_a_vfr_video_extracts_on_its_grid_and_the_timeline_is_in_the_fingerprint(videos, tmp_path):
    store = tmp_path / "store"
    assert _extract([videos["gap"], videos["avi"]], store, "--backbones", "lowres") == 0
    assert _extract([videos["gap"], videos["avi"]], store, "--backbones", "lowres", "--timeline", "decoded") == 0
    s = FeatureStore(store)
    shapes = {(name, "timeline" in s.extractor_params(fp)["decode"]): a.shape[0]
              for (name, fp), a in _features(store, "lowres").items()}
    assert shapes == {("gap.mp4", False): GAP_GRID // 16, ("gap.mp4", True): 80 // 16,
                      ("vfr.avi", False): 444 // 16, ("vfr.avi", True): 68 // 16}


def test_lowres_alone_and_beside_another_backbone_is_one_extraction(videos, tmp_path):
    store = tmp_path / "store"
    assert _extract([videos["cfr"]], store, "--backbones", "lowres") == 0
    alone = _features(store, "lowres")
    written = {f: f.stat().st_mtime_ns for f in (store / "features" / "lowres").rglob("*.npy")}
    # Beside effnet_lite0 (decoded at 224): lowres is cached under the same fingerprint, nothing recomputed.
    assert _extract([videos["cfr"]], store, "--backbones", "lowres,effnet_lite0",
                    "--weights", "effnet_lite0=random") == 0
    assert _features(store, "lowres").keys() == alone.keys()
    assert {f: f.stat().st_mtime_ns for f in (store / "features" / "lowres").rglob("*.npy")} == written
    # Computed together in a fresh store: the same fingerprint and the same arrays as alone.
    fresh = tmp_path / "fresh"
    assert _extract([videos["cfr"]], fresh, "--backbones", "effnet_lite0,lowres",
                    "--weights", "effnet_lite0=random") == 0
    together = _features(fresh, "lowres")
    assert together.keys() == alone.keys()
    for k in alone:
        np.testing.assert_array_equal(together[k], alone[k])
    assert {fp for _, fp in _features(fresh, "effnet_lite0")} == {
        fp for _, fp in _features(store, "effnet_lite0")}


def test_decode_groups_follow_each_backbones_own_size(tmp_path):
    built = [build_backbone(n, weights="random") for n in ("effnet_lite0", "s3d", "i3d")] + [build_backbone("lowres")]
    groups = extractor.decode_groups(built)
    assert [(plan.short_side, plan.square, members) for plan, members in groups] == [
        (224, False, [0, 2]), (256, False, [1]), (64, True, [3])]
    store = FeatureStore(tmp_path / "store")
    together = extractor.Extractor(store, built, progress=False).fingerprints
    alone = [extractor.Extractor(store, [b], progress=False).fingerprints[0] for b in built]
    assert together == alone  # the fingerprint a backbone gets beside others is the one it gets alone


def test_choose_one_messages_show_what_differs(videos, tmp_path):
    store = tmp_path / "store"
    assert _extract([videos["cfr"]], store, "--backbones", "lowres") == 0
    assert _extract([videos["cfr"]], store, "--backbones", "lowres", "--timeline", "decoded") == 0
    s = FeatureStore(store)
    with pytest.raises(FeatureLookupError) as err:
        resolve_features(s, ["cfr"], ("lowres",))  # a bare name looks the video up as an entry does
    message = str(err.value)
    assert "the store holds 2 lowres extractions" in message
    assert '"decode.timeline": "decoded"' in message and '"decode.timeline": null' in message
    fps = sorted(fp for _, fp in _features(store, "lowres"))
    descriptions = {describe_extraction(s, fp, fps).split(" ", 1)[1] for fp in fps}
    assert len(descriptions) == 2  # never two identical descriptions


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A teacher trained one epoch on effnet_lite0 (random weights) features of 8 tiny constant-rate videos."""
    root = tmp_path_factory.mktemp("teacher")
    (root / "videos").mkdir()
    rows = ["name,label,split,class,intervals"]
    for i in range(8):
        encode(root / "videos" / f"v{i}.mkv", pattern_frames(64, 48, 64, seed=20 + i))
        rows.append(f"v{i},{'anomalous' if i % 2 else 'normal'},train,,")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    store = root / "store"
    assert _extract([root / "videos"], store, "--backbones", "effnet_lite0", "--weights", "effnet_lite0=random") == 0
    assert train.main(["teacher", "--store", str(store), "--dataset", str(root / "labels.csv"), "--backbones",
                       "effnet_lite0", "--epochs", "1", "--quiet", "--set", "train.batch_anomalous=2",
                       "--set", "train.batch_normal=2", *TINY_MODEL]) == 0
    return store, FeatureStore(store).runs("teacher")[0]["key"]


@pytest.mark.slow
def test_detect_reports_times_from_the_presentation_timeline(videos, teacher, tmp_path, capsys):
    store, key = teacher
    common = [str(videos["gap"]), "--store", str(store), "--model", key[:12], "--weights", "effnet_lite0=random",
              "--quiet"]
    overlay = tmp_path / "overlay.mp4"
    assert detect.main([*common, "--out", str(tmp_path / "constant"), "--overlay", str(overlay)]) == 0
    with av.open(str(overlay)) as container:  # the copy is on the same timeline: one frame per scored frame
        assert sum(1 for _ in container.decode(video=0)) == GAP_GRID
    frames = pd.read_csv(tmp_path / "constant" / "gap.csv")
    result = json.loads((tmp_path / "constant" / "gap.json").read_text())
    assert (len(frames), result["fps"], result["n_snippets"], result["timeline"]) == (GAP_GRID, FPS, 20, "constant")
    np.testing.assert_allclose(frames.time_s, np.arange(GAP_GRID) / FPS)
    # Decoded frame 48 is shown at its timestamp, 11.92 s: grid frame 298, not 48 / fps.
    with av.open(str(videos["gap"])) as container:
        shown = [float(f.time) for f in container.decode(video=0)][48]
    assert shown == pytest.approx(11.92)
    assert frames.time_s[298] == pytest.approx(shown)
    assert "warning" not in capsys.readouterr().err  # the run's own timeline: the training features' fingerprint

    assert detect.main([*common, "--out", str(tmp_path / "decoded"), "--timeline", "decoded"]) == 0
    assert "timeline differ" in capsys.readouterr().err
    decoded = json.loads((tmp_path / "decoded" / "gap.json").read_text())
    assert (decoded["n_frames"], decoded["n_snippets"], decoded["timeline"]) == (80, 5, "decoded")
