"""Stage 1 on Ray (``--engine ray``): a real local Ray instance with 2 CPUs and 2 workers gives the same store as
the single-process run; plus the worker plan and the dispatcher's handling of a dying worker."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from videos import encode, pattern_frames

from pipeline import api
from pipeline.cli import extract
from pipeline.errors import UserError
from data.decode import VideoInfo
from pipeline.extract.extractor import Outcome
from pipeline.keys import feature_key
from pipeline.extract.ray_engine import ExtractWorker, RayOptions, WorkerPlan, _dispatch, plan_workers
from pipeline.store import FeatureStore

BACKBONE = ["--backbones", "effnet_lite0", "--quiet"]
RAY_ARGS = ["--engine", "ray", "--workers", "2", "--cpus-per-worker", "1"]


@pytest.fixture(scope="module")
def local_ray():
    """The CI's Ray instance: this machine, 2 CPUs."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """4 real H.264 videos of different lengths (3 to 6 snippets) and a file that is not a video."""
    folder = tmp_path_factory.mktemp("ray_videos")
    for i in range(4):
        encode(folder / f"v{i}.mkv", pattern_frames(48 + 16 * i, 48, 64, seed=20 + i))
    (folder / "broken.mp4").write_bytes(b"not a video" * 100)
    return folder


def _contents(store: Path) -> tuple[list, list, list]:
    """features, videos and failures tables (without timestamps)."""
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        features = conn.execute("SELECT key, video_key, backbone, fingerprint, file, n_snippets, crops, dim, dtype "
                                "FROM features ORDER BY key").fetchall()
        videos = conn.execute("SELECT * FROM videos ORDER BY key").fetchall()
        failures = conn.execute("SELECT path, stage, reason, fix FROM failures ORDER BY path").fetchall()
    return features, videos, failures


@pytest.mark.slow
def test_ray_run_equals_the_local_run(local_ray, inputs, tmp_path, capsys):
    local, distributed = tmp_path / "local", tmp_path / "ray"
    # Each Ray worker runs torch on its 1 CPU; float sums differ in the last bits between thread counts, so the
    # local run uses one thread too and the features must then be identical.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert extract.main([str(inputs), "--store", str(local), *BACKBONE]) == 1  # the broken file
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()

    assert extract.main([str(inputs), "--store", str(distributed), *BACKBONE, *RAY_ARGS]) == 1
    out, err = capsys.readouterr()
    assert "5 videos: 4 extracted, 0 cached, 1 failed" in out
    assert "2 Ray workers, 1 CPU each" in out
    counts = re.search(r"videos (\d+)\+(\d+);", out).groups()
    assert len(counts) == 2 and all(int(c) >= 1 for c in counts)  # both workers extracted videos
    assert f"FAILED {inputs / 'broken.mp4'}: not a readable video" in err

    features, videos, failures = _contents(local)
    assert len(features) == 4 and [f[5] for f in sorted(features, key=lambda f: f[5])] == [3, 4, 5, 6]
    assert _contents(distributed) == (features, videos, failures)
    for row in features:
        np.testing.assert_array_equal(np.load(local / row[4]), np.load(distributed / row[4]))

    # A second distributed run finds everything cached and computes nothing.
    assert extract.main([str(inputs), "--store", str(distributed), *BACKBONE, *RAY_ARGS]) == 1
    assert "5 videos: 0 extracted, 4 cached, 1 failed" in capsys.readouterr().out
    assert _contents(distributed)[0] == features


