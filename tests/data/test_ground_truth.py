"""Tests of data/ground_truth.py: the frame-level ground truth of method.md §7 on the real annotations."""

from __future__ import annotations

import hashlib
import math
from importlib import resources

import numpy as np
import pytest

from data.datasets import DatasetError, DatasetSpec, VideoEntry, load_dataset, load_mask, read_ucf_annotation
from data.ground_truth import SNIPPET_FRAMES, concatenate_labels, frame_labels


def test_snippet_frames_is_the_decoders():
    from data.decode import SNIPPET_FRAMES as decode_snippet

    assert SNIPPET_FRAMES == decode_snippet == 16


def test_intervals_are_end_exclusive_and_truncated():
    gt = frame_labels(3, [(5, 10)])
    assert gt.dtype == np.uint8 and gt.shape == (48,)
    assert gt[5:10].all() and gt.sum() == 5 and gt[4] == 0 and gt[10] == 0
    # crossing the end: cut at 16 * T; starting past the end: nothing
    gt = frame_labels(2, [(20, 50), (40, 60)])
    assert gt.shape == (32,) and gt[20:].all() and gt[:20].sum() == 0
    # several intervals, and another snippet length
    gt = frame_labels(4, [(0, 2), (6, 7)], snippet_frames=2)
    assert gt.tolist() == [1, 1, 0, 0, 0, 0, 1, 0]
    assert frame_labels(0, [(0, 5)]).shape == (0,)


def test_mask_is_truncated_or_padded_with_its_last_label():
    rng = np.random.default_rng(0)
    mask = (rng.random(50) > 0.5).astype(np.uint8)
    mask[-1] = 0
    assert np.array_equal(frame_labels(2, mask=mask), mask[:32])  # truncated to 16 * 2
    gt = frame_labels(5, mask=mask)  # 80 frames: the mask, then its last label (0)
    assert np.array_equal(gt[:50], mask) and gt[50:].sum() == 0
    both = frame_labels(5, [(70, 75)], mask=mask)  # union of mask and intervals
    assert both[70:75].all() and np.array_equal(both[:50], mask) and both[50:70].sum() == 0


def test_frames_past_a_mask_ending_in_an_anomaly_are_anomalous():
    # RTFM's make_gt_sh.py pads a mask shorter than 16 * T with its last label: T = ceil(50 / 16) = 4 covers 64
    # frames, so a mask whose last frame is anomalous gives 14 trailing ones (the old rule gave zeros)
    mask = np.zeros(50, np.uint8)
    mask[40:] = 1
    gt = frame_labels(4, mask=mask)
    assert gt.shape == (64,) and np.array_equal(gt[:50], mask)
    assert gt[50:].tolist() == [1] * 14 and gt.sum() == 10 + 14
    assert frame_labels(4, mask=mask[:45] * 0).sum() == 0  # a mask ending normal pads with zeros
    assert frame_labels(3, mask=mask).sum() == 8  # truncated (48 frames): nothing is padded
    assert frame_labels(2, mask=np.zeros(0, np.uint8)).sum() == 0  # an empty mask has no last label


@pytest.mark.parametrize("bad", [dict(n_snippets=-1), dict(n_snippets=2.5), dict(n_snippets=2, intervals=[(5, 3)]),
                                 dict(n_snippets=2, intervals=[(-1, 3)]), dict(n_snippets=2, mask=np.ones((2, 2))),
                                 dict(n_snippets=2, snippet_frames=0)])
def test_invalid_arguments_raise(bad):
    with pytest.raises(ValueError):
        frame_labels(**bad)


def test_ucf_annotation_format_gives_per_video_arrays():
    # two real lines of the official Temporal_Anomaly_Annotation.txt (second one: two intervals)
    text = ("Arrest001_x264.mp4  Arrest  1185  1485  -1  -1  \n"
            "Vandalism036_x264.mp4  Vandalism  540  780  990  1080  \n"
            "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1  \n")
    ann = read_ucf_annotation(text, "hand.txt")
    assert ann["Arrest001_x264"] == ("Arrest", ((1185, 1485),))
    assert ann["Vandalism036_x264"] == ("Vandalism", ((540, 780), (990, 1080)))
    assert ann["Normal_Videos_003_x264"] == ("Normal", ())
    # T = 80 snippets -> 1280 frames: the interval [1185, 1485) crosses the end and is cut there
    gt = frame_labels(80, ann["Arrest001_x264"][1])
    assert gt.shape == (1280,) and gt.sum() == 1280 - 1185 and gt[1184] == 0 and gt[1185:].all()
    gt = frame_labels(70, ann["Vandalism036_x264"][1])  # 1120 frames: both intervals inside
    assert gt.sum() == (780 - 540) + (1080 - 990) and gt[779] == 1 and gt[780] == 0 and gt[1079] == 1
    # the dataset adapter reads the same rule from the shipped file
    spec = load_dataset("ucf-crime")
    entry = next(e for e in spec.entries if e.name == "Arrest001_x264")
    assert np.array_equal(spec.frame_labels(entry, 80), frame_labels(80, [(1185, 1485)]))


def test_shanghaitech_mask_labels_equal_the_official_mask():
    spec = load_dataset("shanghaitech")
    tests = [e for e in spec.split("test") if e.label == 1]
    for entry in tests[:3] + tests[-2:]:
        with resources.files("data").joinpath("splits", *entry.mask_file.split("/")).open("rb") as fh:
            mask = np.load(fh)
        assert mask.ndim == 1 and set(np.unique(mask)) <= {0, 1} and mask.any()
        short, long = len(mask) // 16, len(mask) // 16 + 3
        assert np.array_equal(spec.frame_labels(entry, short), mask[:16 * short])
        padded = spec.frame_labels(entry, long)
        assert padded.shape == (16 * long,)
        assert np.array_equal(padded[:len(mask)], mask) and (padded[len(mask):] == mask[-1]).all()


