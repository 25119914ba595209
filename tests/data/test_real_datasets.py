"""Tests of the UCSD Ped1 / Ped2 and CUHK Avenue adapters (shipped ranges, weak splits, both on-disk layouts) and
of the frame-label folder adapter, on real encoded videos and real .tif frames written here, and on the real
UCSD Ped1 conversion in the reference data outside the repository (``tests/shared_data.py``; skipped outside CI
when it is absent, failed in CI)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shared_data import shared_data
from videos import encode, pattern_frames

from data.datasets import (ANOMALY_CLASS, NORMAL_CLASS, DatasetError, load_dataset, load_frame_label_folder,
                           matlab_ranges)
from data.discover import dataset_entries, find_videos, name_matches, split_file
from data.ground_truth import frame_labels
from pipeline.cli import extract
from pipeline.features import resolve_features
from pipeline.store import FeatureStore

PED1_CLIPS = {"Train": 34, "Test": 36}
PED1_FRAMES = 200
PED2_TEST_FRAMES = (180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180)
PED2_TRAIN_FRAMES = (120, 150, 150, 180, 180, 150, 150, 120, 180, 180, 180, 180, 180, 150, 150, 150)
# CUHK Avenue testing videos 01..21 (the standard counts; the official masks have as many frames)
AVENUE_TEST_FRAMES = (1439, 1211, 923, 947, 1007, 1283, 605, 36, 1175, 841, 472, 1271, 549, 507, 1001, 740, 426,
                      294, 248, 273, 76)
# cvlab-yonsei/MNAD data/frame_labels_ped2.npy and frame_labels_avenue.npy @ 4e108a89: frames, anomalous frames,
# SHA-256 of the values as uint8 bytes. The shipped ranges must give back these arrays exactly.
MNAD_PED2 = (2010, 1648, "f35e7b80960fbce0b553b09f035d06255d546fdd2df746bb16c0a1ec18ec757f")
MNAD_AVENUE = (15324, 3867, "2a85001dd39effd4ee0ec9f9fee7291c8bf5adb070a15b20a8369fb4c5727207")
TINY = (32, 48)  # H, W of the frames written here
LOWRES = ["--backbones", "lowres", "--quiet"]  # the pseudo-backbone: no network, no weights


def _gt_frame(folder: str) -> dict[str, tuple[tuple[int, int], ...]]:
    """Every clip's intervals from a shipped UCSD ``gt_frame.txt``, read line by line (independent of the loader)."""
    out = {}
    for lineno, line in enumerate(split_file(f"{folder}/gt_frame.txt").splitlines(), 1):
        name, ranges = line.split(" ", 1)
        out[name] = matlab_ranges(ranges, f"{folder}/gt_frame.txt:{lineno}")
    return out


def _frames(folder: str) -> dict[str, int]:
    return {n: int(c) for n, c in (line.split() for line in split_file(f"{folder}/frames.txt").splitlines())}


def _labels(n_frames: int, intervals) -> np.ndarray:
    out = np.zeros(n_frames, np.uint8)
    for s, e in intervals:
        out[s:e] = 1
    return out


