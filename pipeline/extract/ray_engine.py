"""Stage 1 spread over a Ray cluster: ``python -m pipeline.extract PATH... --store S --engine ray [--address A]``.

The driver (this process) finds the videos as the local engine does and starts one worker actor per GPU of the
cluster (one per machine when there are none). Each worker builds the backbones on its own device from the same
:class:`ExtractSettings` and runs the ordinary :class:`Extractor` on the videos it is sent, one at a time.

The driver alone opens the store. SQLite's WAL mode, which the manifest uses, needs every process that opens the
database on one machine, so workers on other machines must not touch it; and only the driver then needs the
store's disk. For each video the driver hashes it, checks the cache and locks the features still to compute
(:func:`claim_features`, as the local engine does), sends the video to a free worker, and writes what comes back
(atomically, then unlocks). A worker's Extractor writes into a :class:`ResultSink` instead of the store. So keys,
fingerprints (the driver checks that every worker computes the same ones), atomic writes and per-feature locks
are the local engine's, and a local run can share the store meanwhile.

Videos are handed out as workers free up (``TASKS_PER_WORKER`` queued at each), so long and short videos
balance; progress is one bar over all of them. A video that fails is recorded by name while the rest go on; a
worker that dies (out of memory, a lost machine) fails the videos it held, and a re-run computes only what is
missing.

Every machine must see the videos at the same absolute paths (a shared disk) and have the project installed (the
Docker image). ``DAKD_CACHE_DIR``, ``TORCH_HOME`` and ``HF_HOME`` are passed on to the workers when set here, so
they find the same weights.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.cache import CACHE_ENV
from data.decode import VideoInfo
from extractors.weights import WeightsNotFound
from pipeline.atomic import host_name
from pipeline.errors import UserError
from pipeline.extract.extractor import STAGE, ExtractSettings, Outcome, claim_features, failure_reason, release
from pipeline.store import FeatureStore, NonFiniteFeature

TASKS_PER_WORKER = 2  # videos queued at each worker: the next one is already there when one finishes
FORWARDED_ENV = (CACHE_ENV, "TORCH_HOME", "HF_HOME")  # where the workers look for weights
RAY_DEVICES = ("auto", "cpu", "cuda")  # each worker gets its own GPU, so a device index means nothing there
RAY_MISSING = "`engine` ray needs Ray: pip install -e '.[ray]'"

log = logging.getLogger("pipeline.extract.ray_engine")


@dataclass(frozen=True)
class RayOptions:
    """The ``address``, ``workers`` and ``cpus_per_worker`` options (None: the defaults below)."""

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: int | None = None


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    cpus: int  # per worker: torch threads and the decoder
    gpus: int  # per worker: 1 or 0

    def describe(self) -> str:
        return f"{self.workers} Ray workers, {self.cpus} CPU{'s' * (self.cpus > 1)}" + (" + 1 GPU" * self.gpus) + \
            " each"


def plan_workers(options: RayOptions, *, cluster_cpus: float, cluster_gpus: float, nodes: int,
                 device: str) -> WorkerPlan:
    """How many workers with which resources. Default: one per GPU (``device`` auto or cuda), else one per
    machine; the cluster's CPUs shared evenly between them."""
    if device not in RAY_DEVICES:
        raise UserError(f"with `engine` ray, `device` takes {', '.join(RAY_DEVICES)} (got {device}): each worker "
                        "is given a GPU of its own")
    gpus = int(cluster_gpus)
    if device == "cuda" and gpus < 1:
        raise UserError("`device` cuda, but the Ray cluster has no GPU: use `device` auto or cpu")
    use_gpus = gpus >= 1 and device != "cpu"
    workers = options.workers if options.workers is not None else (gpus if use_gpus else max(1, nodes))
    if workers < 1 or (options.cpus_per_worker is not None and options.cpus_per_worker < 1):
        raise UserError("`workers` and `cpus_per_worker` must be at least 1")
    if use_gpus and workers > gpus:
        raise UserError(f"{workers} workers need a GPU each but the Ray cluster has {gpus}: lower `workers` "
                        "(or use `device` cpu)")
    cpus = options.cpus_per_worker or max(1, int(cluster_cpus) // workers)
    if workers * cpus > cluster_cpus:
        raise UserError(f"{workers} workers x {cpus} CPUs do not fit the Ray cluster's {cluster_cpus:g} CPUs: "
                        "lower `workers` or `cpus_per_worker`")
    return WorkerPlan(workers=workers, cpus=cpus, gpus=1 if use_gpus else 0)


class ResultSink:
    """What a worker's :class:`Extractor` writes to instead of the store, for one video: the driver has already
    hashed the video (``video_key``), checked the cache and locked the features still to compute (``todo``, their
    keys), so this only answers those questions the same way and keeps what the Extractor writes."""

    def __init__(self, video_key: str, todo: set[str]):
        self._video_key = video_key
        self._todo = todo
        self.info: VideoInfo | None = None
        # (key, backbone, fingerprint, [T, crops or cells, D], (rows, cols) of a grid feature or None)
        self.features: list[tuple[str, str, str, np.ndarray, tuple[int, int] | None]] = []

    def video_key(self, path: Path) -> str:
        return self._video_key

    def get_feature(self, key: str) -> str | None:
        """None for the features to compute; the others are the driver's business (the Extractor skips them)."""
        return None if key in self._todo else key

    def lock(self, key: str) -> _HeldByDriver:
        return _HeldByDriver()

    def register_extractor(self, fingerprint: str, backbone: str, params: dict) -> None:
        pass  # the driver registers the fingerprints the workers report

    def record_video(self, key: str, info: VideoInfo) -> None:
        self.info = info

    def put_feature(self, key: str, video_key: str, backbone: str, fingerprint: str, array: np.ndarray, *,
                    grid: tuple[int, int] | None = None) -> None:
        self.features.append((key, backbone, fingerprint, array, grid))

    def record_failure(self, path: str, stage: str, reason: str, fix: str = "") -> None:
        pass  # also in the returned Outcome, which the driver records


class _HeldByDriver:
    """The lock of a feature the driver already holds for this worker."""

    def acquire(self, timeout: float = -1) -> None:
        pass

    def release(self) -> None:
        pass


class ExtractWorker:
    """One Ray actor: its own backbones (on the GPU Ray gave it, or the CPU); extracts the videos it is sent with
    the ordinary :class:`Extractor` and returns the results to the driver."""

    def __init__(self, settings: ExtractSettings, cpus: int):
        torch.set_num_threads(cpus)
        self.settings = settings
        self.error: str | None = None
        self.fingerprints: list[tuple[str, str, dict]] = []
        try:
            self.backbones = settings.build_backbones()
        except (WeightsNotFound, ValueError) as exc:  # reported by the driver, which exits with code 2
            self.error = str(exc)
            self.where = host_name()
            return
        self.where = f"{host_name()} ({self.backbones[0].device})"
        probe = settings.extractor(ResultSink("", set()), self.backbones, progress=False)
        self.fingerprints = [(fp, b.name, params) for b, fp, params in zip(self.backbones, probe.fingerprints,
                                                                            probe.fingerprint_params)]

    def ready(self) -> tuple[str | None, str, list[tuple[str, str, dict]]]:
        """(the error that stops this worker or None, where it runs, its (fingerprint, backbone, params))."""
        return self.error, self.where, self.fingerprints

    def extract(self, path: str, video_key: str, todo: list[str]) -> tuple[Outcome, VideoInfo | None, list]:
        """Compute the features ``todo`` (keys) of one video. Returns (outcome, video info, [(key, backbone,
        fingerprint, array, grid)]), as :class:`ResultSink` keeps them."""
        sink = ResultSink(video_key, set(todo))
        outcome = self.settings.extractor(sink, self.backbones, progress=False).run([Path(path)])
        return outcome, sink.info, sink.features


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise UserError(RAY_MISSING) from exc
    return ray


def _connect(ray, address: str | None) -> bool:
    """Join ``address`` (None: $RAY_ADDRESS, else start a local instance) unless this process already is part
    of a Ray cluster. Returns whether we connected (and so must disconnect)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot reach the Ray cluster at {address or os.environ.get('RAY_ADDRESS')}: {exc}; "
                        "start one with `ray start --head`, or leave `address` unset to use this machine") from exc
    return True


def _start_workers(ray, plan: WorkerPlan, settings: ExtractSettings) -> list:
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    actor = ray.remote(ExtractWorker).options(num_cpus=plan.cpus, num_gpus=plan.gpus, scheduling_strategy="SPREAD",
                                              runtime_env={"env_vars": env} if env else None)
    return [actor.remote(settings, plan.cpus) for _ in range(plan.workers)]


def _agreed_fingerprints(ready: list[tuple[str | None, str, list]]) -> list[tuple[str, str, dict]]:
    """The workers' common (fingerprint, backbone, params); UserError when a worker failed or they differ
    (another weights file or code version on some machine would mix features of two extractors)."""
    errors = sorted({f"{error} (on {where})" for error, where, _ in ready if error})
    if errors:
        raise UserError("; ".join(errors))
    first = ready[0][2]
    differ = sorted({where for _, where, fps in ready if fps != first})
    if differ:
        raise UserError(f"the workers on {', '.join(differ)} compute other features than the one on {ready[0][1]} "
                        "(another weights file, package or code version there): install the same on every "
                        "machine")
    return first


@dataclass
class _Task:
    """A video sent to a worker, with the feature locks the driver holds for it."""

    worker: int
    path: str
    video_key: str
    locks: list


def _dispatch(ray, store: FeatureStore, workers: list, fingerprints: list[str], videos: list[str], *,
              force: bool = False, progress: bool = True) -> tuple[Outcome, Counter]:
    """Hand the videos that need work to workers as they free up and write what comes back. Returns the merged
    outcome and videos extracted per worker index."""
    outcome, per_worker = Outcome(), Counter()
    pending, deferred = deque(videos), []
    wait = False  # True once only videos another process was computing are left: then wait for its locks
    in_flight: dict = {}  # ObjectRef -> _Task
    dead: set[int] = set()
    bar = tqdm(total=len(videos), unit="video", disable=not progress, dynamic_ncols=True, desc="extract on ray")
    start = time.perf_counter()

    def fail(path: str, reason: str, fix: str) -> None:
        outcome.failures.append((path, reason, fix))
        store.record_failure(path, STAGE, reason, fix)
        bar.update(1)

    def submit(w: int) -> None:
        """Send worker ``w`` the next video with something to compute (counting the cached ones on the way)."""
        while pending and w not in dead:
            path = pending.popleft()
            try:
                video_key = store.video_key(Path(path))
                state, todo, locks = claim_features(store, video_key, fingerprints, force=force, wait=wait)
            except OSError as exc:  # e.g. deleted since it was found: fails alone
                fail(path, *failure_reason(exc))
                continue
            if state == "cached":
                outcome.cached += 1
                bar.update(1)
            elif state == "busy":  # another process computes it: wait for it at the end, holding no locks
                deferred.append(path)
            else:
                in_flight[workers[w].extract.remote(path, video_key, sorted(todo.values()))] = \
                    _Task(w, path, video_key, locks)
                return

    def finish(ref) -> None:
        task = in_flight.pop(ref)
        try:
            part, info, features = ray.get(ref)
            if features:
                store.record_video(task.video_key, info)
                for key, backbone, fingerprint, array, grid in features:
                    store.put_feature(key, task.video_key, backbone, fingerprint, array, grid=grid)
        except ray.exceptions.RayError as exc:  # the worker died (or its machine): its videos fail by name
            dead.add(task.worker)
            fail(task.path, f"the Ray worker extracting it died ({type(exc).__name__})",
                 "run the same command again: finished videos are cached, only the rest is computed")
            return
        except (OSError, NonFiniteFeature) as exc:  # the store's disk, or NaN features: this video fails alone
            fail(task.path, *failure_reason(exc))
            return
        finally:
            release(task.locks)
        outcome.extracted += part.extracted
        outcome.frames += part.frames
        for path, reason, fix in part.failures:
            fail(path, reason, fix)
        if part.extracted:
            per_worker[task.worker] += 1
            bar.update(part.extracted)

    with bar:
        while pending or in_flight or deferred:
            for w in range(len(workers)):
                # While waiting for another process's locks, one video at a time: blocking in a claim while holding
                # the locks of videos in flight could deadlock with a second driver doing the same.
                while (pending and w not in dead and not (wait and in_flight)
                       and sum(t.worker == w for t in in_flight.values()) < TASKS_PER_WORKER):
                    submit(w)
            if not in_flight:
                if len(dead) == len(workers):
                    for path in [*pending, *deferred]:
                        fail(path, "no Ray worker left to extract it", "run the same command again")
                    break
                if not pending and deferred:
                    pending.extend(deferred)
                    deferred.clear()
                    wait = True
                continue
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            finish(ref)
            rate = outcome.frames / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{rate:.0f} frames/s, {len(workers) - len(dead)} workers")
    return outcome, per_worker


def extract_on_ray(store: FeatureStore, settings: ExtractSettings, videos: list[Path], options: RayOptions, *,
                   progress: bool = True) -> tuple[Outcome, str]:
    """Extract ``videos`` into ``store`` on a Ray cluster. Returns the outcome (as the local engine's) and a
    phrase saying where it ran. Raises UserError when Ray is missing, unreachable, or a worker cannot load its
    backbones."""
    ray = _import_ray()
    start = time.perf_counter()
    connected = _connect(ray, options.address)
    workers: list = []
    try:
        resources = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        plan = plan_workers(options, cluster_cpus=resources.get("CPU", 0), cluster_gpus=resources.get("GPU", 0),
                            nodes=nodes, device=settings.device)
        workers = _start_workers(ray, plan, settings)
        try:
            ready = ray.get([w.ready.remote() for w in workers])
        except ray.exceptions.RayError as exc:  # e.g. the project cannot be imported on a worker's machine
            raise UserError(f"the Ray workers could not start: {exc}; is the project installed on every machine "
                            "(the Docker image)?") from exc
        fingerprints = _agreed_fingerprints(ready)
        for fingerprint, backbone, params in fingerprints:
            store.register_extractor(fingerprint, backbone, params)
        startup = time.perf_counter() - start  # joining or starting Ray, starting workers, loading weights
        # Workers run elsewhere (another working directory, another machine): absolute paths only.
        outcome, per_worker = _dispatch(ray, store, workers, [fp for fp, _, _ in fingerprints],
                                        [str(Path(v).absolute()) for v in videos], force=settings.force,
                                        progress=progress)
        hosts = Counter(where for _, where, _ in ready)
        counts = "+".join(str(per_worker[w]) for w in range(len(workers)))
        where = (f"on {plan.describe()} ({', '.join(f'{n} on {h}' for h, n in hosts.items())}; videos {counts}; "
                 f"{startup:.1f} s of it starting them)")
        return outcome, where
    finally:
        for w in workers:
            ray.kill(w)
        if connected:
            ray.shutdown()
