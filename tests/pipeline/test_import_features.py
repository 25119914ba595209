"""Tests of data/community_features.py and the import CLI (pipeline/import_features.py) on real .npy files
laid out like the community's downloads, named by lists in the authors' formats; and of a release's train and
test lists imported in two calls, then trained on and evaluated."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_train import FAST, STRONG

from data.community_features import (CommunityFeature, FeatureFileError, feature_name, load_community_feature,
                                     read_feature_list)
from data.synthetic_features import make_feature_dataset, write_feature_dataset
from pipeline.cli import evaluate, import_features, train
from pipeline.import_features import importer
from pipeline.keys import hash_json
from pipeline.store import FeatureStore

T, D = 7, 12
SH_NAMES = ("01_0015", "01_0025", "01_001")  # RTFM shanghai-i3d-test-10crop.list, first two and a normal one
XD_NAMES = ("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6", "v=xyz__#1_label_A")
XD_CROPS = 5


def _rng_array(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture
def rtfm(tmp_path):
    """RTFM-style: one [T, 10, D] file per video (``Name_i3d.npy``) somewhere below the root; the list carries the
    authors' absolute paths."""
    root = tmp_path / "download"
    (root / "SH_Test_ten_crop_i3d").mkdir(parents=True)
    arrays = {}
    for i, name in enumerate(SH_NAMES):
        arrays[name] = _rng_array(i, (T + i, 10, D))
        np.save(root / "SH_Test_ten_crop_i3d" / f"{name}_i3d.npy", arrays[name])
    listing = tmp_path / "shanghai-i3d-test-10crop.list"
    listing.write_text("".join(f"/home/yu/yu_ssd/SH_Test_ten_crop_i3d/{n}_i3d.npy\n" for n in SH_NAMES))
    return root, listing, arrays


@pytest.fixture
def xd(tmp_path):
    """XDVioDet-style: per-crop [T, D] files ``Name__<c>.npy``, listed with Windows paths, crops shuffled and the
    two videos interleaved."""
    root = tmp_path / "xd" / "RGBTest"
    root.mkdir(parents=True)
    arrays = {}
    for i, name in enumerate(XD_NAMES):
        arrays[name] = _rng_array(10 + i, (T, XD_CROPS, D))
        for c in range(XD_CROPS):
            np.save(root / f"{name}__{c}.npy", arrays[name][:, c])
    order = [(0, 3), (0, 0), (1, 4), (0, 4), (1, 0), (0, 1), (1, 2), (0, 2), (1, 1), (1, 3)]
    listing = tmp_path / "rgb_test.list"
    listing.write_text("".join(f"E:\\DLCode\\XD\\i3d-features\\RGBTest\\{XD_NAMES[v]}__{c}.npy\n" for v, c in order))
    return tmp_path / "xd", listing, arrays


def test_feature_name():
    assert feature_name("G:\\UCF_Train_ten_crop_i3d\\Abuse001_x264_i3d.npy") == "Abuse001_x264"
    assert feature_name("/home/yu/yu_ssd/SH_Test_ten_crop_i3d/01_0015_i3d.npy") == "01_0015"
    assert feature_name("/media/peng/RGBTest/Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6__3.npy") == \
        "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"
    assert feature_name("dataset/Abuse/Abuse028_x264__9.npy") == "Abuse028_x264"
    assert feature_name("Normal_Videos_003_x264.npy") == "Normal_Videos_003_x264"


def test_rtfm_list_with_root(rtfm):
    root, listing, arrays = rtfm
    features = read_feature_list(listing, root=root)
    assert [f.name for f in features] == list(SH_NAMES)
    for f in features:
        assert len(f.files) == 1 and f.files[0].is_file() and f.files[0].parent.parent == root
        out = load_community_feature(f)
        assert out.dtype == np.float32 and np.array_equal(out, arrays[f.name])
    # without the root the authors' paths do not exist: reported with the list line
    with pytest.raises(FeatureFileError, match=r"shanghai-i3d-test-10crop\.list:2: .*not found.*--root"):
        load_community_feature(read_feature_list(listing)[1])


