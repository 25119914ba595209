"""Tests of data/datasets.py on the shipped official splits, hand-written CSVs and a generated synthetic set."""

from __future__ import annotations

import json
import re
from importlib import resources

import numpy as np
import pytest

from data.datasets import (DATASETS, DatasetError, DatasetSpec, VideoEntry, load_dataset, load_labels_csv,
                           read_ucf_annotation, xd_class)
from data.discover import dataset_entries, split_file
from data.synthetic import generate_dataset


def _labels(entries):
    return [e.label for e in entries]


def _anomalous_first(entries, n_anomalous):
    return _labels(entries) == [1] * n_anomalous + [0] * (len(entries) - n_anomalous)


# ------------------------------------------------------------------------------------------- canonical sizes
@pytest.mark.parametrize("name, n_train, n_train_anomalous, n_test, n_test_anomalous", [
    ("ucf-crime", 1610, 810, 290, 140),
    ("shanghaitech", 238, 63, 199, 44),
    ("xd-violence", 3954, 1905, 800, 500),
])
def test_canonical_sizes_and_anomalous_first(name, n_train, n_train_anomalous, n_test, n_test_anomalous):
    spec = load_dataset(name)
    train, test = spec.split("train"), spec.split("test")
    assert spec.name == name and spec.entries == train + test
    assert len(train) == n_train and _anomalous_first(train, n_train_anomalous)
    assert len(test) == n_test and _anomalous_first(test, n_test_anomalous)
    assert len({e.name for e in spec.entries}) == len(spec.entries)
    assert set(e.name for e in spec.entries) == set(dataset_entries(name))  # the names discovery matches
    for e in spec.entries:
        assert (e.class_name == "Normal") == (e.label == 0)
        assert not (e.split == "train" and e.intervals)


def test_ucf_crime_order_is_rtfms():
    """The official files are alphabetical by folder (Vandalism after the normal videos); the canonical
    order of RTFM's ucf-i3d(-test).list / VadCLIP's csv lists keeps file order within anomalous, then normal."""
    spec = load_dataset("ucf-crime")
    train, test = spec.split("train"), spec.split("test")
    # positions copied by hand from RTFM list/ucf-i3d.list and list/ucf-i3d-test.list
    assert [e.name for e in train[:2]] == ["Abuse001_x264", "Abuse002_x264"]
    assert [e.name for e in train[808:812]] == ["Vandalism049_x264", "Vandalism050_x264", "Normal_Videos001_x264",
                                                "Normal_Videos002_x264"]
    assert [e.name for e in test[:3]] == ["Abuse028_x264", "Abuse030_x264", "Arrest001_x264"]
    assert [e.name for e in test[134:142]] == [
        "Stealing079_x264", "Vandalism007_x264", "Vandalism015_x264", "Vandalism017_x264", "Vandalism028_x264",
        "Vandalism036_x264", "Normal_Videos_003_x264", "Normal_Videos_006_x264"]
    assert test[-1].name == "Normal_Videos_944_x264"
    # classes from the folders
    assert {e.class_name for e in test if e.label} == {
        "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents", "Robbery",
        "Shooting", "Shoplifting", "Stealing", "Vandalism"}
    assert train[0].class_name == "Abuse" and train[-1].class_name == "Normal"


def test_ucf_crime_intervals():
    test = {e.name: e for e in load_dataset("ucf-crime").split("test")}
    # official lines, by hand: "Abuse028_x264.mp4  Abuse  165  240  -1  -1", "Arrest001_x264.mp4  Arrest  1185
    # 1485  -1  -1", "Vandalism036_x264.mp4  Vandalism  540  780  990  1080"
    assert test["Abuse028_x264"].intervals == ((165, 240),)
    assert test["Arrest001_x264"].intervals == ((1185, 1485),)
    assert test["Vandalism036_x264"].intervals == ((540, 780), (990, 1080))
    assert test["Normal_Videos_003_x264"].intervals == ()
    assert all(e.intervals for e in test.values() if e.label)
    # UR-DMU's UCF_Annotation.txt ('Class/Name.mp4 N Class s1 e1 s2 e2') is an independent copy: it agrees
    for line in split_file("ucf_crime/UCF_Annotation.txt").splitlines():
        fields = line.split()
        name = fields[0].rsplit("/", 1)[-1][:-len(".mp4")]
        cls, nums = fields[2], [int(v) for v in fields[3:]]
        expected = tuple((s, e) for s, e in zip(nums[0::2], nums[1::2]) if s >= 0)
        assert test[name].intervals == expected and test[name].class_name == cls, line


def test_ucf_annotation_parser_reports_file_and_line():
    with pytest.raises(DatasetError, match=r"hand\.txt:2: .*expected"):
        read_ucf_annotation("A.mp4  Abuse  1  2  -1  -1\nB.mp4  Abuse  1  2\n", "hand.txt")
    with pytest.raises(DatasetError, match=r"hand\.txt:1: bad interval"):
        read_ucf_annotation("A.mp4  Abuse  5  2  -1  -1\n", "hand.txt")


