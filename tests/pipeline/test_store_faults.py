"""Store faults, each one named line by every stage (issue 12, deliverable 3): ``--store`` naming a file, a store
that does not exist (created only by extract and import), a read-only store (everything that only reads works and
nothing in it changes), a full disk ("no space left on DEVICE while writing PATH", nothing lost, no run left
"running"). Real stores built through the CLIs (``store_stages``); the full disk both simulated (writes handed
``/dev/full``, whose writes fail with the kernel's real ENOSPC; SQLite's own SQLITE_FULL through max_page_count)
and real (a small tmpfs, where mounting is possible: also filled under the manifest, where SQLite says "disk I/O
error" and the store names the full disk by its free space)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import filelock
import numpy as np
import pytest
from shared_data import CI_ENV
from store_stages import TRAIN_FAST, copy_store, every_stage, small_store, write_videos

from pipeline import atomic
from pipeline.cli import detect, export, extract, train
from pipeline.detect import onnx_scorer
from pipeline.export import exporter
from pipeline import store as store_cli
from pipeline.cli import store as store_command
from pipeline.atomic import NoSpaceError
from pipeline.store import FeatureStore, StoreReadOnly, open_store

STAGES = ("store", "extract", "import_features", "train", "evaluate", "detect", "export", "grid")
READING_STAGES = ("store", "train", "evaluate", "detect", "export", "grid")  # never create a store
TMPFS_SIZE = "640k"  # fills after a few of 16 lowres features (32 KiB each, plus the manifest's growing log)
TMPFS_GROWN = "8m"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return small_store(tmp_path_factory.mktemp("faults"))


def _files(folder: Path) -> dict:
    """Every path below ``folder`` with its size and modification time: what must not change."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _no_traceback(err: str) -> str:
    assert "Traceback" not in err, err
    return err


# -- --store naming a file, or nothing -----------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_a_store_that_is_a_file_is_named_by_every_stage(built, tmp_path, capsys, stage):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a store")
    assert every_stage(built, a_file, out=tmp_path)[stage]() == 2
    err = _no_traceback(capsys.readouterr().err)
    assert f"--store {a_file} is a file, not a store folder" in err
    assert a_file.read_text() == "not a store"


def test_a_store_given_as_its_manifest_file_says_to_pass_the_folder(built, capsys):
    assert store_command.main([str(built.store / "manifest.sqlite")]) == 2
    assert f"that is a store's manifest: pass its folder {built.store}" in capsys.readouterr().err


@pytest.mark.parametrize("stage", READING_STAGES)
def test_a_missing_store_is_named_and_not_created_by_stages_that_read(built, tmp_path, capsys, stage):
    missing, empty = tmp_path / "nowhere", tmp_path / "empty"
    empty.mkdir()
    assert every_stage(built, missing, out=tmp_path)[stage]() == 2
    err = _no_traceback(capsys.readouterr().err)
    assert f"no store at {missing}; create one with dakd extract" in err
    assert not missing.exists()
    assert every_stage(built, empty, out=tmp_path)[stage]() == 2
    assert f"{empty} is not a feature store (no manifest.sqlite in it)" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("stage", ("extract", "import_features"))
def test_extract_and_import_create_a_missing_store(built, tmp_path, stage):
    new = tmp_path / "deep" / "new-store"
    assert every_stage(built, new, out=tmp_path)[stage]() == 0
    assert store_cli.is_store(new) and store_command.main([str(new), "--verify", "--quiet"]) == 0


# -- read-only stores ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` read-only for this process, the strongest way available: as root, a read-only bind mount of
    it onto itself (writes fail with EROFS, even for root); else chmod -R a-w (as root, the code opens a store
    without write permission bits read-only anyway; as another user the kernel refuses the writes). Yields how."""
    mounted = False
    if os.geteuid() == 0:
        bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
        if bind.returncode == 0:
            mounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)],
                                     capture_output=True).returncode == 0
            if not mounted:
                subprocess.run(["umount", str(folder)], capture_output=True)
    modes = {}
    if not mounted:
        for p in [folder, *folder.rglob("*")]:
            modes[p] = p.stat().st_mode
            p.chmod(modes[p] & ~0o222)
    try:
        yield "read-only bind mount" if mounted else "chmod -R a-w"
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        for p, mode in modes.items():
            p.chmod(mode)


def _fake_export(run, backbone, out, **kwargs):
    """Tracing and checking the graphs takes half a minute and reads nothing from the store (tested in
    test_export.py); everything export reads from the store (run, extractor params, videos) runs for real."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.json").write_text(json.dumps({"run": run.key, "backbone": backbone.name}))
    return {"T_range": [1, kwargs["max_snippets"]], "max_abs_diff": {"torchscript": 0.0, "onnx": 0.0}, "check": {},
            "tolerance": {"max_abs_diff_scores": onnx_scorer.TOLERANCE}}


