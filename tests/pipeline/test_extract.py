"""Stage 1 end to end through the CLI (in-process) and as real processes: cache keys, bad input, kill -9,
two concurrent processes. The backbone is EfficientNet-Lite0 with its real ImageNet weights (cheap on a CPU)."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from videos import encode, pattern_frames

from extractors.base import Backbone
from pipeline.cli import extract
from pipeline.extract import extractor
from pipeline.store import FeatureStore

BACKBONE = ["--backbones", "effnet_lite0", "--quiet"]


def _videos(folder: Path, n: int, frames: int = 48, size=(48, 64)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [encode(folder / f"v{i}.mkv", pattern_frames(frames, *size, seed=10 + i)) for i in range(n)]


def _rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        return conn.execute("SELECT key, backbone, n_snippets, crops, dim FROM features ORDER BY key").fetchall()


def _forbid_forward(monkeypatch):
    def boom(self, snippets):
        raise AssertionError("a forward pass ran although every feature was cached")

    monkeypatch.setattr(Backbone, "extract", boom)


def test_extract_then_rerun_is_all_cache_hits(tmp_path, monkeypatch, capsys):
    videos = _videos(tmp_path / "in", 2)
    store = tmp_path / "store"
    assert extract.main([str(tmp_path / "in"), "--store", str(store), *BACKBONE]) == 0
    rows = _rows(store)
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [("effnet_lite0", 3, 1, 1280)] * 2
    features = FeatureStore(store).features()
    assert {Path(f["first_path"]).name for f in features} == {v.name for v in videos}
    assert np.load(store / features[0]["file"]).shape == (3, 1, 1280)
    assert "2 extracted, 0 cached, 0 failed" in capsys.readouterr().out

    _forbid_forward(monkeypatch)
    assert extract.main([str(tmp_path / "in"), "--store", str(store), *BACKBONE]) == 0
    assert "0 extracted, 2 cached, 0 failed" in capsys.readouterr().out
    assert _rows(store) == rows


def test_cache_key_follows_content_weights_and_crops(tmp_path, monkeypatch, capsys):
    (video,) = _videos(tmp_path / "in", 1)
    store = tmp_path / "store"
    run = [str(video), "--store", str(store), *BACKBONE]
    assert extract.main(run) == 0
    capsys.readouterr()

    renamed = video.rename(tmp_path / "in" / "renamed.mkv")
    with monkeypatch.context() as m:
        _forbid_forward(m)
        assert extract.main([str(renamed), *run[1:]]) == 0
    assert "0 extracted, 1 cached" in capsys.readouterr().out

    assert extract.main([str(renamed), *run[1:], "--crops", "5"]) == 0
    assert "1 extracted, 0 cached" in capsys.readouterr().out
    assert extract.main([str(renamed), *run[1:], "--weights", "effnet_lite0=random"]) == 0
    assert "1 extracted, 0 cached" in capsys.readouterr().out
    assert extract.main([str(renamed), *run[1:], "--dtype", "float16"]) == 0
    assert "1 extracted, 0 cached" in capsys.readouterr().out
    assert {r["dtype"] for r in FeatureStore(store).features()} == {"float32", "float16"}

    # One changed byte (in the muxer's tag, so the video still decodes the same): a different video key.
    data = bytearray(renamed.read_bytes())
    at = data.index(b"Lavf")
    data[at] = ord("l")
    changed = tmp_path / "in" / "changed.mkv"
    changed.write_bytes(bytes(data))
    assert extract.main([str(changed), *run[1:]]) == 0
    assert "1 extracted, 0 cached" in capsys.readouterr().out
    assert len(_rows(store)) == 5


def test_bad_inputs_fail_by_name_and_the_rest_completes(tmp_path, capsys):
    good = _videos(tmp_path / "in", 2)
    bad = {
        "zero.mp4": b"",
        "random.mp4": np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
        "notes.txt": b"this is a text file\n",
    }
    for name, content in bad.items():
        (tmp_path / "in" / name).write_bytes(content)
    truncated = tmp_path / "in" / "truncated.mkv"
    truncated.write_bytes(encode(tmp_path / "full.mkv", pattern_frames(64, 48, 64, seed=3)).read_bytes()[:3000])
    short = encode(tmp_path / "in" / "short.mkv", pattern_frames(10, 48, 64))
    # Unusual but valid videos must extract: odd size, variable frame rate, a unicode path.
    odd = encode(tmp_path / "in" / "odd_97x55.mkv", pattern_frames(32, 55, 97))
    vfr = encode(tmp_path / "in" / "vfr.mp4", pattern_frames(40, 48, 64), pts=[i + (i // 5) * 3 for i in range(40)])
    uni = encode(tmp_path / "in" / "caméra_監視_ü.mkv", pattern_frames(32, 48, 64))
    paths = [str(p) for p in [*good, odd, vfr, uni, short, truncated]]
    paths += [str(tmp_path / "in" / n) for n in bad] + [str(tmp_path / "in" / "gone.mp4")]
    store = tmp_path / "store"

    code = extract.main([*paths, "--store", str(store), *BACKBONE])
    out, err = capsys.readouterr()
    assert code == 1
    assert "5 extracted, 0 cached, 6 failed" in out
    expected = {"zero.mp4": "empty", "random.mp4": "not a readable video", "notes.txt": "not a readable video",
                "truncated.mkv": "not a readable video|truncated|no frame could be decoded", "short.mkv": "too short",
                "gone.mp4": "does not exist"}
    failures = {Path(f["path"]).name: f["reason"] for f in FeatureStore(store).failures()}
    assert set(failures) == set(expected)
    for name, pattern in expected.items():
        assert any(p in failures[name] for p in pattern.split("|")), (name, failures[name])
        assert f"FAILED {tmp_path / 'in' / name}" in err
    extracted = {Path(f["first_path"]).name for f in FeatureStore(store).features()}
    assert extracted == {p.name for p in [*good, odd, vfr, uni]}


def test_file_deleted_during_the_run_fails_alone(tmp_path, monkeypatch):
    videos = _videos(tmp_path / "in", 3)
    store = FeatureStore(tmp_path / "store")
    backbone = extractor.build_backbone("effnet_lite0")
    original = type(backbone).extract

    def delete_last_then_extract(self, snippets):
        videos[2].unlink(missing_ok=True)
        return original(self, snippets)

    monkeypatch.setattr(type(backbone), "extract", delete_last_then_extract)
    # Queue of one snippet: the producer cannot run ahead and open the last video before it is deleted.
    outcome = extractor.Extractor(store, [backbone], batch_size=1, queue_snippets=1, progress=False).run(videos)
    assert outcome.extracted == 2
    assert [Path(p).name for p, _, _ in outcome.failures] == ["v2.mkv"]
    assert "does not exist" in outcome.failures[0][1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.extract", *args, "--backbones", "effnet_lite0", "--clip-frames", "8",
            "--batch-size", "2", "--quiet"]


def _features(store: Path) -> dict[str, np.ndarray]:
    return {r[0]: np.load(store / "features" / r[1] / r[0][:2] / f"{r[0]}.npy") for r in _rows(store)}



def _recorded(store: Path) -> bool:
    """Whether the store's manifest holds a feature row yet. Read-only, so polling never creates a manifest; a
    feature's file and sidecar are written before its row, so a file alone does not mean it is recorded."""
    if not (store / "manifest.sqlite").is_file():
        return False
    try:
        with sqlite3.connect(f"file:{store / 'manifest.sqlite'}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM features").fetchone()[0] > 0
    except sqlite3.Error:  # the manifest being created, or its table not yet there
        return False