def test_xd_per_crop_files_grouped_in_crop_order(xd):
    root, listing, arrays = xd
    features = read_feature_list(listing, root=root)
    assert [f.name for f in features] == list(XD_NAMES)  # order of first appearance
    first = features[0]
    assert [p.name for p in first.files] == [f"{XD_NAMES[0]}__{c}.npy" for c in range(XD_CROPS)]
    assert first.lines == (2, 6, 8, 1, 4)  # list lines of crops 0..4
    for f in features:
        out = load_community_feature(f)
        assert out.shape == (T, XD_CROPS, D) and np.array_equal(out, arrays[f.name])


def test_vadclip_csv_and_two_dim_file(tmp_path):
    np.save(tmp_path / "Abuse028_x264__0.npy", _rng_array(1, (T, D)).astype(np.float16))
    listing = tmp_path / "ucf_CLIP_rgbtest.csv"
    listing.write_text("path,label\n/home/x/UCFClipFeatures/Abuse/Abuse028_x264__0.npy,Abuse\n")
    (feature,) = read_feature_list(listing, root=tmp_path)
    out = load_community_feature(feature)
    assert feature.name == "Abuse028_x264" and out.shape == (T, 1, D) and out.dtype == np.float32
    # relative paths without a root are looked up beside the list
    listing.write_text("path,label\nAbuse028_x264__0.npy,Abuse\n")
    assert read_feature_list(listing)[0].files == (tmp_path / "Abuse028_x264__0.npy",)