def test_a_read_only_store_serves_every_stage_that_only_reads(built, tmp_path, capsys, monkeypatch):
    s = copy_store(built, tmp_path)
    fresh = write_videos(tmp_path / "new", ["fresh"], seed=50)[0]  # a video the store has no features of
    monkeypatch.setattr(exporter, "export_student", _fake_export)
    stages = every_stage(s, out=tmp_path / "out")
    before = _files(s.store)
    with read_only(s.store) as how:
        assert store_command.main([str(s.store)]) == 0
        assert "(read-only): 6 videos" in capsys.readouterr().out
        assert store_command.main([str(s.store), "--runs"]) == 0
        assert s.teacher[:12] in capsys.readouterr().out
        assert store_command.main([str(s.store), "--verify", "--quiet"]) == 0
        assert "7 feature files checked, 0 damaged" in capsys.readouterr().out
        assert stages["evaluate"]() == 0
        assert "(cached)" in capsys.readouterr().out
        assert stages["detect"]() == 0
        assert "6 videos with teacher" in capsys.readouterr().out
        assert stages["export"]() == 0 and (tmp_path / "out" / "export" / "export.json").is_file()
        capsys.readouterr()
        for writing in ("extract", "import_features", "train", "grid"):
            assert stages[writing]() == 2, writing
            assert f"the store {s.store} is read-only: this stage writes to it" in \
                _no_traceback(capsys.readouterr().err), writing
        # A video without stored features cannot be computed into a read-only store: it fails alone, by name.
        code = detect.main([str(s.videos / "v0.mkv"), str(fresh), "--store", str(s.store), "--model", s.teacher[:12],
                            "--quiet", "--out", str(tmp_path / "out" / "d2")])
        assert code == 1
        err = _no_traceback(capsys.readouterr().err)
        assert f"FAILED {fresh}: the store {s.store} is read-only" in err and "v0.mkv" not in err
        assert (tmp_path / "out" / "d2" / "v0.csv").is_file()
        # export's default output is the run's folder, inside the store: named, with the way out
        assert export.main([s.teacher[:12], "--store", str(s.store)]) == 2
        assert "pass --out (a folder)" in capsys.readouterr().err
    assert _files(s.store) == before, f"nothing in a read-only store may change ({how})"


def test_a_read_only_store_with_a_write_ahead_log_is_read_whole_and_left_untouched(tmp_path):
    """A writer killed with its last rows still in the -wal file: the read-only reader sees those rows too."""
    store = FeatureStore(tmp_path / "s")
    store.put_feature("ab" * 32, "vid", "i3d", "fp", np.ones((2, 1, 4), np.float32))
    holder = sqlite3.connect(tmp_path / "s" / "manifest.sqlite")  # an open reader stops the WAL's checkpoint
    holder.execute("SELECT COUNT(*) FROM features").fetchone()
    store.put_feature("cd" * 32, "vid", "i3d", "fp", np.ones((3, 1, 4), np.float32))
    store.close()
    wal = tmp_path / "s" / "manifest.sqlite-wal"
    assert wal.stat().st_size > 0
    before = _files(tmp_path / "s")
    with read_only(tmp_path / "s"):
        reader = open_store(tmp_path / "s", create=False)
        assert reader.readonly and len(reader.features()) == 2 and reader.get_feature("cd" * 32).n_snippets == 3
        with pytest.raises(StoreReadOnly, match="is read-only"):
            reader.put_feature("ef" * 32, "vid", "i3d", "fp", np.ones((1, 1, 4), np.float32))
        reader.close()
    assert _files(tmp_path / "s") == before
    holder.close()


# -- full disk -----------------------------------------------------------------------------------------------------
def _disk_full_for(monkeypatch, fails):
    """Every atomic write whose temp file ``fails(path)`` is handed /dev/full: the kernel's ENOSPC on write."""
    real = atomic._open_temp
    monkeypatch.setattr(atomic, "_open_temp", lambda path: open("/dev/full", "wb") if fails(path) else real(path))


