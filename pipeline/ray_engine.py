"""Stage 1 spread over a Ray cluster: ``python -m pipeline.extract PATH... --store S --engine ray [--address A]``.

The driver (this process) finds the videos as the local engine does and starts one worker actor per GPU of the
cluster (one per machine when there are none). Each worker builds the run's backbones on its own device from the
same :class:`ExtractSettings`, opens the same store and runs the ordinary :class:`Extractor` on the videos it is
sent, one at a time. So every guarantee of the store holds unchanged: content keys and fingerprints are the
local engine's, writes are atomic, per-feature file locks keep two workers (or a worker and a local run) from
computing one feature twice, and a video that fails is recorded by name while the rest go on.

Videos are handed out dynamically (each worker holds ``TASKS_PER_WORKER`` at a time), so long and short videos
balance across workers; progress is one bar over all of them. A worker that dies (out of memory, a lost machine)
fails the videos it held, by name; the other workers go on and a re-run computes only what is missing.

Every machine must see the store and the videos at the same absolute paths (a shared disk), and have the
project installed (the Docker image). ``DAKD_CACHE_DIR``, ``TORCH_HOME`` and ``HF_HOME`` are passed on to the
workers when set here, so they find the same weights.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from data.cache import CACHE_ENV
from extractors.weights import WeightsNotFound
from pipeline.atomic import host_name
from pipeline.errors import UserError
from pipeline.extract import STAGE, ExtractSettings, Outcome
from pipeline.store import FeatureStore

TASKS_PER_WORKER = 2  # videos queued at each worker: the next one is already there when one finishes
FORWARDED_ENV = (CACHE_ENV, "TORCH_HOME", "HF_HOME")  # where the workers look for weights
RAY_DEVICES = ("auto", "cpu", "cuda")  # each worker gets its own GPU, so a device index means nothing there
RAY_MISSING = "--engine ray needs Ray: pip install -e '.[ray]'"

log = logging.getLogger("pipeline.ray_engine")


@dataclass(frozen=True)
class RayOptions:
    """The ``--address``, ``--workers`` and ``--cpus-per-worker`` options (None: the defaults below)."""

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
        raise UserError(f"with --engine ray, --device takes {', '.join(RAY_DEVICES)} (got {device}): each worker "
                        "is given a GPU of its own")
    gpus = int(cluster_gpus)
    if device == "cuda" and gpus < 1:
        raise UserError("--device cuda, but the Ray cluster has no GPU: use --device auto or cpu")
    use_gpus = gpus >= 1 and device != "cpu"
    workers = options.workers if options.workers is not None else (gpus if use_gpus else max(1, nodes))
    if workers < 1 or (options.cpus_per_worker is not None and options.cpus_per_worker < 1):
        raise UserError("--workers and --cpus-per-worker must be at least 1")
    if use_gpus and workers > gpus:
        raise UserError(f"{workers} workers need a GPU each but the Ray cluster has {gpus}: lower --workers "
                        "(or --device cpu)")
    cpus = options.cpus_per_worker or max(1, int(cluster_cpus) // workers)
    if workers * cpus > cluster_cpus:
        raise UserError(f"{workers} workers x {cpus} CPUs do not fit the Ray cluster's {cluster_cpus:g} CPUs: "
                        "lower --workers or --cpus-per-worker")
    return WorkerPlan(workers=workers, cpus=cpus, gpus=1 if use_gpus else 0)


class ExtractWorker:
    """One Ray actor: its own backbones (on the GPU Ray gave it, or the CPU) and store handle; extracts the videos
    it is sent with the ordinary :class:`Extractor`."""

    def __init__(self, store_root: str, settings: ExtractSettings, cpus: int):
        torch.set_num_threads(cpus)
        self.error: str | None = None
        try:
            backbones = settings.build_backbones()
        except (WeightsNotFound, ValueError) as exc:  # reported by the driver, which exits with code 2
            self.error = str(exc)
            self.where = host_name()
            return
        self.where = f"{host_name()} ({backbones[0].device})"
        self.extractor = settings.extractor(FeatureStore(store_root), backbones, progress=False)

    def ready(self) -> tuple[str | None, str]:
        """(the error that stops this worker or None, where it runs)."""
        return self.error, self.where

    def extract(self, path: str) -> Outcome:
        return self.extractor.run([Path(path)])


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
                        "start one with `ray start --head`, or drop --address to use this machine") from exc
    return True


def _start_workers(ray, plan: WorkerPlan, store_root: Path, settings: ExtractSettings) -> list:
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    actor = ray.remote(ExtractWorker).options(num_cpus=plan.cpus, num_gpus=plan.gpus, scheduling_strategy="SPREAD",
                                              runtime_env={"env_vars": env} if env else None)
    return [actor.remote(str(store_root), settings, plan.cpus) for _ in range(plan.workers)]


def _merge(total: Outcome, part: Outcome) -> None:
    total.extracted += part.extracted
    total.cached += part.cached
    total.frames += part.frames
    total.failures.extend(part.failures)


def _dispatch(ray, store: FeatureStore, workers: list, videos: list[str], *, progress: bool) -> tuple[Outcome, Counter]:
    """Hand the videos out as workers free up. Returns the merged outcome and videos done per worker index."""
    outcome, per_worker = Outcome(), Counter()
    pending = deque(videos)
    in_flight: dict = {}  # ObjectRef -> (worker index, video)
    dead: set[int] = set()

    def submit(w: int) -> None:
        if pending and w not in dead:
            video = pending.popleft()
            in_flight[workers[w].extract.remote(video)] = (w, video)

    def fail(video: str, reason: str, fix: str) -> None:
        outcome.failures.append((video, reason, fix))
        store.record_failure(video, STAGE, reason, fix)

    for w in range(len(workers)):
        for _ in range(TASKS_PER_WORKER):
            submit(w)
    start = time.perf_counter()
    with tqdm(total=len(videos), unit="video", disable=not progress, dynamic_ncols=True) as bar:
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            w, video = in_flight.pop(ref)
            try:
                _merge(outcome, ray.get(ref))
                per_worker[w] += 1
            except ray.exceptions.RayError as exc:  # the worker died (or its machine): its videos fail by name
                dead.add(w)
                fail(video, f"the Ray worker extracting it died ({type(exc).__name__})",
                     "run the same command again: finished videos are cached, only the rest is computed")
            bar.update(1)
            rate = outcome.frames / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{rate:.0f} frames/s, {len(workers) - len(dead)} workers")
            submit(w)
            if len(dead) == len(workers):
                while pending:
                    fail(pending.popleft(), "no Ray worker left to extract it", "run the same command again")
                    bar.update(1)
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
        workers = _start_workers(ray, plan, store.root.absolute(), settings)
        try:
            ready = ray.get([w.ready.remote() for w in workers])
        except ray.exceptions.RayError as exc:  # e.g. the project cannot be imported on a worker's machine
            raise UserError(f"the Ray workers could not start: {exc}; is the project installed on every machine "
                            "(the Docker image)?") from exc
        errors = sorted({f"{error} (on {where})" for error, where in ready if error})
        if errors:
            raise UserError("; ".join(errors))
        startup = time.perf_counter() - start  # joining or starting Ray, starting workers, loading weights
        # Workers run elsewhere (another working directory, another machine): absolute paths only.
        outcome, per_worker = _dispatch(ray, store, workers, [str(Path(v).absolute()) for v in videos],
                                        progress=progress)
        hosts = Counter(where for _, where in ready)
        counts = "+".join(str(per_worker[w]) for w in range(len(workers)))
        where = (f"on {plan.describe()} ({', '.join(f'{n} on {h}' for h, n in hosts.items())}; videos {counts}; "
                 f"{startup:.1f} s of it starting them)")
        return outcome, where
    finally:
        for w in workers:
            ray.kill(w)
        if connected:
            ray.shutdown()