@pytest.mark.slow
def test_ray_grid_run_equals_the_local_run(local_ray, inputs, tmp_path, capsys):
    """Each worker's grid (``[T, cells, D]`` and its rows x cols) reaches the driver's store as a local run's."""
    local, distributed = tmp_path / "local", tmp_path / "ray"
    video = inputs / "v1.mkv"
    grid = [*BACKBONE, "--grid", "2x3"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert extract.main([str(video), "--store", str(local), *grid]) == 0
    finally:
        torch.set_num_threads(threads)
    assert extract.main([str(video), "--store", str(distributed), *grid, *RAY_ARGS]) == 0
    assert "1 extracted" in capsys.readouterr().out
    assert _contents(distributed)[0] == _contents(local)[0]
    (row,) = FeatureStore(distributed).features()
    (record,) = FeatureStore(distributed).features_of_video(row["video_key"], "effnet_lite0")
    assert record.grid == (2, 3) and record.read().shape == (4, 6, 1280)
    np.testing.assert_array_equal(record.read(), np.load(local / row["file"]))


def test_a_workers_grid_features_are_written_with_their_grid(inputs, tmp_path):
    """The driver's dispatch over a real worker (run in this process, without Ray): the grid the worker's
    Extractor gave each feature is the one the store records."""
    video = inputs / "v0.mkv"
    threads = torch.get_num_threads()
    try:
        worker = ExtractWorker(api.extract_settings(backbones="effnet_lite0", grids=["effnet_lite0=2x3"]), cpus=1)
    finally:
        torch.set_num_threads(threads)
    assert worker.error is None

    class InProcess:
        exceptions = _FakeRay.exceptions

        @staticmethod
        def wait(refs, num_returns):
            return [refs[0]], refs[1:]

        @staticmethod
        def get(ref):
            return ref.answer  # the worker ran when the video was submitted

    class Ref:  # hashable, as Ray's object references are
        def __init__(self, *task):
            self.answer = worker.extract(*task)

    handle = type("Worker", (), {"extract": type("Method", (), {"remote": Ref})})()
    store = FeatureStore(tmp_path / "s")
    for fingerprint, backbone, params in worker.fingerprints:
        store.register_extractor(fingerprint, backbone, params)
    fingerprints = [fp for fp, _, _ in worker.fingerprints]
    outcome, _ = _dispatch(InProcess, store, [handle], fingerprints, [str(video)], progress=False)
    assert outcome.extracted == 1 and not outcome.failures
    record = store.get_feature(feature_key(store.video_key(video), fingerprints[0]))
    assert record.grid == (2, 3) and record.read().shape == (3, 6, 1280)
    assert FeatureStore(tmp_path / "s").extractor_params(fingerprints[0])["grid"] == "2x3"


def test_worker_that_cannot_load_its_weights_stops_the_run(local_ray, inputs, tmp_path, capsys):
    missing = tmp_path / "nowhere.pt"
    code = extract.main([str(inputs), "--store", str(tmp_path / "s"), *BACKBONE, *RAY_ARGS,
                         "--weights", f"effnet_lite0={missing}"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "(on " in err
    assert FeatureStore(tmp_path / "s").features() == []


def test_ray_options_need_the_ray_engine(tmp_path, capsys):
    assert extract.main(["x.mp4", "--store", str(tmp_path / "s"), *BACKBONE, "--workers", "2"]) == 2
    assert "--workers only apply with --engine ray" in capsys.readouterr().err


@pytest.mark.parametrize("options, resources, device, expected", [
    (RayOptions(), (32, 4, 1), "auto", WorkerPlan(workers=4, cpus=8, gpus=1)),  # one per GPU
    (RayOptions(), (32, 4, 1), "cpu", WorkerPlan(workers=1, cpus=32, gpus=0)),  # --device cpu ignores GPUs
    (RayOptions(), (24, 0, 3), "auto", WorkerPlan(workers=3, cpus=8, gpus=0)),  # no GPU: one per machine
    (RayOptions(workers=2, cpus_per_worker=1), (2, 0, 1), "auto", WorkerPlan(workers=2, cpus=1, gpus=0)),
    (RayOptions(workers=2), (16, 8, 2), "cuda", WorkerPlan(workers=2, cpus=8, gpus=1)),
])
def test_worker_plan(options, resources, device, expected):
    cpus, gpus, nodes = resources
    assert plan_workers(options, cluster_cpus=cpus, cluster_gpus=gpus, nodes=nodes, device=device) == expected


@pytest.mark.parametrize("options, resources, device, message", [
    (RayOptions(workers=5), (32, 4, 1), "auto", "need a GPU each but the Ray cluster has 4"),
    (RayOptions(workers=3, cpus_per_worker=1), (2, 0, 1), "auto", "do not fit the Ray cluster's 2 CPUs"),
    (RayOptions(), (8, 0, 1), "cuda", "has no GPU"),
    (RayOptions(), (8, 2, 1), "cuda:1", "`device` takes auto, cpu, cuda"),
    (RayOptions(workers=0), (8, 0, 1), "auto", "at least 1"),
])
def test_worker_plan_errors(options, resources, device, message):
    cpus, gpus, nodes = resources
    with pytest.raises(UserError, match=message):
        plan_workers(options, cluster_cpus=cpus, cluster_gpus=gpus, nodes=nodes, device=device)


class _Died(Exception):
    """Stands in for ray.exceptions.RayActorError."""


FINGERPRINT = "f" * 64


class _FakeRay:
    """The three calls ``_dispatch`` makes (``wait``, ``get``, ``exceptions.RayError``), run synchronously: a task
    finishes in the order it was submitted, returning a 2-snippet feature for its video. Workers listed in
    ``dies`` raise for every video they were given."""

    class exceptions:
        RayError = _Died

    def __init__(self, dies: set[int]):
        self.dies = dies
        self.submitted: list[tuple[int, str]] = []

    def worker(self, index: int):
        fake = self

        class Method:
            @staticmethod
            def remote(path: str, video_key: str, todo: list[str]):
                fake.submitted.append((index, path))
                return index, path, video_key, tuple(todo)

        return type("Worker", (), {"extract": Method})()

    def wait(self, refs, num_returns):
        return [refs[0]], refs[1:]

    def get(self, ref):
        index, path, video_key, (key,) = ref
        if index in self.dies:
            raise _Died(f"worker {index} died")
        info = VideoInfo(path, 25.0, 64, 48, "h264", "pyav", n_frames=32)
        return Outcome(extracted=1, frames=32), info, [(key, "effnet_lite0", FINGERPRINT, np.ones((2, 1, 4)), None)]


def _files(folder: Path, n: int) -> list[str]:
    """``n`` small files with distinct contents (the driver hashes each before sending it out)."""
    folder.mkdir()
    for i in range(n):
        (folder / f"v{i}.mp4").write_bytes(f"video {i}".encode())
    return [str(folder / f"v{i}.mp4") for i in range(n)]


def test_dispatch_writes_results_and_fails_the_videos_of_a_dead_worker(tmp_path):
    fake = _FakeRay(dies={0})
    store = FeatureStore(tmp_path / "s")
    videos = _files(tmp_path / "in", 6)
    outcome, per_worker = _dispatch(fake, store, [fake.worker(0), fake.worker(1)], [FINGERPRINT], videos,
                                    progress=False)
    failed = sorted(path for path, _, _ in outcome.failures)
    assert failed == sorted(v for w, v in fake.submitted if w == 0) and len(failed) == 2  # the two it held
    assert outcome.extracted == 4 and per_worker[1] == 4  # the survivor took the rest
    assert all("Ray worker extracting it died" in reason for _, reason, _ in outcome.failures)
    assert sorted(f["path"] for f in store.failures()) == failed
    # The survivor's results are in the store, and no lock is left held (a second claim succeeds).
    assert len(store.features()) == 4
    for row in store.features():
        np.testing.assert_array_equal(np.load(store.root / row["file"]), np.ones((2, 1, 4)))
    again, _ = _dispatch(fake, store, [fake.worker(1)], [FINGERPRINT], videos, progress=False)
    assert again.cached == 4 and again.extracted == 2 and not again.failures


def test_dispatch_with_every_worker_dead_fails_the_rest_by_name(tmp_path):
    fake = _FakeRay(dies={0, 1})
    videos = _files(tmp_path / "in", 7)
    outcome, _ = _dispatch(fake, FeatureStore(tmp_path / "s"), [fake.worker(0), fake.worker(1)], [FINGERPRINT],
                           videos, progress=False)
    assert sorted(p for p, _, _ in outcome.failures) == sorted(videos) and outcome.extracted == 0
    assert sum("no Ray worker left" in reason for _, reason, _ in outcome.failures) == 3


def test_a_video_another_process_is_computing_is_waited_for_then_cached(tmp_path):
    """The driver claims features like the local engine: a feature locked by another process is left for last,
    then waited for (holding no locks meanwhile), and found cached once that process wrote it."""
    fake = _FakeRay(dies=set())
    store = FeatureStore(tmp_path / "s")
    videos = _files(tmp_path / "in", 3)
    key = feature_key(store.video_key(Path(videos[0])), FINGERPRINT)
    locked = threading.Event()

    def other_process():  # a thread with its own store handle and lock stands in for it
        other = FeatureStore(tmp_path / "s")
        lock = other.lock(key)
        lock.acquire(timeout=0)
        locked.set()
        time.sleep(0.5)
        other.put_feature(key, other.video_key(Path(videos[0])), "effnet_lite0", FINGERPRINT, np.zeros((2, 1, 4)))
        lock.release()

    thread = threading.Thread(target=other_process)
    thread.start()
    locked.wait()
    outcome, _ = _dispatch(fake, store, [fake.worker(0)], [FINGERPRINT], videos, progress=False)
    thread.join()
    assert outcome.extracted == 2 and outcome.cached == 1
    assert [path for _, path in fake.submitted] == videos[1:]