def test_a_full_disk_during_extract_is_named_and_keeps_what_was_written(tmp_path, capsys, monkeypatch):
    write_videos(tmp_path / "in", [f"v{i}" for i in range(4)], frames=16)
    store = tmp_path / "store"
    written = []

    def fails(path: Path) -> bool:
        if not path.name.endswith(".npy.tmp"):
            return False
        written.append(path)
        return len(written) > 2  # the disk fills after two features

    _disk_full_for(monkeypatch, fails)
    assert extract.main([str(tmp_path / "in"), "--store", str(store), "--backbones", "lowres", "--quiet",
                         "--decode-workers", "1"]) == 2
    err = _no_traceback(capsys.readouterr().err)
    assert re.search(rf"no space left on the filesystem holding the store {re.escape(str(store))} "
                     rf"\({re.escape(atomic.device_of(store))}, \d+ bytes free\) while writing "
                     rf"{re.escape(str(store / 'features' / 'lowres'))}", err)
    assert "another --store" in err
    assert "everything written before is kept" in err
    rows = FeatureStore(store).features()
    assert len(rows) == 2 and all(r["damage"] is None for r in rows)
    assert store_command.main([str(store), "--verify", "--quiet"]) == 0
    monkeypatch.undo()
    assert extract.main([str(tmp_path / "in"), "--store", str(store), "--backbones", "lowres", "--quiet"]) == 0
    assert "2 extracted, 2 cached, 0 failed" in capsys.readouterr().out


def test_a_full_disk_with_parallel_decoders_leaves_no_feature_locked(tmp_path, capsys, monkeypatch):
    """The stage stops on a full disk while decode workers are still claiming videos: a worker that takes its locks
    after the stop must not keep them (they were leaked, and the next extract in the same process waited on them
    for ever). The claims of all but the first video are held back until the disk has filled."""
    import threading
    import time

    from pipeline.extract import extractor

    write_videos(tmp_path / "in", [f"v{i}" for i in range(4)], frames=16)
    store = tmp_path / "store"
    full = threading.Event()

    def fails(path: Path) -> bool:
        if path.name.endswith(".npy.tmp"):
            full.set()
            return True
        return False

    real_plan = extractor.Extractor._plan
    claimed: list[str] = []

    def late_plan(self, job, *, wait):
        if job.path.stem != "v0":  # every video but the first: claim only after the stage has stopped
            full.wait(timeout=10)
            time.sleep(0.3)
        claimed.append(job.path.stem)
        return real_plan(self, job, wait=wait)

    _disk_full_for(monkeypatch, fails)
    monkeypatch.setattr(extractor.Extractor, "_plan", late_plan)
    assert extract.main([str(tmp_path / "in"), "--store", str(store), "--backbones", "lowres", "--quiet",
                         "--decode-workers", "2", "--batch-size", "1"]) == 2  # v0 written (and failing) at once
    assert "no space left" in capsys.readouterr().err
    assert "v0" in claimed and len(claimed) >= 2  # the stage returned after its workers: the late claim is in it
    for lock in sorted((store / "locks").glob("*.lock")):
        held = filelock.FileLock(lock)
        held.acquire(timeout=0)  # filelock.Timeout if the failed stage still held it
        held.release()
    monkeypatch.undo()
    assert extract.main([str(tmp_path / "in"), "--store", str(store), "--backbones", "lowres", "--quiet"]) == 0


def test_a_full_disk_while_training_is_named_and_leaves_no_run_running(built, tmp_path, capsys, monkeypatch):
    s = copy_store(built, tmp_path)
    _disk_full_for(monkeypatch, lambda path: path.name.startswith("checkpoint."))
    args = ["teacher", "--store", str(s.store), "--dataset", str(s.labels), "--backbones", "effnet_lite0",
            *TRAIN_FAST, "--seed", "7"]
    assert train.main(args) == 2
    err = _no_traceback(capsys.readouterr().err)
    assert "no space left on " in err and "checkpoint.pt" in err and "RuntimeError" not in err
    (run,) = [r for r in FeatureStore(s.store).runs("teacher") if r["seed"] == 7]
    assert run["status"] == "failed" and "no space left" in json.loads(run["summary"])["error"]
    assert not (s.store / run["folder"] / "checkpoint.pt").exists()
    monkeypatch.undo()
    assert train.main(args) == 0
    (run,) = [r for r in FeatureStore(s.store).runs("teacher") if r["seed"] == 7]
    assert run["status"] == "done"


def test_a_run_left_running_by_a_dead_process_is_listed_as_interrupted(tmp_path):
    store = FeatureStore(tmp_path / "s")
    store.record_run("k" * 64, "teacher", dataset="d", backbones="i3d", seed=0, status="running")
    assert store.runs()[0]["status"] == "interrupted"  # no process holds its lock
    lock = filelock.FileLock(tmp_path / "s" / "locks" / store_cli.RUN_LOCK.format(key="k" * 64))
    with lock:
        assert store.runs()[0]["status"] == "running"


