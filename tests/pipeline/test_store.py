"""The feature store: keys, atomic writes, the path memo, listing."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.cli import store as store_command
from pipeline.keys import canonical_json, feature_key, hash_json, hash_video
from pipeline.atomic import atomic_write, host_name, temp_owner
from pipeline.store import FeatureStore


def test_canonical_json_ignores_key_order():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1}) == '{"a":[1,2],"b":1}'
    assert hash_json({"b": 1, "a": 2}) == hash_json({"a": 2, "b": 1})
    assert feature_key("v", "fp1") != feature_key("v", "fp2") != feature_key("w", "fp1")


def test_video_key_is_content_only_and_memoised(tmp_path, monkeypatch):
    a = tmp_path / "a.mp4"
    a.write_bytes(b"same bytes")
    b = tmp_path / "b.mp4"
    b.write_bytes(b"same bytes")
    store = FeatureStore(tmp_path / "store")
    assert store.video_key(a) == store.video_key(b) == hash_video(a)

    calls = []
    monkeypatch.setattr("pipeline.store.manifest.hash_video", lambda p: calls.append(p) or "rehashed")
    assert store.video_key(a) == hash_video(a)  # unchanged size + mtime: no re-read
    assert calls == []
    a.write_bytes(b"other bytes!")
    os.utime(a, ns=(1, 1))
    assert store.video_key(a) == "rehashed"


def test_frame_folder_key_ignores_the_folder_name(tmp_path):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        for i in range(3):
            (tmp_path / name / f"{i}.jpg").write_bytes(bytes([i]) * 10)
    assert hash_video(tmp_path / "one") == hash_video(tmp_path / "two")
    (tmp_path / "two" / "2.jpg").write_bytes(b"x")
    assert hash_video(tmp_path / "one") != hash_video(tmp_path / "two")


def test_put_and_get_feature_round_trip(tmp_path):
    store = FeatureStore(tmp_path / "store")
    arr = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    path = store.put_feature("ab" + "0" * 62, "vid", "i3d", "fp", arr)
    assert path == tmp_path / "store" / "features" / "i3d" / "ab" / ("ab" + "0" * 62 + ".npy")
    rec = store.get_feature("ab" + "0" * 62)
    assert (rec.n_snippets, rec.crops, rec.dim, rec.dtype) == (2, 3, 4, "float32")
    np.testing.assert_array_equal(store.load_feature("ab" + "0" * 62), arr)
    path.unlink()  # a row without its file is not a hit
    assert store.get_feature("ab" + "0" * 62) is None
    with pytest.raises(ValueError, match=r"\[T, crops, D\]"):
        store.put_feature("cd" * 32, "vid", "i3d", "fp", np.zeros((2, 3)))


def test_orphan_temp_files_of_dead_writers_are_removed(tmp_path):
    FeatureStore(tmp_path / "store")
    dead = tmp_path / "store" / "tmp" / f"key.{2**22 + 12345}.1.npy.tmp"  # no such pid
    alive = tmp_path / "store" / "tmp" / f"key.{os.getpid()}.1.npy.tmp"
    dead.write_bytes(b"half")
    alive.write_bytes(b"in progress")
    FeatureStore(tmp_path / "store")
    assert not dead.exists() and alive.exists()


def test_temp_files_name_their_host_and_another_hosts_are_left_alone(tmp_path):
    """On a folder shared by several machines (Ray workers), a pid is only meaningful on its own host."""
    store = FeatureStore(tmp_path / "store")
    seen = []
    store._atomic_save = lambda dest, array: atomic_write(dest, lambda f: seen.extend(store.root.glob("tmp/*.tmp")),
                                                          tmp_dir=store.root / "tmp")
    store._atomic_save(tmp_path / "x.npy", None)
    assert temp_owner(seen[0].name) == (os.getpid(), host_name())
    dead_pid = 2**22 + 12345
    here = tmp_path / "store" / "tmp" / f"key.{dead_pid}@{host_name()}.1.npy.tmp"
    elsewhere = tmp_path / "store" / "tmp" / f"key.{dead_pid}@other-machine.1.npy.tmp"
    here.write_bytes(b"half")
    elsewhere.write_bytes(b"being written on another machine")
    FeatureStore(tmp_path / "store")
    assert not here.exists() and elsewhere.exists()


def test_lock_is_exclusive_across_handles(tmp_path):
    store = FeatureStore(tmp_path / "store")
    first = store.lock("k")
    first.acquire(timeout=0)
    with pytest.raises(Exception):
        store.lock("k").acquire(timeout=0)
    first.release()
    second = store.lock("k")
    second.acquire(timeout=0)
    second.release()


def test_listing_cli(tmp_path, capsys):
    store = FeatureStore(tmp_path / "store")
    store.put_feature("ef" * 32, "vid", "clip", "fp", np.zeros((5, 1, 512), np.float32))
    store.record_failure("/videos/bad.mp4", "extract", "the file is empty (0 bytes)", "re-copy it")
    assert store_command.main([str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "features {'clip': 1}" in out and "T=5" in out
    assert store_command.main([str(tmp_path / "store"), "--failures"]) == 0
    assert "bad.mp4: the file is empty" in capsys.readouterr().out
    assert store_command.main([str(tmp_path / "nowhere")]) == 2


def test_runs_are_recorded_updated_and_listed(tmp_path, capsys):
    from pipeline.cli.store import main

    store = FeatureStore(tmp_path / "store")
    store.record_run("abc123" * 4, "teacher", dataset="ucf-crime", backbones="i3d,clip", seed=2, status="running")
    store.record_run("abc123" * 4, "teacher", dataset="ucf-crime", backbones="i3d,clip", seed=2, status="done",
                     summary={"best_epoch": 7, "val_video_auc": 0.9})
    (row,) = store.runs("teacher")
    assert row["status"] == "done" and row["finished_at"] is not None and row["folder"].startswith("runs/teacher/")
    assert store.runs("student") == []
    assert main([str(tmp_path / "store"), "--runs"]) == 0
    assert "best_epoch=7 val_video_auc=0.9000" in capsys.readouterr().out
