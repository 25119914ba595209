"""Tests of data/community_features.py and the import CLI (pipeline/import_features.py) on real .npy files
laid out like the community's downloads, named by lists in the authors' formats."""

from __future__ import annotations

import numpy as np
import pytest

from data.community_features import (CommunityFeature, FeatureFileError, feature_name, load_community_feature,
                                     read_feature_list)
from pipeline import import_features
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