def test_sqlite_reporting_a_full_disk_is_named(tmp_path):
    store = FeatureStore(tmp_path / "s")
    conn = store._conn()
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")  # SQLITE_FULL
    with pytest.raises(NoSpaceError, match=r"no space left on .* while writing .*manifest\.sqlite"):
        for i in range(1000):
            store.record_failure(f"/videos/{i}.mp4", "extract", "x" * 500)


@pytest.fixture
def small_disk(tmp_path):
    """A real small tmpfs (root only: mounting needs it). Where it cannot be mounted the tests skip, except in CI
    (``CI`` set), which must run them (as for the reference data, ``shared_data``)."""

    def unavailable(why: str):
        if os.environ.get(CI_ENV):
            pytest.fail(f"{why}; CI must run the real full-disk tests (as root, allowed to mount a tmpfs)")
        pytest.skip(f"{why}; the simulated ENOSPC tests above cover the messages (CI runs these)")

    if os.geteuid() != 0:
        unavailable("a real full disk needs root to mount a small tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
    if mount.returncode:
        unavailable(f"cannot mount a tmpfs here ({mount.stderr.strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_real_full_disk_is_named_and_nothing_is_lost(small_disk, tmp_path, capsys):
    write_videos(tmp_path / "in", [f"v{i:02d}" for i in range(16)], frames=16)
    store, clean = small_disk / "store", tmp_path / "clean"
    args = [str(tmp_path / "in"), "--backbones", "lowres", "--quiet"]
    assert extract.main([*args, "--store", str(store)]) == 2
    err = _no_traceback(capsys.readouterr().err)
    assert re.search(rf"no space left on the filesystem holding the store {re.escape(str(store))} \(tmpfs "
                     rf"\(mounted at {re.escape(str(small_disk))}\), \d+ bytes free\) while writing "
                     rf"{re.escape(str(store))}", err)
    kept = FeatureStore(store).features()
    assert 0 < len(kept) < 16
    assert store_command.main([str(store), "--verify", "--quiet"]) == 0  # what was written is sound
    subprocess.run(["mount", "-o", f"remount,size={TMPFS_GROWN}", str(small_disk)], check=True)
    assert extract.main([*args, "--store", str(store)]) == 0
    assert f"{16 - len(kept)} extracted, {len(kept)} cached, 0 failed" in capsys.readouterr().out
    assert extract.main([*args, "--store", str(clean)]) == 0
    for row in FeatureStore(clean).features():
        assert (store / row["file"]).read_bytes() == (clean / row["file"]).read_bytes()


def _fill(disk: Path) -> Path:
    """Fill ``disk`` to its last byte with one file (returned, to be removed to free the space again)."""
    filler = disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    assert os.statvfs(disk).f_bavail == 0
    return filler


def test_a_full_disk_under_the_manifest_is_named_not_a_disk_io_error(small_disk, tmp_path, capsys):
    # SQLite reports the write-ahead log (or its index) that cannot grow as "disk I/O error", not SQLITE_FULL: the
    # store asks the filesystem (statvfs) and names the full disk, with its free bytes and the fix.
    write_videos(tmp_path / "in", [f"v{i}" for i in range(3)], frames=16)
    store = small_disk / "store"
    args = ["--backbones", "lowres", "--quiet", "--store", str(store)]
    assert extract.main([str(tmp_path / "in" / "v0.mkv"), *args]) == 0  # the store, closed: no -wal, no -shm left
    filler = _fill(small_disk)
    assert extract.main([str(tmp_path / "in"), *args]) == 2
    err = _no_traceback(capsys.readouterr().err)
    assert (f"no space left on the filesystem holding the store {store} (tmpfs (mounted at {small_disk}), 0 bytes "
            f"free) while writing {store / 'manifest.sqlite'}") in err
    assert "free some space there, or use another --store" in err and "disk I/O error" not in err
    filler.unlink()
    assert extract.main([str(tmp_path / "in"), *args]) == 0  # nothing was lost: v0 is cached, the others added
    assert "2 extracted, 1 cached, 0 failed" in capsys.readouterr().out
    assert store_command.main([str(store), "--verify", "--quiet"]) == 0


def test_a_full_disk_is_named_by_the_store_api_whatever_sqlite_says(small_disk):
    store = FeatureStore(small_disk / "s")
    store.record_failure("/videos/a.mp4", "extract", "x")
    store.close()
    _fill(small_disk)
    with pytest.raises(NoSpaceError, match=r"no space left on the filesystem holding the store .*0 bytes free") as e:
        reopened = FeatureStore(small_disk / "s")
        for i in range(100):
            reopened.record_failure(f"/videos/{i}.mp4", "extract", "x" * 500)
    assert e.value.store == small_disk / "s" and e.value.free == 0
