"""The soak (issue 12, item 8): 60 short videos extracted by real processes while a driver kill -9s the extract
process at random moments 10 times; then the store equals an uninterrupted run's (the same feature rows, identical
file bytes) and ``python -m pipeline.store DIR --verify`` passes. ``lowres``: the cheapest real backbone (no
weights; decoding is all its work), so kills land in every phase: start-up, manifest creation, hashing, decoding,
the writes of features, sidecars and rows."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from videos import encode, pattern_frames

from pipeline.cli import extract
from pipeline.cli import store as store_command

N_VIDEOS = 60
FRAMES = (16, 32)  # one or two snippets per video, alternating
SIZE = (48, 64)
KILLS = 10
SEED = 12  # the driver's random moments: the same on every CI run
ARGS = ["--backbones", "lowres", "--decode-workers", "1", "--quiet"]  # one decoder: slower, so kills land mid-run
WAIT_LIMIT_S = 30.0  # a process that shows no progress for this long fails the test rather than hang CI
ROW_COLUMNS = "key, video_key, backbone, fingerprint, file, n_snippets, crops, dim, dtype, nbytes, hash, damage"


def _cli(videos: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.extract", str(videos), "--store", str(store), *ARGS]


def _npy_count(store: Path) -> int:
    return len(list((store / "features").glob("*/*/*.npy"))) if (store / "features").is_dir() else 0


def _rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        return conn.execute(f"SELECT {ROW_COLUMNS} FROM features ORDER BY key").fetchall()


def _videos_rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        return conn.execute("SELECT * FROM videos ORDER BY key").fetchall()


def _kill_at_a_random_moment(proc: subprocess.Popen, store: Path, rng: random.Random) -> bool:
    """kill -9 ``proc`` at a random moment: a third of the time at a random time after its start (start-up,
    manifest creation, hashing), else a random delay after it has written one to three new feature files (in the
    middle of the writes). Returns whether it was killed (False: it finished first)."""
    start, before = time.monotonic(), _npy_count(store)
    if rng.random() < 1 / 3:
        target = start + rng.uniform(0.2, 3.0)
        while time.monotonic() < target and proc.poll() is None:
            time.sleep(0.005)
    else:
        wanted = before + rng.randint(1, 3)
        while _npy_count(store) < wanted and proc.poll() is None:
            assert time.monotonic() - start < WAIT_LIMIT_S, "the extract process made no progress"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.06))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_ten_random_kill_9s_then_the_store_equals_an_uninterrupted_run(tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    for i in range(N_VIDEOS):
        encode(videos / f"v{i:02d}.mkv", pattern_frames(FRAMES[i % 2], *SIZE, seed=100 + i))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    rng = random.Random(SEED)
    kills = runs = 0
    while kills < KILLS:
        runs += 1
        assert runs <= 3 * KILLS, "the extract processes kept finishing before the driver could kill them"
        proc = subprocess.Popen(_cli(videos, killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if _kill_at_a_random_moment(proc, killed, rng):
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr.read().decode()
    partial = len(_rows(killed)) if (killed / "manifest.sqlite").exists() else 0
    assert partial < N_VIDEOS, "the kills should have left work to do"

    final = subprocess.run(_cli(videos, killed), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert f"{N_VIDEOS} videos: {N_VIDEOS - partial} extracted, {partial} cached, 0 failed" in final.stdout
    assert extract.main([str(videos), "--store", str(clean), *ARGS]) == 0  # the uninterrupted run

    rows = _rows(killed)
    assert rows == _rows(clean) and len(rows) == N_VIDEOS
    assert all(r[-1] is None for r in rows), "no feature may be marked damaged"
    for row in rows:
        assert (killed / row[4]).read_bytes() == (clean / row[4]).read_bytes(), row[4]
    assert _videos_rows(killed) == _videos_rows(clean)
    assert store_command.main([str(killed), "--verify", "--quiet"]) == 0
    with sqlite3.connect(killed / "manifest.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not [p for p in (killed / "tmp").iterdir()], "no temp file of a killed writer may remain"
    assert sorted(p.name for p in killed.glob("manifest.sqlite*.tmp")) == []
    assert os.listdir(killed / "features") == ["lowres"]