def test_xd_violence_classes_and_intervals():
    spec = load_dataset("xd-violence")
    test = {e.name: e for e in spec.split("test")}
    # annotations.txt lines, by hand
    riot = test["v=S-7rRLrxnVQ__#1_label_B4-0-0"]  # "... 0 1517 1970 3038"
    assert riot.intervals == ((0, 1517), (1970, 3038)) and riot.class_name == "Riot"
    expl = test["v=u5SF4SlqNDQ__#00-02-39_00-03-41_label_G-0-0"]  # "... 77 1430"
    assert expl.intervals == ((77, 1430),) and expl.class_name == "Explosion"
    # a name written with ".mp4" in annotations.txt still finds its video
    assert test["v=U6MC8JJJZSY__#1_label_G-0-0"].intervals
    # several label codes: the first one names the class
    assert test["Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"].class_name == "Explosion"
    assert test["Bad.Boys.II.2003__#00-06-42_00-10-00_label_B2-G-0"].class_name == "Shooting"
    assert all(e.intervals for e in test.values() if e.label)
    assert all(not e.intervals and e.class_name == "Normal" for e in test.values() if not e.label)
    assert {e.class_name for e in spec.entries} == {"Normal", "Fighting", "Shooting", "Riot", "Abuse",
                                                    "Car accident", "Explosion"}
    assert xd_class("x_label_B6-0-0") == "Car accident" and xd_class("x_label_B5-B1-0") == "Abuse"
    with pytest.raises(ValueError, match="unknown XD-Violence label code 'B9'"):
        xd_class("x_label_B9-0-0")


def test_shanghaitech_anomalous_videos_are_the_masked_ones():
    spec = load_dataset("shanghaitech")
    masks = {p.name[:-4] for p in resources.files("data").joinpath("splits", "shanghaitech",
                                                                     "test_frame_mask").iterdir()}
    assert len(masks) == 107 == 63 + 44  # all anomalous videos of ShanghaiTech, split 63 train / 44 test
    for which, original in (("train", "SH_Train.txt"), ("test", "SH_Test.txt")):
        entries = spec.split(which)
        # the ordered list holds exactly Zhong et al.'s split (RTFM's SH_Train / SH_Test), anomalous first
        assert {e.name for e in entries} == set(split_file(f"shanghaitech/{original}").split())
        for e in entries:
            assert e.label == (e.name in masks)
            assert e.label == (len(e.name.split("_")[1]) == 4)  # anomalous ids are XX_XXXX, normal XX_XXX
            assert e.class_name == ("Anomaly" if e.label else "Normal")
            assert (e.mask_file is not None) == (e.label == 1 and which == "test")
    first = spec.split("test")[0]
    assert first.name == "01_0015" and first.mask_file == "shanghaitech/test_frame_mask/01_0015.npy"


# ------------------------------------------------------------------------------------------- spec behaviour
def test_fingerprint_is_json_and_follows_labels():
    spec = load_dataset("shanghaitech")
    fp = spec.fingerprint()
    assert json.loads(json.dumps(fp)) == fp
    assert fp["name"] == "shanghaitech" and len(fp["entries"]) == 437 and fp["entries"][0] == ["01_0014", 1, "train"]
    assert load_dataset("shanghaitech").fingerprint() == fp
    flipped = DatasetSpec(spec.name, [VideoEntry(spec.entries[0].name, 0, "Normal", "train")] + spec.entries[1:],
                          spec.source)
    assert flipped.fingerprint() != fp


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="ucf-crime, shanghaitech, xd-violence, ucsd-ped1, ucsd-ped2, avenue"):
        load_dataset("ucf")
    assert tuple(DATASETS) == ("ucf-crime", "shanghaitech", "xd-violence", "ucsd-ped1", "ucsd-ped2", "avenue")
    assert [e.name for e in load_dataset("UCSD_Ped2").entries] == dataset_entries("ucsd-ped2")
    assert len(load_dataset("UCF_Crime").entries) == 1900  # spelling variants of the names
    with pytest.raises(ValueError, match="train, test"):
        load_dataset("shanghaitech").split("val")


# ------------------------------------------------------------------------------------------- CSV
def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_adapter(tmp_path):
    path = _write(tmp_path / "mine.csv",
                  "name,label,split,class,intervals\n"
                  "videos/cam1_0001.mp4,anomalous,test,Fight,340-400;120-200\n"
                  "cam1_0002,0,train,,\n"
                  "\n"
                  "cam1_0003.avi,ABNORMAL,train,,\n"
                  "cam1_0004,Normal,test,normal,\n"
                  "cam1_0005,1,train,Theft,\n")
    spec = load_dataset(path)
    assert spec.name == "mine" and spec.source == str(path)
    assert [e.name for e in spec.entries] == ["cam1_0002", "cam1_0003", "cam1_0005", "cam1_0001", "cam1_0004"]
    by = {e.name: e for e in spec.entries}
    assert by["cam1_0001"] == VideoEntry("cam1_0001", 1, "Fight", "test", ((120, 200), (340, 400)))
    assert by["cam1_0003"].class_name == "Anomaly" and by["cam1_0004"].class_name == "Normal"
    gt = spec.frame_labels(by["cam1_0001"], 25)
    assert gt.sum() == 80 + 60 and gt[120:200].all() and gt[340:400].all()
    # a folder means <folder>/labels.csv, named after the folder
    folder = tmp_path / "my_cams"
    folder.mkdir()
    _write(folder / "labels.csv", "split,name,label\ntest,a.mp4,1\ntest,b,0\n")
    spec = load_dataset(folder)
    assert spec.name == "my_cams" and [(e.name, e.label) for e in spec.entries] == [("a", 1), ("b", 0)]


