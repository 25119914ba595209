"""No input can hang a stage (issue 20, items 3): files whose packets carry missing, backwards or absurd timestamps,
written here with PyAV (MPEG-4 part 2, as phones and old DVRs write it), fall back to the decoded order at the
nominal rate with a warning naming the file; a timeline far beyond the container's declared length is refused by
name; a decoder that stops making progress fails its video after ``--decode-timeout`` and the batch goes on.
Both backends, the real decoders (the stalls: a real decoder's frame iterator made to block)."""

from __future__ import annotations

import logging
import threading
import warnings
from fractions import Fraction

import numpy as np
import pytest
from store_stages import small_store
from videos import encode, mux_packets, pattern_frames

from data import decode
from data.decode import (ABSURD_TIMESTAMP_S, MAX_TIMESTAMP_JUMP_S, REMUX_FIX, TIMELINE_LIMIT_FACTOR, Timeline,
                         grid_counts, open_video, placeable_starts)
from data.errors import VideoError
from pipeline.cli import detect, extract
from pipeline.store import FeatureStore

BACKENDS = ["decord", "pyav"]
FPS = 25
N = 60
PERM = [3, 1, 2, 0]  # packets' display order inside each group of four: backwards steps of two frames
JUMP_AT = 30
JUMP_FRAMES = 10**6  # 11 hours at 25 fps: far beyond MAX_TIMESTAMP_JUMP_S
SPREAD = 45000  # 30 minutes between frames (each jump under MAX_TIMESTAMP_JUMP_S) in a file declaring 2.4 s
# Which backend sees broken timestamps in which file (decord reads the packed B-frames' missing timestamps as
# int64's minimum; it reports an mp4's timestamps sorted, so it sees no step backwards).
BROKEN_FOR = {"bframes.avi": {"decord"}, "backwards.mp4": {"pyav"}, "jump.mkv": {"decord", "pyav"}}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("broken")
    frames = pattern_frames(N, 48, 64, seed=1)
    return {
        "frames": frames,
        # the kind: an MPEG-4 AVI with packed B-frames, whose packets carry no timestamps
        "bframes.avi": mux_packets(root / "bframes.avi", frames, lambda k: None, b_frames=2),
        "backwards.mp4": mux_packets(root / "backwards.mp4", frames, lambda k: (4 * (k // 4) + PERM[k % 4], k - 3)),
        "jump.mkv": mux_packets(root / "jump.mkv", frames, lambda k: (k + JUMP_FRAMES * (k >= JUMP_AT),) * 2,
                                format="matroska"),
        "spread.mp4": mux_packets(root / "spread.mp4", frames, lambda k: (k * SPREAD, k)),
        "good.mp4": encode(root / "good.mp4", pattern_frames(48, 48, 64, seed=2), codec="libx264", lossless=False),
    }


def _decode(path, **kwargs):
    with open_video(path, **kwargs) as video:
        frames = np.concatenate(list(video.snippets()))
    return frames, video.info


def _broken_warnings(caplog, path) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "data.decode" and "broken timestamps" in r.getMessage() and str(path) in r.getMessage()]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(BROKEN_FOR))
def test_broken_timestamps_fall_back_to_the_decoded_order_with_a_warning_naming_the_file(files, name, backend,
                                                                                        caplog):
    caplog.set_level(logging.WARNING, logger="data.decode")
    decoded, _ = _decode(files[name], backend=backend, timeline="decoded")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # grid_counts' "invalid value encountered in cast" of the issue
        frames, info = _decode(files[name], backend=backend)
    assert (info.n_frames, info.decoded_frames, info.fps) == (N, N, FPS)  # every decoded frame once, at 25 fps
    np.testing.assert_array_equal(frames, decoded)
    warned = _broken_warnings(caplog, files[name])
    assert len(warned) == (1 if backend in BROKEN_FOR[name] else 0)
    if warned:
        assert "decoded order at the nominal 25 fps" in warned[0] and "ffmpeg -fflags +genpts" in warned[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_timeline_far_beyond_the_declared_length_is_refused_by_name(files, backend):
    path = files["spread.mp4"]
    if backend == "decord":  # decord reports this mp4's frames at their decoding times: a plain 2.4 s timeline
        frames, info = _decode(path, backend=backend)
        assert (info.n_frames, info.decoded_frames) == (N, N)
        return
    with pytest.raises(VideoError) as refused:
        _decode(path, backend=backend)
    assert refused.value.path == str(path)
    assert f"over {TIMELINE_LIMIT_FACTOR}x the 60 frames and 2.40 s the container declares" in refused.value.reason
    assert refused.value.fix == REMUX_FIX
    # the decoded timeline does not use the timestamps: it is the fix the message offers
    _, info = _decode(path, backend=backend, timeline="decoded")
    assert info.n_frames == N


def test_the_streaming_and_the_vectorised_fallbacks_agree():
    step = 1 / FPS
    good = np.arange(20) * step
    cases = {
        "nan": np.concatenate([good[:5], [np.nan], good[6:]]),
        "missing": np.concatenate([good[:5], [-3.6893488e17], good[6:]]),  # decord's packet without a timestamp
        "first missing": np.concatenate([[-3.6893488e17], good[1:]]),
        "backwards": np.concatenate([good[:8], good[8:] - 5 * step]),
        "jump": np.concatenate([good[:8], good[8:] + MAX_TIMESTAMP_JUMP_S + 1]),
        "absurd": np.concatenate([good[:8], [ABSURD_TIMESTAMP_S * 2], good[9:]]),
        "jitter": good + np.tile([0.0, 0.015, -0.015, 0.0], 5),  # under a slot: placed, not given up
    }
    for name, starts in cases.items():
        fixed, broken = placeable_starts(starts, FPS)
        assert (broken is None) == (name == "jitter"), name
        assert np.isfinite(fixed).all()
        end = fixed[-1] + step
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            counts = grid_counts(fixed, end, FPS)
        if broken:  # the decoded order at the nominal rate: each frame once
            np.testing.assert_array_equal(counts, np.ones(20))
        timeline = Timeline("constant", Fraction(FPS), f"{name}.mp4")
        stamps = [None if name == "missing" and i == 5 else s for i, s in enumerate(starts.tolist())]
        timeline.first(stamps[0])
        streamed = [timeline.place(s) for s in stamps[1:]] + [timeline.finish(None)]
        np.testing.assert_array_equal(streamed, counts)
        assert (timeline.broken is None) == (name == "jitter") and timeline.timed == (name == "jitter")


# -------------------------------------------------------------------------------------------- extract, a folder
def _stored_names(store) -> set[str]:
    return {r["first_path"].rsplit("/", 1)[-1] for r in FeatureStore(store).features()}


def test_extract_over_a_folder_with_a_broken_file_finishes_and_keeps_the_good_ones(files, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("bframes.avi", "spread.mp4", "good.mp4"):
        (folder / name).symlink_to(files[name])
    store = tmp_path / "store"
    args = [str(folder), "--backbones", "lowres", "--quiet", "--decode-workers", "1"]
    # PyAV reads spread.mp4's timestamps: refused by name, exit 1; the other two are extracted
    assert extract.main([*args, "--store", str(store), "--decoder", "pyav"]) == 1
    err = capsys.readouterr().err
    assert "spread.mp4" in err and "broken timestamps" in err and "ffmpeg -fflags +genpts" in err
    assert "Traceback" not in err
    assert _stored_names(store) == {"bframes.avi", "good.mp4"}
    (failure,) = FeatureStore(store).failures()
    assert failure["path"].endswith("spread.mp4") and "broken timestamps" in failure["reason"]
    # decord (auto) falls back on bframes.avi's missing timestamps: all three extracted
    assert extract.main([*args, "--store", str(tmp_path / "auto")]) == 0
    assert _stored_names(tmp_path / "auto") == {"bframes.avi", "spread.mp4", "good.mp4"}


# ---------------------------------------------------------------------------------------------------- watchdog
@pytest.fixture
def stall(monkeypatch):
    """Makes the real decoders' frame iterators block, after a snippet's worth of frames, for files named
    ``hang.*``; the blocked threads are released when the test ends."""
    release = threading.Event()
    for cls in (decode.DecordDecoder, decode.PyAVDecoder):
        real = cls._placed_frames

        def blocking(self, size, real=real):
            for i, item in enumerate(real(self, size)):
                if i == 20 and self.info.path.rsplit("/", 1)[-1].startswith("hang."):
                    release.wait(60)  # released at the end; without a watchdog the test fails, not hangs
                yield item

        monkeypatch.setattr(cls, "_placed_frames", blocking)
    yield
    release.set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stalled_decoder_fails_its_video_by_name_and_the_batch_goes_on(files, tmp_path, capsys, stall, backend):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "hang.mp4").symlink_to(files["good.mp4"])
    (folder / "next.mkv").symlink_to(files["jump.mkv"])
    store = tmp_path / "store"
    assert extract.main([str(folder), "--store", str(store), "--backbones", "lowres", "--quiet", "--decoder",
                         backend, "--decode-workers", "1", "--decode-timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "hang.mp4" in err and "decoding made no progress for 2 s" in err and "--decode-timeout" in err
    assert _stored_names(store) == {"next.mkv"}
    (failure,) = FeatureStore(store).failures()
    assert failure["path"].endswith("hang.mp4")


def test_the_decode_timeout_must_be_positive(files, tmp_path, capsys):
    assert extract.main([str(files["good.mp4"]), "--store", str(tmp_path / "s"), "--backbones", "lowres",
                         "--decode-timeout", "0"]) == 2
    assert "--decode-timeout must be above 0 s" in capsys.readouterr().err


def test_detect_fails_a_stalled_video_by_name_and_scores_the_others(files, tmp_path_factory, tmp_path, capsys,
                                                                    stall):
    built = small_store(tmp_path_factory.mktemp("detect"))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "hang.mp4").symlink_to(files["good.mp4"])
    (folder / "next.mkv").symlink_to(files["jump.mkv"])
    out = tmp_path / "out"
    assert detect.main([str(folder), "--store", str(built.store), "--model", built.teacher, "--out", str(out),
                        "--quiet", "--decode-timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "hang.mp4" in err and "decoding made no progress for 2 s" in err
    assert (out / "next.csv").is_file() and not (out / "hang.csv").exists()