def test_malformed_lists_and_files(tmp_path):
    listing = tmp_path / "bad.list"
    listing.write_text("/a/v__0.npy\n/a/v__2.npy\n")
    with pytest.raises(FeatureFileError, match=r"bad\.list:1: v has crops \[0, 2\]"):
        read_feature_list(listing)
    listing.write_text("/a/v.npy\n/a/readme.txt\n")
    with pytest.raises(FeatureFileError, match=r"bad\.list:2: .*not a \.npy file"):
        read_feature_list(listing)
    listing.write_text("/a/v__0.npy\n/a/v.npy\n")
    with pytest.raises(FeatureFileError, match="both as one file and as per-crop"):
        read_feature_list(listing)
    # crops that disagree in T
    np.save(tmp_path / "v__0.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "v__1.npy", np.zeros((5, 4), np.float32))
    feature = CommunityFeature("v", (tmp_path / "v__0.npy", tmp_path / "v__1.npy"))
    with pytest.raises(FeatureFileError, match=r"v__0\.npy 3x4, v__1\.npy 5x4"):
        load_community_feature(feature)
    np.save(tmp_path / "w.npy", np.full((2, 1, 3), np.nan, np.float32))
    with pytest.raises(FeatureFileError, match="NaN"):
        load_community_feature(CommunityFeature("w", (tmp_path / "w.npy",)))
    np.save(tmp_path / "u.npy", np.zeros(4, np.float32))
    with pytest.raises(FeatureFileError, match=r"shape \(4,\)"):
        load_community_feature(CommunityFeature("u", (tmp_path / "u.npy",)))


def _stored(store: FeatureStore, name: str, backbone: str) -> list[np.ndarray]:
    return [np.load(rec.file) for key in store.video_keys_for(name)
            for rec in store.features_of_video(key, backbone)]


def test_import_cli_round_trip_and_no_op_reimport(rtfm, xd, tmp_path, capsys):
    root, listing, arrays = rtfm
    store_dir = tmp_path / "store"
    args = [str(listing), "--backbone", "i3d", "--store", str(store_dir), "--root", str(root), "--quiet"]
    assert import_features.main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "3 imported, 0 already there, 0 failed" in out[0]
    store = FeatureStore(store_dir)
    for name in SH_NAMES:
        (got,) = _stored(store, name, "i3d")
        assert got.dtype == np.float32 and np.array_equal(got, arrays[name])
    assert store.video_keys_for("01_0015") == [hash_json({"imported_video": "01_0015"})]
    files = sorted((store_dir / "features").rglob("*.npy"))
    mtimes = [f.stat().st_mtime_ns for f in files]

    assert import_features.main(args) == 0  # again: nothing to do
    assert "0 imported, 3 already there, 0 failed" in capsys.readouterr().out
    assert sorted((store_dir / "features").rglob("*.npy")) == files
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert import_features.main(args + ["--force"]) == 0
    assert "3 imported, 0 already there" in capsys.readouterr().out

    # another backbone for the same names joins the same videos
    xd_root, xd_list, xd_arrays = xd
    np.save(root / "SH_Test_ten_crop_i3d" / "01_0015__0.npy", arrays["01_0015"][:, 0])
    clip_list = tmp_path / "clip.list"
    clip_list.write_text("/elsewhere/01_0015__0.npy\n")
    assert import_features.main([str(clip_list), "--backbone", "clip", "--store", str(store_dir), "--root",
                                 str(root), "--quiet"]) == 0
    capsys.readouterr()
    assert len(store.video_keys_for("01_0015")) == 1
    (clip,) = _stored(store, "01_0015", "clip")
    assert clip.shape == (T, 1, D) and np.array_equal(clip[:, 0], arrays["01_0015"][:, 0])
    assert len(_stored(store, "01_0015", "i3d")) == 1
    # XD per-crop features through the CLI
    assert import_features.main([str(xd_list), "--backbone", "i3d", "--store", str(store_dir), "--root",
                                 str(xd_root), "--quiet"]) == 0
    capsys.readouterr()
    for name in XD_NAMES:
        (got,) = _stored(store, name, "i3d")
        assert np.array_equal(got, xd_arrays[name])


def test_import_reports_corrupt_file_and_imports_the_rest(rtfm, tmp_path, capsys):
    root, listing, arrays = rtfm
    bad = root / "SH_Test_ten_crop_i3d" / f"{SH_NAMES[1]}_i3d.npy"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated download
    store_dir = tmp_path / "store"
    rc = import_features.main([str(listing), "--backbone", "i3d", "--store", str(store_dir), "--root", str(root),
                               "--source", "RTFM release", "--quiet"])
    assert rc == 1
    captured = capsys.readouterr()
    assert "2 imported, 0 already there, 1 failed" in captured.out
    assert f"FAILED {listing}:2" in captured.err and "download the file again" in captured.err
    store = FeatureStore(store_dir)
    (failure,) = store.failures()
    assert failure["stage"] == "import" and failure["path"] == str(bad) and "not a readable" in failure["reason"]
    assert _stored(store, SH_NAMES[1], "i3d") == []
    for name in (SH_NAMES[0], SH_NAMES[2]):
        (got,) = _stored(store, name, "i3d")
        assert np.array_equal(got, arrays[name])
        rec = store.features_of_video(store.video_keys_for(name)[0], "i3d")[0]
        assert rec.fingerprint == hash_json({"backbone": "i3d", "imported": True, "source": "RTFM release"})


def test_import_usage_errors(tmp_path, capsys):
    store = str(tmp_path / "store")
    assert import_features.main([str(tmp_path / "nope.list"), "--backbone", "i3d", "--store", store]) == 2
    assert "feature list(s) not found" in capsys.readouterr().err
    listing = tmp_path / "a.list"
    listing.write_text("/x/a.npy\n")
    assert import_features.main([str(listing), "--backbone", "../i3d", "--store", store]) == 2
    assert import_features.main([str(listing), "--backbone", "i3d", "--store", store, "--root",
                                 str(tmp_path / "missing")]) == 2


# -- a release's train and test lists: one source, so evaluation scores the test videos with the run's features ----
RELEASE_DIR = "/home/authors/UCF_Train_ten_crop_i3d"  # the authors' paths the lists carry
RELEASE_CROPS, RELEASE_DIM = 2, 16


@pytest.fixture
def release(tmp_path):
    """RTFM-style release of a synthetic set: ``ucf-i3d.list`` (train) and ``ucf-i3d-test.list`` naming .npy files
    by the authors' paths (found below ``root``), and the labels CSV. Returns (root, train list, test list,
    labels, test video names)."""
    videos = make_feature_dataset(dims={"i3d": RELEASE_DIM}, signal={"i3d": STRONG}, n_train=(6, 6), n_test=(3, 3),
                                  snippets=(24, 40), crops=RELEASE_CROPS)
    files = write_feature_dataset(tmp_path / "download", videos)
    lists = {}
    for split, list_name in (("train", "ucf-i3d.list"), ("test", "ucf-i3d-test.list")):
        lists[split] = tmp_path / list_name
        lists[split].write_text("".join(f"{RELEASE_DIR}/{v.name}.npy\n" for v in videos if v.split == split))
    test_names = [v.name for v in videos if v.split == "test"]
    return tmp_path / "download" / "features", lists["train"], lists["test"], files["labels"], test_names


def _import(store, listing, root, *extra: str) -> int:
    return import_features.main([str(listing), "--backbone", "i3d", "--store", str(store), "--root", str(root),
                                 "--quiet", *extra])


def _fingerprints(store: FeatureStore, names) -> set[str]:
    return {rec.fingerprint for name in names for key in store.video_keys_for(name)
            for rec in store.features_of_video(key, "i3d")}


def _train_teacher(store, labels) -> str:
    assert train.main(["teacher", "--store", str(store), "--dataset", str(labels), "--backbones", "i3d",
                       "--epochs", "2", "--quiet", *FAST]) == 0
    return FeatureStore(store).runs("teacher")[-1]["key"]


@pytest.mark.parametrize("list_name, source", [
    ("ucf-i3d.list", "ucf-i3d"), ("ucf-i3d-test.list", "ucf-i3d"),  # RTFM
    ("ucf_CLIP_rgb.csv", "ucf_CLIP_rgb"), ("ucf_CLIP_rgbtest.csv", "ucf_CLIP_rgb"),  # VadCLIP
    ("UCF_Train.list", "UCF"), ("UCF_Test.list", "UCF"),  # UR-DMU
    ("shanghai-i3d-train-10crop.list", "shanghai-i3d-10crop"), ("shanghai-i3d-test-10crop.list",
                                                                "shanghai-i3d-10crop"),
    ("rgb.list", "rgb"), ("rgbtest.list", "rgb"),  # XDVioDet
    ("features/ucf/test.list", "ucf"),  # named by the split alone: its folder
])
def test_default_source_drops_the_split_from_the_list_name(list_name, source):
    assert importer.list_source(list_name) == source


def test_train_and_test_lists_imported_in_two_calls_share_one_extraction(release, tmp_path, capsys):
    root, train_list, test_list, labels, test_names = release
    store = tmp_path / "store"
    assert _import(store, train_list, root) == 0 and _import(store, test_list, root) == 0
    assert "source 'ucf-i3d'" in capsys.readouterr().out
    fingerprint = hash_json(importer.import_params("i3d", "ucf-i3d"))
    assert _fingerprints(FeatureStore(store), test_names) == {fingerprint}
    run = _train_teacher(store, labels)
    out = tmp_path / "eval"
    assert evaluate.main([run[:12], "--store", str(store), "--out", str(out), "--no-video-plots", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_videos"] == len(test_names) and metrics["missing_videos"] == []
    assert metrics["fingerprints"] == {"i3d": fingerprint} and metrics["other_extractions"] == {}


def test_test_videos_under_another_source_are_named_with_the_fixes(release, tmp_path, capsys):
    root, train_list, test_list, labels, test_names = release
    store = tmp_path / "store"
    assert _import(store, train_list, root, "--source", "rtfm train") == 0
    assert _import(store, test_list, root, "--source", "rtfm-test") == 0
    trained_on = hash_json(importer.import_params("i3d", "rtfm train"))
    test_fp = hash_json(importer.import_params("i3d", "rtfm-test"))
    run = _train_teacher(store, labels)
    capsys.readouterr()
    args = [run[:12], "--store", str(store), "--no-video-plots", "--quiet"]

    assert evaluate.main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (f'trained on i3d extraction {trained_on[:12]} {{"crops": 2, "dim": 16, "imported": true, "source": '
            f'"rtfm train"}}, which holds 0 of the 6 {labels.parent.name} test videos') in err
    assert (f'{test_fp[:12]} {{"crops": 2, "dim": 16, "imported": true, "source": "rtfm-test"}} (6 videos)') in err
    assert "dakd import TEST_LIST --backbone i3d --source 'rtfm train'" in err
    assert f"pass --fingerprint i3d={test_fp[:12]}" in err

    # mistakes with the flag: a prefix of no extraction, a backbone the run does not use
    assert evaluate.main(args + ["--fingerprint", "i3d=ffff"]) == 2
    err = capsys.readouterr().err
    assert "--fingerprint i3d=ffff matches 0 of the i3d extractions of the 6" in err and test_fp[:12] in err
    assert evaluate.main(args + ["--fingerprint", f"clip={test_fp[:12]}"]) == 2
    assert "--fingerprint names clip, which none of the runs uses" in capsys.readouterr().err

    # fix 1: the flag the message names; the other extraction is recorded
    by_flag = tmp_path / "eval-flag"
    assert evaluate.main(args + ["--fingerprint", f"i3d={test_fp[:12]}", "--out", str(by_flag)]) == 0
    assert f"i3d scored with extraction {test_fp[:12]}, not the run's {trained_on[:12]}" in capsys.readouterr().out
    metrics = json.loads((by_flag / "metrics.json").read_text())
    assert metrics["n_videos"] == 6 and metrics["fingerprints"] == {"i3d": test_fp}
    assert metrics["other_extractions"] == {"i3d": {"trained_on": trained_on, "evaluated_on": test_fp}}

    # only some of the test videos under the run's source: said so too
    partial = tmp_path / "ucf-i3d-test-part.list"
    partial.write_text("".join(test_list.read_text().splitlines(keepends=True)[:2]))
    assert _import(store, partial, root, "--source", "rtfm train") == 0
    assert evaluate.main(args) == 2
    err = capsys.readouterr().err
    assert (f"which holds 2 of the 6 {labels.parent.name} test videos; 4 test videos are stored only under other "
            f"i3d extractions") in err

    # fix 2: the test list re-imported with the training list's source, as the message says
    assert _import(store, test_list, root, "--source", "rtfm train") == 0
    own = tmp_path / "eval-own"
    assert evaluate.main(args + ["--out", str(own)]) == 0
    metrics_own = json.loads((own / "metrics.json").read_text())
    assert metrics_own["fingerprints"] == {"i3d": trained_on} and metrics_own["other_extractions"] == {}
    assert metrics_own["key"] != metrics["key"]


def test_a_list_of_another_shape_is_refused_under_an_existing_source(rtfm, tmp_path, capsys):
    root, test_list, _ = rtfm  # shanghai-i3d-test-10crop.list: 10 crops x D
    store = tmp_path / "store"
    assert import_features.main([str(test_list), "--backbone", "i3d", "--store", str(store), "--root", str(root),
                                 "--quiet"]) == 0
    np.save(root / "01_0050_i3d.npy", _rng_array(5, (T, 1, D + 4)))
    train_list = tmp_path / "shanghai-i3d-train-10crop.list"  # the same derived source, other features
    train_list.write_text("/x/01_0050_i3d.npy\n")
    args = [str(train_list), "--backbone", "i3d", "--store", str(store), "--root", str(root), "--quiet"]
    assert import_features.main(args) == 2
    err = capsys.readouterr().err
    assert f"{train_list}:1: 01_0050 has 1 crops x {D + 4} features" in err and f"10 crops x {D}" in err
    assert f"pass --source shanghai-i3d-10crop-1x{D + 4}" in err and len(err.strip().splitlines()) == 1
    assert _stored(FeatureStore(store), "01_0050", "i3d") == []
    assert import_features.main(args + ["--source", f"shanghai-i3d-10crop-1x{D + 4}"]) == 0
    (got,) = _stored(FeatureStore(store), "01_0050", "i3d")
    assert got.shape == (T, 1, D + 4)


def test_an_import_made_with_the_file_name_rule_is_joined(release, tmp_path, capsys):
    """Stores imported before the split words were dropped: the source was the list's file name."""
    root, train_list, test_list, _, test_names = release
    store = tmp_path / "store"
    assert _import(store, train_list, root, "--source", train_list.name) == 0  # what the old default gave
    assert _import(store, test_list, root) == 0
    assert f"source '{train_list.name}'" in capsys.readouterr().out
    earlier = hash_json(importer.import_params("i3d", train_list.name))
    assert _fingerprints(FeatureStore(store), test_names) == {earlier}
    assert _import(store, train_list, root) == 0  # re-importing the train list is still a no-op
    assert "0 imported, 12 already there" in capsys.readouterr().out