@pytest.mark.parametrize("text, line, message", [
    ("name,label,split\na,1,train\nb,maybe,test\n", 3, "label 'maybe' is not one of"),
    ("name,split\na,train\n", 1, "missing column.*label"),
    ("name,label,split,interval\na,1,test,1-2\n", 1, "unknown column.*interval"),
    ("name,label,split\na,1,validation\n", 2, "split 'validation'"),
    ("name,label,split,intervals\na,1,test,200-100\n", 2, "needs 0 <= start < end"),
    ("name,label,split,intervals\na,1,test,12:40\n", 2, "not 'start-end'"),
    ("name,label,split,intervals\na,0,test,1-5\n", 2, "normal video a has anomalous intervals"),
    ("name,label,split,class\na,0,test,Fight\n", 2, "normal video a has class 'Fight'"),
    ("name,label,split\na.mp4,1,train\nb,0,test\na,0,test\n", 4, "already listed on line 2"),
    ("name,label,split\na,1\n", 2, "2 fields, the header has 3"),
    ("name,label,split\n,1,test\n", 2, "empty name"),
])
def test_csv_errors_name_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path / "labels.csv", text)
    with pytest.raises(DatasetError, match=message) as info:
        load_labels_csv(path)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_csv_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="no labels.csv and no videos/ folder"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="empty labels CSV"):
        load_dataset(_write(tmp_path / "labels.csv", "\n"))


# ------------------------------------------------------------------------------------------- synthetic
def test_synthetic_dataset_round_trip(tmp_path):
    ds = generate_dataset(tmp_path / "synth", n_normal=2, n_anomalous=3, seed=4, n_frames=16, width=32,
                          height=32, lossless=True)
    spec = load_dataset(ds.root)
    assert spec.name == "synth" and spec.source == str(ds.labels_path)
    by = {e.name: e for e in spec.entries}
    assert len(by) == len(ds.entries) == 5
    for s in ds.entries:
        e = by[s.path.stem]
        assert (e.label, e.class_name, e.split) == (s.label, s.class_name, s.split)
        assert e.intervals == tuple((ev.start, ev.end) for ev in s.events)
        if e.label:  # one snippet of 16 frames = the whole video
            expected = np.zeros(16, np.uint8)
            for ev in s.events:
                expected[ev.start:ev.end] = 1
            assert np.array_equal(spec.frame_labels(e, 1), expected)
    assert [e.split for e in spec.entries] == sorted((e.split for e in spec.entries), key=["train", "test"].index)
    assert {e.split for e in spec.entries} == {"train", "test"}


def test_an_interval_wholly_outside_its_video_is_an_error_and_one_partly_outside_is_cut(tmp_path):
    path = _write(tmp_path / "labels.csv", "name,label,split,intervals\n"
                                           "cam1,1,test,300-6000\n"
                                           "cam2,1,test,10-20;5000-6000\n")
    spec = load_labels_csv(path)
    cam1, cam2 = spec.entries
    # 320 frames = 20 snippets: [300, 6000) starts inside and is cut at the end (the documented cut)
    gt = spec.frame_labels(cam1, 20, n_frames=320)
    assert gt.shape == (320,) and gt.sum() == 20 and gt[300:].all() and not gt[:300].any()
    assert np.array_equal(spec.frame_labels(cam1, 20), gt)  # the same without the frame count
    # [5000, 6000) lies wholly past a 320-frame video: named with the file, line and length, not dropped
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}:3: interval \[5000, 6000\) of cam2 .* past "
                                           r"the end of its video \(320 frames\)"):
        spec.frame_labels(cam2, 20, n_frames=320)
    with pytest.raises(DatasetError, match=r":3: .* \(at most 335 frames: 20 snippets of 16 and a tail"):
        spec.frame_labels(cam2, 20)  # features without a frame count: the video has at most 16 T + 15 frames
    # an interval in the unscored tail of a known 330-frame video is inside the video: cut, not an error
    tail = load_labels_csv(_write(tmp_path / "tail.csv", "name,label,split,intervals\ncam3,1,test,322-329\n"))
    assert tail.frame_labels(tail.entries[0], 20, n_frames=330).sum() == 0
    with pytest.raises(DatasetError, match=r"tail.csv:2: .* \(320 frames\)"):
        tail.frame_labels(tail.entries[0], 20, n_frames=320)