def _digest(labels: list[np.ndarray]) -> tuple[int, int, str]:
    cat = np.concatenate(labels)
    return len(cat), int(cat.sum()), hashlib.sha256(cat.tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------- shipped numbers
def test_matlab_ranges_are_one_based_inclusive():
    assert matlab_ranges("[60:152]", "x") == ((59, 152),)
    assert matlab_ranges("[5:90, 140:200]", "x") == ((4, 90), (139, 200))
    assert _labels(200, matlab_ranges("[1:15, 45:113]", "x")).sum() == 15 + 69
    for bad, message in (("60:152", "MATLAB range list"), ("[60-152]", "not 'first:last'"),
                         ("[0:10]", "1 <= first <= last"), ("[10:5]", "1 <= first <= last")):
        with pytest.raises(DatasetError, match=rf"^f\.txt:3: .*{message}"):
            matlab_ranges(bad, "f.txt:3")


def test_ucsd_ranges_cover_every_test_clip_within_its_frames():
    for folder, n_train, n_test in (("ucsd_ped1", 34, 36), ("ucsd_ped2", 16, 12)):
        gt, frames = _gt_frame(folder), _frames(folder)
        assert list(gt) == [f"Test{i:03d}" for i in range(1, n_test + 1)]  # every Test clip, no Train clip
        assert set(frames) == {f"Train{i:03d}" for i in range(1, n_train + 1)} | set(gt)
        for name, intervals in gt.items():
            assert intervals and all(0 <= s < e <= frames[name] for s, e in intervals), name
    assert set(_frames("ucsd_ped1").values()) == {PED1_FRAMES}
    assert [_frames("ucsd_ped2")[f"Test{i:03d}"] for i in range(1, 13)] == list(PED2_TEST_FRAMES)
    assert [_frames("ucsd_ped2")[f"Train{i:03d}"] for i in range(1, 17)] == list(PED2_TRAIN_FRAMES)
    # by hand from the official files: UCSDped1.m Test001 [60:152], Test005 [5:90, 140:200], Test029 [1:15,
    # 45:113]; UCSDped2.m Test001 [61:180], Test006 [1:159] (one copy of the .m gives [1:162]: not the official)
    ped1, ped2 = _gt_frame("ucsd_ped1"), _gt_frame("ucsd_ped2")
    assert ped1["Test001"] == ((59, 152),) and ped1["Test005"] == ((4, 90), (139, 200))
    assert ped1["Test029"] == ((0, 15), (44, 113)) and ped1["Test036"] == ((14, 108),)
    assert ped2["Test001"] == ((60, 180),) and ped2["Test006"] == ((0, 159),) and ped2["Test012"] == ((87, 180),)


def test_ucsd_ped2_ranges_give_mnads_frame_labels():
    gt, frames = _gt_frame("ucsd_ped2"), _frames("ucsd_ped2")
    assert _digest([_labels(frames[n], gt[n]) for n in gt]) == MNAD_PED2


def test_avenue_intervals_give_mnads_frame_labels():
    intervals = {}
    for line in split_file("avenue/intervals.txt").splitlines():
        name, *parts = line.split()
        intervals[name] = [tuple(int(v) for v in part.split("-")) for part in parts]
    frames = _frames("avenue")
    assert list(frames) == list(intervals) == [f"test_{i:02d}" for i in range(1, 22)]
    assert tuple(frames.values()) == AVENUE_TEST_FRAMES
    assert all(iv and all(0 <= s < e <= frames[n] for s, e in iv) for n, iv in intervals.items())
    assert _digest([_labels(frames[n], intervals[n]) for n in frames]) == MNAD_AVENUE
    assert intervals["test_01"][0] == (77, 120) and intervals["test_08"] == [(20, 30)]


# ------------------------------------------------------------------------------------------- weak splits
@pytest.mark.parametrize("name, train, test", [
    ("ucsd-ped1", [f"Test{i:03d}" for i in range(1, 19)] + [f"Train{i:03d}" for i in range(1, 21)],
     [f"Test{i:03d}" for i in range(19, 37)] + [f"Train{i:03d}" for i in range(21, 35)]),
    ("ucsd-ped2", [f"Test{i:03d}" for i in range(1, 7)] + [f"Train{i:03d}" for i in range(1, 9)],
     [f"Test{i:03d}" for i in range(7, 13)] + [f"Train{i:03d}" for i in range(9, 17)]),
    ("avenue", [f"test_{i:02d}" for i in range(1, 12)] + [f"train_{i:02d}" for i in range(1, 9)],
     [f"test_{i:02d}" for i in range(12, 22)] + [f"train_{i:02d}" for i in range(9, 17)]),
])
def test_weak_split_is_the_documented_one_anomalous_first(name, train, test):
    spec = load_dataset(name)
    assert spec.name == name and spec.entries == spec.split("train") + spec.split("test")
    assert [e.name for e in spec.split("train")] == train and [e.name for e in spec.split("test")] == test
    assert [e.name for e in spec.entries] == dataset_entries(name)
    official_test = "test_" if name == "avenue" else "Test"
    for e in spec.entries:
        assert e.label == e.name.startswith(official_test)  # every official test clip is anomalous
        assert e.class_name == (ANOMALY_CLASS if e.label else NORMAL_CLASS)
        assert bool(e.intervals) == (e.label == 1 and e.split == "test") and e.mask_file is None
    assert spec.fingerprint()["entries"][0] == [train[0], 1, "train"]


def test_entries_carry_the_names_of_both_layouts():
    ped1 = {e.name: e for e in load_dataset("ucsd-ped1").entries}
    assert ped1["Train001"].aliases == ("train_01", "training/frames/01")
    assert ped1["Test036"].aliases == ("test_36", "testing/frames/36")
    avenue = {e.name: e for e in load_dataset("avenue").entries}
    assert avenue["test_21"].aliases == ("testing_videos/21", "testing/frames/21")
    assert avenue["train_16"].aliases == ("training_videos/16", "training/frames/16")
    assert name_matches("Avenue Dataset/testing_videos/21.avi", "testing_videos/21")
    assert not name_matches("Avenue Dataset/training_videos/21.avi", "testing_videos/21")
    assert not name_matches("21.avi", "testing_videos/21") and name_matches("x/21.avi", "21")


def test_test_labels_follow_the_ranges():
    spec = load_dataset("ucsd-ped1")
    test19 = next(e for e in spec.split("test") if e.name == "Test019")  # UCSDped1.m: [64:138]
    gt = spec.frame_labels(test19, 12)
    assert gt.shape == (192,) and gt.sum() == 138 - 63 and gt[63] == 1 and gt[62] == 0 and gt[137] == 1
    avenue = load_dataset("avenue")
    test21 = next(e for e in avenue.split("test") if e.name == "test_21")
    assert avenue.frame_labels(test21, 4).tolist() == _labels(64, [(13, 66)]).tolist()


# ------------------------------------------------------------------------------------------- on disk
def _tif_clip(folder: Path, n: int = 16, seed: int = 0, ext: str = ".tif") -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(pattern_frames(n, *TINY, seed=seed), 1):
        Image.fromarray(frame.mean(axis=2).astype(np.uint8)).save(folder / f"{i:03d}{ext}")  # grey, as UCSD's
    return folder


def _official_ucsd(root: Path, dataset: str, clips: list[str]) -> dict[str, Path]:
    """The official layout: ``root/UCSDped1/Train/Train001/001.tif ..`` for each clip."""
    return {clip: _tif_clip(root / dataset / clip.rstrip("0123456789") / clip, seed=i) for i, clip in enumerate(clips)}


def test_official_ucsd_layout_finds_clip_folders_and_ignores_gt_masks(tmp_path):
    root = tmp_path / "UCSD_Anomaly_Dataset.v1p2"
    clips = ["Train001", "Train002", "Train021", "Test001", "Test003", "Test019"]
    made = _official_ucsd(root, "UCSDped1", clips)
    _tif_clip(root / "UCSDped1" / "Test" / "Test003_gt", ext=".bmp")  # a pixel-mask folder
    (root / "UCSDped1" / "Test" / "UCSDped1.m").write_text("TestVideoFile = {};\n")
    ped2 = _official_ucsd(root, "UCSDped2", ["Train001", "Test001"])  # same clip names in the other set
    found = find_videos([root], dataset="ucsd-ped1")
    assert found.videos == [made[c] for c in ("Test001", "Test003", "Train001", "Train002", "Test019", "Train021")]
    assert len(found.missing) == 70 - 6 and "Test002" in found.missing
    assert not any(v.name.endswith("_gt") for v in found.videos)
    found2 = find_videos([root], dataset="ucsd-ped2")
    assert found2.videos == [ped2["Test001"], ped2["Train001"]] and len(found2.missing) == 28 - 2


def test_extract_and_lookup_on_the_official_and_the_converted_ucsd_layout(tmp_path, capsys):
    official = tmp_path / "official"
    made = _official_ucsd(official, "UCSDped1", ["Train001", "Test019"])
    _tif_clip(official / "UCSDped1" / "Test" / "Test019_gt", ext=".bmp")
    store = tmp_path / "store"
    code = extract.main([str(official), "--dataset", "ucsd-ped1", "--fps", "10", "--store", str(store), *LOWRES])
    out, err = capsys.readouterr()
    assert code == 1 and "2 extracted" in out and "MISSING 68 ucsd-ped1 videos" in err
    converted = tmp_path / "ucsd_ped1" / "videos"
    converted.mkdir(parents=True)
    encode(converted / "train_02.mp4", pattern_frames(16, *TINY, seed=7), fps=10)
    encode(converted / "test_20.mp4", pattern_frames(16, *TINY, seed=8), fps=10)
    code = extract.main([str(converted.parent), "--dataset", "ucsd-ped1", "--store", str(store), *LOWRES])
    assert code == 1 and "2 extracted" in capsys.readouterr().out
    spec = load_dataset("ucsd-ped1")
    fs = FeatureStore(store)
    features = resolve_features(fs, spec.entries, ("lowres",))
    found = {vf.entry.name: vf for vf in features.found}
    assert sorted(found) == ["Test019", "Test020", "Train001", "Train002"] and len(features.missing) == 66
    first_path = {name: fs.video(vf.records["lowres"].video_key)["first_path"] for name, vf in found.items()}
    assert first_path["Train001"] == str(made["Train001"]) and first_path["Test019"] == str(made["Test019"])
    assert Path(first_path["Train002"]).name == "train_02.mp4" and Path(first_path["Test020"]).name == "test_20.mp4"
    assert found["Test019"].load("lowres").shape[0] == 1  # 16 frames: one snippet


def test_avenue_official_files_with_repeated_names_are_told_apart(tmp_path, capsys):
    root = tmp_path / "Avenue Dataset"
    for folder, seed in (("training_videos", 1), ("testing_videos", 2)):
        (root / folder).mkdir(parents=True)
        encode(root / folder / "01.avi", pattern_frames(16, *TINY, seed=seed), codec="mpeg4", lossless=False)
    (root / "ground_truth_demo" / "testing_label_mask").mkdir(parents=True)
    found = find_videos([root], dataset="avenue")
    assert found.videos == [root / "testing_videos" / "01.avi", root / "training_videos" / "01.avi"]
    store = tmp_path / "store"
    assert extract.main([str(root), "--dataset", "avenue", "--store", str(store), *LOWRES]) == 1
    assert "2 extracted" in capsys.readouterr().out
    fs = FeatureStore(store)
    features = resolve_features(fs, load_dataset("avenue").entries, ("lowres",))
    found = {vf.entry.name: vf for vf in features.found}
    assert sorted(found) == ["test_01", "train_01"]
    paths = {n: Path(fs.video(vf.records["lowres"].video_key)["first_path"]) for n, vf in found.items()}
    assert paths["test_01"].parent.name == "testing_videos" and paths["train_01"].parent.name == "training_videos"
    assert not np.array_equal(found["test_01"].load("lowres"), found["train_01"].load("lowres"))


# ------------------------------------------------------------------------------------------- frame-label folder
def _folder(tmp_path: Path, normal: int, anomalous: int, frames: int = 20) -> Path:
    """videos/n01.mp4 .. (normal) and a01.mp4 .. (anomalous) with labels/a01.npy ..; n02 gets all-zero labels."""
    root = tmp_path / "cams"
    (root / "videos").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(1, normal + 1):
        encode(root / "videos" / f"n{i:02d}.mp4", pattern_frames(frames, *TINY, seed=i))
    for i in range(1, anomalous + 1):
        encode(root / "videos" / f"a{i:02d}.mp4", pattern_frames(frames, *TINY, seed=50 + i))
        labels = np.zeros(frames, np.uint8)
        labels[i:i + 5] = 1
        np.save(root / "labels" / f"a{i:02d}.npy", labels)
    np.save(root / "labels" / "n02.npy", np.zeros(frames, bool))
    return root


def test_frame_label_folder_labels_and_default_split(tmp_path):
    root = _folder(tmp_path, normal=4, anomalous=3)
    spec = load_dataset(root)
    assert spec.name == "cams" and spec.source == str(root.resolve())
    # per class in natural order: train, test, train, ...; each split anomalous first
    assert [(e.name, e.split, e.label) for e in spec.entries] == [
        ("a01", "train", 1), ("a03", "train", 1), ("n01", "train", 0), ("n03", "train", 0),
        ("a02", "test", 1), ("n02", "test", 0), ("n04", "test", 0)]
    a02 = spec.entries[4]
    assert a02.mask_file == str((root / "labels" / "a02.npy").resolve()) and a02.class_name == ANOMALY_CLASS
    assert spec.entries[0].mask_file is None  # training videos keep their video-level label only
    assert np.array_equal(spec.frame_labels(a02, 1), frame_labels(1, [(2, 7)]))
    # a split.csv decides instead
    (root / "split.csv").write_text("name,split\nn01,test\nvideos/a01.mp4,test\na02,train\na03,test\nn02,train\n"
                                    "n03,train\nn04,test\n")
    spec = load_dataset(root)
    assert [(e.name, e.split) for e in spec.entries] == [
        ("a02", "train"), ("n02", "train"), ("n03", "train"),
        ("a01", "test"), ("a03", "test"), ("n01", "test"), ("n04", "test")]


def test_frame_label_folder_of_frame_folders_counts_their_frames(tmp_path):
    root = tmp_path / "peds"
    _tif_clip(root / "videos" / "clip2", n=16, ext=".png")
    _tif_clip(root / "videos" / "clip10", n=16, ext=".png")
    (root / "labels").mkdir()
    np.save(root / "labels" / "clip10.npy", np.ones(16, np.int64))
    spec = load_frame_label_folder(root, name="peds")
    assert [(e.name, e.split, e.label) for e in spec.entries] == [("clip10", "train", 1), ("clip2", "train", 0)]
    np.save(root / "labels" / "clip2.npy", np.ones(15, np.uint8))
    with pytest.raises(DatasetError, match=r"clip2\.npy: 15 frame labels for the 16 frames of .*clip2; give one"):
        load_dataset(root)


@pytest.mark.parametrize("write, message", [
    (lambda r: np.save(r / "labels" / "n09.npy", np.zeros(20, np.uint8)), r"n09\.npy: no video 'n09' in "),
    (lambda r: np.save(r / "labels" / "a01.npy", np.zeros((20, 2), np.uint8)), r"a01\.npy: .*must be 1-D"),
    (lambda r: np.save(r / "labels" / "a01.npy", np.full(20, 2, np.uint8)), r"a01\.npy: .*values \[2\]"),
    (lambda r: np.save(r / "labels" / "a01.npy", np.ones(20, np.float32)), r"a01\.npy: .*dtype float32"),
    (lambda r: np.save(r / "labels" / "a01.npy", np.ones(19, np.uint8)), r"a01\.npy: 19 frame labels for the 20"),
    (lambda r: (r / "labels" / "a01.npy").write_bytes(b"not numpy"), r"a01\.npy: cannot read the frame labels"),
    (lambda r: (r / "split.csv").write_text("name,split\na01,train\nx9,test\n"), r"split\.csv:3: no video 'x9'"),
    (lambda r: (r / "split.csv").write_text("name,split\na01,val\n"), r"split\.csv:2: split 'val'"),
    (lambda r: (r / "split.csv").write_text("name,set\na01,test\n"), r"split\.csv:1: the header must be name,split"),
    (lambda r: (r / "split.csv").write_text("name,split\na01,train\na01,test\n"), r"split\.csv:3: .*line 2"),
    (lambda r: (r / "split.csv").write_text("name,split\na01,train\nn01,test\n"), r"split\.csv: 1 videos have no "
                                                                                   r"line, e\.g\. n02"),
])
def test_frame_label_folder_errors_name_the_file(tmp_path, write, message):
    root = _folder(tmp_path, normal=2, anomalous=1)
    write(root)
    with pytest.raises(DatasetError, match=message):
        load_dataset(root)


@pytest.mark.real_data
def test_shared_ucsd_ped1_in_the_frame_label_layout():
    root = shared_data("ucsd_ped1")
    spec = load_dataset(root)
    train, test = spec.split("train"), spec.split("test")
    assert (len(train), sum(e.label for e in train), len(test), sum(e.label for e in test)) == (35, 18, 35, 18)
    assert [e.name for e in test[:2]] == ["test_02", "test_04"] and test[-1].name == "train_34"
    assert all(e.label == e.name.startswith("test_") for e in spec.entries)
    for e in test[:18]:
        assert np.array_equal(spec.frame_labels(e, 12), np.load(root / "labels" / f"{e.name}.npy")[:192])
    # the extraction of this folder is found under the official dataset's names, via the aliases
    by_alias = {e.aliases[0]: e.name for e in load_dataset("ucsd-ped1").entries}
    assert sorted(by_alias) == sorted(e.name for e in spec.entries)
    found = find_videos([root], dataset="ucsd-ped1")
    assert not found.missing and [v.stem for v in found.videos] == [load_dataset("ucsd-ped1").entries[i].aliases[0]
                                                                     for i in range(70)]


@pytest.mark.real_data
def test_shipped_ped1_ranges_reproduce_the_shared_frame_labels():
    root = shared_data("ucsd_ped1")
    gt = _gt_frame("ucsd_ped1")
    assert len(gt) == PED1_CLIPS["Test"] == len(list((root / "labels").glob("test_*.npy")))
    for i, (name, intervals) in enumerate(gt.items(), 1):
        labels = np.load(root / "labels" / f"test_{i:02d}.npy")
        assert labels.shape == (PED1_FRAMES,) and np.array_equal(_labels(PED1_FRAMES, intervals), labels), name
    # intervals.csv writes the same intervals 0-based, end exclusive
    rows = [line.split(",") for line in (root / "intervals.csv").read_text().splitlines()[1:]]
    written = {name: tuple(tuple(int(v) for v in part.split("-")) for part in cell.split()) for name, *_, cell in rows
               if name.startswith("test_")}
    assert written == {f"test_{i:02d}": intervals for i, intervals in enumerate(gt.values(), 1)}