def test_concatenate_follows_canonical_test_order():
    spec = load_dataset("ucf-crime")
    tests = spec.split("test")
    # varied counts, each long enough that every interval starts inside the video (one that does not is an error)
    n = {e.name: max(5 + i % 7, max((s for s, _ in e.intervals), default=0) // 16 + 1) for i, e in enumerate(tests)}
    n["Normal_Videos950_x264"] = 3  # a training video's count is ignored
    gt = concatenate_labels(spec, n)
    assert gt.dtype == np.uint8 and gt.shape == (16 * sum(n[e.name] for e in tests),)
    pos = 0
    for e in tests:
        length = 16 * n[e.name]
        assert np.array_equal(gt[pos:pos + length], spec.frame_labels(e, n[e.name])), e.name
        pos += length
    # the first video, Abuse028 ([165, 240)), with T = 11: 176 frames, the interval cut at the end
    assert tests[0].name == "Abuse028_x264" and n[tests[0].name] == 11 and gt[:176].sum() == 176 - 165
    # with T = 20 (320 frames) the interval is inside
    n[tests[0].name] = 20
    gt = concatenate_labels(spec, n)
    assert gt[:320].sum() == 240 - 165 and gt[165:240].all()
    # with T = 5 (80 frames, at most 95 with the unscored tail) it lies wholly past the end: named, not dropped
    n[tests[0].name] = 5
    with pytest.raises(DatasetError, match=r"Temporal_Anomaly_Annotation.txt:\d+: interval \[165, 240\) of "
                                           r"Abuse028_x264 .* past the end of its video \(at most 95 frames"):
        concatenate_labels(spec, n)


def test_concatenate_uses_list_order_not_name_order_and_needs_every_test_video():
    entries = [VideoEntry("b", 1, "X", "test", ((0, 4),)), VideoEntry("a", 0, "Normal", "test"),
               VideoEntry("c", 0, "Normal", "train")]
    spec = DatasetSpec("tiny", entries, "hand")
    gt = concatenate_labels(spec, {"a": 1, "b": 2})
    assert gt.shape == (48,) and gt[:4].all() and gt[4:].sum() == 0  # b (32 frames) first, then a (16)
    with pytest.raises(KeyError, match="1 of 2 test videos.*a"):
        concatenate_labels(spec, {"b": 2})


def test_anomalous_video_without_annotation_has_no_frame_labels():
    spec = load_dataset("ucf-crime")
    train_anomalous = spec.split("train")[0]
    assert train_anomalous.label == 1 and not train_anomalous.intervals
    with pytest.raises(ValueError, match="without frame-level annotation"):
        spec.frame_labels(train_anomalous, 4)
    normal = spec.split("train")[-1]
    assert normal.label == 0 and spec.frame_labels(normal, 4).sum() == 0


# RTFM's list/gt-sh.npy (tianyu0207/RTFM @ cf938f4c, made by list/make_gt_sh.py from the same masks and the
# features' T = ceil(N / 16)): its length, its number of ones, and the SHA-256 of its values as uint8 bytes.
RTFM_GT_SH_FRAMES = 142_912
RTFM_GT_SH_ANOMALOUS_FRAMES = 8_028
RTFM_GT_SH_SHA256 = "537dfc453936e5f2e0adc4cf82b56e09eeb4b3f49ac06f164bc4d18000357a3a"
RTFM_GT_SH_FRAMES_PAST_MASKS = 66  # frames where RTFM's last-label padding differs from zero padding


def test_shanghaitech_ground_truth_reproduces_rtfms_gt_sh():
    spec = load_dataset("shanghaitech")
    tests = spec.split("test")
    anomalous = [e for e in tests if e.label]
    normal = [e for e in tests if not e.label]
    masks = {e.name: load_mask(e.mask_file) for e in anomalous}
    n = {name: math.ceil(len(mask) / SNIPPET_FRAMES) for name, mask in masks.items()}
    # A normal video's ground truth is zeros of length 16 * T whatever T is, so the normal videos' snippet
    # total (gt-sh's length minus the anomalous videos' part) is all that their T values must reproduce.
    normal_frames = RTFM_GT_SH_FRAMES - SNIPPET_FRAMES * sum(n.values())
    assert normal_frames % SNIPPET_FRAMES == 0
    per_video, extra = divmod(normal_frames // SNIPPET_FRAMES, len(normal))
    n.update({e.name: per_video + (i < extra) for i, e in enumerate(normal)})
    gt = concatenate_labels(spec, n)
    assert gt.shape == (RTFM_GT_SH_FRAMES,) and gt.sum() == RTFM_GT_SH_ANOMALOUS_FRAMES
    assert hashlib.sha256(gt.tobytes()).hexdigest() == RTFM_GT_SH_SHA256
    # the old rule (frames past the mask are 0) differs from RTFM's in exactly 66 frames, all past a mask
    zero_padded = np.concatenate([
        frame_labels(n[e.name], mask=np.concatenate([masks[e.name], np.zeros(SNIPPET_FRAMES, np.uint8)]))
        if e.label else np.zeros(SNIPPET_FRAMES * n[e.name], np.uint8) for e in tests])
    assert int((zero_padded != gt).sum()) == RTFM_GT_SH_FRAMES_PAST_MASKS
    assert zero_padded.sum() == RTFM_GT_SH_ANOMALOUS_FRAMES - RTFM_GT_SH_FRAMES_PAST_MASKS