@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_store(tmp_path):
    _videos(tmp_path / "in", 5, frames=64)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(_cli(str(tmp_path / "in"), "--store", str(killed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not _recorded(killed):  # the first feature's row, not just its file
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(_rows(killed))
    assert 1 <= partial < 5, "the kill should land mid-run"

    assert subprocess.run(_cli(str(tmp_path / "in"), "--store", str(killed))).returncode == 0
    assert subprocess.run(_cli(str(tmp_path / "in"), "--store", str(clean))).returncode == 0
    a, b = _features(killed), _features(clean)
    assert sorted(a) == sorted(b) and len(a) == 5
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5)
    assert not list((killed / "tmp").iterdir()), "no half-written file may remain"


@pytest.mark.slow
def test_two_concurrent_processes_share_the_work(tmp_path):
    _videos(tmp_path / "in", 6, frames=48)
    store = tmp_path / "store"
    procs = [subprocess.Popen(_cli(str(tmp_path / "in"), "--store", str(store)), stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    import re

    counts = [tuple(map(int, re.search(r"(\d+) extracted, (\d+) cached", o).groups())) for o in outs]
    assert sum(c[0] for c in counts) == 6, f"each video extracted exactly once: {outs}"
    assert all(c[0] + c[1] == 6 for c in counts)
    rows = _rows(store)
    assert len(rows) == 6
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for arr in _features(store).values():
        assert arr.shape == (3, 1, 1280) and np.isfinite(arr).all()


def test_missing_weights_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DAKD_CACHE_DIR", str(tmp_path / "empty-cache"))
    (video,) = _videos(tmp_path / "in", 1)
    code = extract.main([str(video), "--store", str(tmp_path / "s"), "--backbones", "i3d", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--weights i3d=" in err and "Traceback" not in err


def test_dataset_root_reports_missing_videos(tmp_path, capsys):
    root = tmp_path / "ShanghaiTech"
    (root / "training" / "videos").mkdir(parents=True)
    shutil.copy(encode(tmp_path / "x.mkv", pattern_frames(32, 48, 64)), root / "training" / "videos" / "01_0014.avi")
    code = extract.main([str(root), "--dataset", "shanghaitech", "--store", str(tmp_path / "s"), *BACKBONE])
    out, err = capsys.readouterr()
    assert code == 1
    assert "1 extracted" in out
    assert "MISSING 436 shanghaitech videos" in err
    assert len(FeatureStore(tmp_path / "s").failures()) == 436


def test_decode_thread_gives_the_same_features_as_inline_decoding(tmp_path):
    # The thread (used beside a GPU) and inline decoding (CPU default) must produce identical stores.
    videos = _videos(tmp_path / "in", 3, frames=40)
    backbone = extractor.build_backbone("effnet_lite0")
    results = []
    for overlap in (True, False):
        store = FeatureStore(tmp_path / f"store-{overlap}")
        outcome = extractor.Extractor(store, [backbone], batch_size=3, queue_snippets=2, overlap=overlap,
                                    progress=False).run(videos)
        assert (outcome.extracted, outcome.failed) == (3, 0)
        results.append({f["key"]: np.load(store.root / f["file"]) for f in store.features()})
    assert sorted(results[0]) == sorted(results[1])
    for key, arr in results[0].items():
        np.testing.assert_allclose(arr, results[1][key], rtol=1e-5, atol=1e-5)


def test_parallel_decoding_gives_the_same_store_and_failures_as_one_decoder(tmp_path):
    # Several videos decoded at once (the default for decode-bound backbones such as lowres) interleave their
    # snippets in the batches; every video must still get exactly its own features, and a bad file fails alone.
    videos = _videos(tmp_path / "in", 4, frames=40)
    bad = tmp_path / "in" / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    videos.insert(2, bad)
    backbone = extractor.build_backbone("lowres")
    assert extractor.Extractor(FeatureStore(tmp_path / "default"), [backbone], progress=False).decode_workers >= 1
    results = []
    for workers in (1, 3):
        store = FeatureStore(tmp_path / f"store-{workers}")
        outcome = extractor.Extractor(store, [backbone], batch_size=5, queue_snippets=2, decode_workers=workers,
                                    progress=False).run(videos)
        assert (outcome.extracted, outcome.failed) == (4, 1)
        assert outcome.failures[0][0] == str(bad)
        results.append({f["key"]: np.load(store.root / f["file"]) for f in store.features()})
    assert sorted(results[0]) == sorted(results[1]) and len(results[0]) == 4
    for key, arr in results[0].items():
        assert np.array_equal(arr, results[1][key])
    assert len({arr.tobytes() for arr in results[0].values()}) == 4  # four different videos, four different arrays
