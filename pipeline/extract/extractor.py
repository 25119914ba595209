"""The extraction engine: videos -> per-snippet backbone features in a store, shared by the local engine of
``dakd extract`` and the Ray workers of ``pipeline.extract.ray_engine`` (both import it; neither imports the other's
internals).

Data flow: a producer hashes each video, skips what the store already holds, locks what it will compute
(:func:`claim_features`), and decodes 16-frame snippets (resized while decoding); the consumer batches snippets
across videos, runs every backbone that still needs them, and writes each video's features atomically as soon as
its last snippet is through. Beside a GPU the producer is a thread feeding a bounded queue, so decoding overlaps
the forward passes; on a CPU it runs in between them (see ``Extractor._source``). Memory is bounded by a batch
plus the queue. :class:`ExtractSettings` is the picklable description of one run both engines build from.

A backbone's features never depend on what it is extracted beside: each backbone is decoded as it would be alone
(its own resize while decoding, :func:`decode_plan`), so backbones needing different decode sizes (i3d at 224,
s3d at 256, lowres at 64 x 64) decode the video once per size (:func:`decode_groups`), and a backbone's fingerprint
is the one it gets alone. Frames lie on the presentation timeline (``timeline``, ``data.decode``): by default the
stream's constant-rate grid, which the fingerprint leaves out, so constant-rate files keep the fingerprints (and
features) of before; the ``decoded`` timeline (every decoded frame once) is recorded in it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import filelock
import torch
from tqdm import tqdm

from data.decode import (DECODE_RESIZE_FILTER, DEFAULT_TIMELINE, FRAME_FOLDER_FPS, SNIPPET_FRAMES, TIMELINES,
                         VideoInfo, open_video)
from data.watchdog import DECODE_STALL_TIMEOUT_S
from data.errors import VideoError
from extractors.base import Backbone
from extractors.device import auto_device
from extractors.registry import build_backbone
from pipeline.atomic import NoSpaceError
# Defined with the command line's defaults (pipeline.defaults imports nothing heavy, for a fast --help).
from pipeline.defaults import DTYPES, EXTRACT_BATCH_SIZE, MAX_DECODE_WORKERS  # noqa: F401 (re-exported)
from pipeline.errors import UserError
from pipeline.keys import feature_key, hash_json
from pipeline.store import FeatureStore, ManifestDamaged, NonFiniteFeature

DEFAULT_BATCH_SIZE = EXTRACT_BATCH_SIZE  # snippets per forward pass (across videos); the CLI shows it
DEFAULT_QUEUE_SNIPPETS = 32  # decoded snippets waiting for the model: bounds memory, lets decoding run ahead
QUEUE_POLL_S = 0.1  # how often a decode thread blocked on a full queue checks whether the run stopped
STAGE = "extract"


log = logging.getLogger("pipeline.extract")


def extractor_fingerprint(backbone: Backbone, *, dtype: str, decoder: str,
                          decode_short_side: int | None = None, decode_square: bool = False,
                          timeline: str = DEFAULT_TIMELINE) -> tuple[str, dict]:
    """Hash of everything that decides a backbone's stored features (design.md): backbone name, weights hash,
    preprocessing, crops, frame choice, code version, plus the stored dtype and how frames were decoded (backend,
    resize while decoding, timeline)."""
    decode = {"backend": decoder, "short_side": decode_short_side,
              "filter": DECODE_RESIZE_FILTER if decode_short_side else None}
    if decode_square:  # only then, so the fingerprints of before stay as they were
        decode["square"] = True
    if timeline != DEFAULT_TIMELINE:  # the default is left out, as the default view is: stores of before stay valid
        decode["timeline"] = timeline
    params = {**backbone.fingerprint_params(), "dtype": dtype, "decode": decode}
    return hash_json(params), params


def backbone_fingerprint(backbone: Backbone, *, dtype: str = "float32", decoder: str = "auto",
                         decode_resize: bool = True, timeline: str = DEFAULT_TIMELINE) -> tuple[str, dict]:
    """The fingerprint :class:`Extractor` gives ``backbone`` (whatever it is extracted beside): its own decode plan
    and its own stored dtype (lowres: uint8) else ``dtype``."""
    plan = decode_plan(backbone, decode_resize)
    return extractor_fingerprint(backbone, dtype=getattr(backbone, "storage_dtype", None) or dtype, decoder=decoder,
                                 decode_short_side=plan.short_side, decode_square=plan.square, timeline=timeline)


def claim_features(store: FeatureStore, video_key: str, fingerprints: list[str], *, force: bool = False,
                   wait: bool = False) -> tuple[str, dict[int, str], list]:
    """Which of a video's features (one per fingerprint) still need computing, locked for this process.

    Returns ``(state, todo, locks)``: state ``"cached"`` (nothing to do), ``"busy"`` (another process holds a
    lock and ``wait`` is False; nothing is held) or ``"todo"``; todo maps fingerprint index -> feature key; the
    caller releases ``locks`` (:func:`release`) once the features are written.
    """
    todo = {i: feature_key(video_key, fp) for i, fp in enumerate(fingerprints)}
    todo = {i: key for i, key in todo.items() if force or store.get_feature(key) is None}
    locks: list = []
    for i, key in list(todo.items()):
        lock = store.lock(key)
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except filelock.Timeout:  # another process is computing this feature right now
            release(locks)
            return "busy", {}, []
        locks.append(lock)
        # The other process may have finished it between our check and our lock.
        if not force and store.get_feature(key) is not None:
            del todo[i]
    if not todo:
        release(locks)
        return "cached", {}, []
    return "todo", todo, locks


def release(locks: list) -> None:
    """Release (and forget) feature locks taken by :func:`claim_features`."""
    for lock in locks:
        lock.release()
    locks.clear()


def default_decode_workers(backbones: list[Backbone]) -> int:
    """Videos to decode at once: one per core (at most ``MAX_DECODE_WORKERS``) when decoding is all the work
    (every backbone ``decode_bound``), else one."""
    if all(getattr(b, "decode_bound", False) for b in backbones):
        return max(1, min(os.cpu_count() or 1, MAX_DECODE_WORKERS))
    return 1


def decode_size_for(backbones: list[Backbone]) -> int:
    """Short side to resize to while decoding frames shared by ``backbones``: the largest any of them resizes to,
    so none upsamples. The extract stage shares a decode only between backbones of one :class:`DecodePlan`."""
    return max(b.preprocessing.decode_short_side for b in backbones)


def decode_square_for(backbones: list[Backbone]) -> bool:
    """Whether decoding can squash the whole frame to a square at once: when every backbone takes the squash view
    at one size (lowres), which spares a second resize."""
    return (all(b.preprocessing.view == "squash" for b in backbones)
            and len({b.preprocessing.crop_size for b in backbones}) == 1)


@dataclass(frozen=True)
class DecodePlan:
    """How frames are resized while decoding for a backbone: short side (None: full size) and the square squash."""

    short_side: int | None
    square: bool = False


def decode_plan(backbone: Backbone, decode_resize: bool = True) -> DecodePlan:
    """A backbone's own decode, the same whatever it is extracted beside (so are its features and fingerprint):
    resized while decoding to its own size (:func:`decode_size_for` of it alone), squashed to a square for the
    squash view; full size without ``decode_resize``."""
    if not decode_resize:
        return DecodePlan(None)
    return DecodePlan(decode_size_for([backbone]), decode_square_for([backbone]))


def decode_groups(backbones: list[Backbone], decode_resize: bool = True) -> list[tuple[DecodePlan, list[int]]]:
    """Backbone indices grouped by decode plan, in first-appearance order: each group is one decode of a video.
    Decoding once at the largest size and resizing for the others would be cheaper, but a second resize (torch's
    after swscale's) changes the smaller backbones' features from what they are extracted alone."""
    groups: dict[DecodePlan, list[int]] = {}
    for i, b in enumerate(backbones):
        groups.setdefault(decode_plan(b, decode_resize), []).append(i)
    return list(groups.items())


@dataclass
class Job:
    """One video on its way through the stage."""

    index: int
    path: Path
    video_key: str = ""
    todo: dict[int, str] = field(default_factory=dict)  # backbone index -> feature key still to compute
    locks: list = field(default_factory=list)
    queued: int = 0  # snippets put on the queue
    outputs: dict[int, list[torch.Tensor]] = field(default_factory=lambda: defaultdict(list))
    grids: dict[int, tuple[int, int]] = field(default_factory=dict)  # backbone index -> (rows, cols) of a grid
    done_snippets: int = 0
    info: VideoInfo | None = None  # set when decoding finished
    failed: bool = False


@dataclass
class Outcome:
    extracted: int = 0
    cached: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, fix)
    frames: int = 0
    # path -> how it decoded, for the videos decoded now (only with Extractor(record_infos=True): pipeline.detect)
    infos: dict[str, VideoInfo] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)


class Extractor:
    """Runs the stage over a list of videos against one store."""

    def __init__(self, store: FeatureStore, backbones: list[Backbone], *, batch_size: int = DEFAULT_BATCH_SIZE,
                 dtype: str = "float32", decoder: str = "auto", force: bool = False,
                 frames_fps: float = FRAME_FOLDER_FPS, queue_snippets: int = DEFAULT_QUEUE_SNIPPETS,
                 decode_resize: bool = True, overlap: bool | None = None, decode_workers: int | None = None,
                 progress: bool = True, timeline: str = DEFAULT_TIMELINE, record_infos: bool = False,
                 decode_timeout_s: float = DECODE_STALL_TIMEOUT_S):
        self.store = store
        self.backbones = backbones
        self.batch_size = batch_size
        self.dtype = dtype
        self.decoder = decoder
        self.force = force
        self.frames_fps = frames_fps
        self.queue_snippets = queue_snippets
        self.progress = progress
        self.record_infos = record_infos
        # A video whose decoding makes no progress for this long fails by name and the others go on (data.watchdog).
        self.decode_timeout_s = decode_timeout_s
        if timeline not in TIMELINES:
            raise ValueError(f"timeline must be one of {', '.join(TIMELINES)}, got {timeline!r}")
        self.timeline = timeline
        # Resizing while decoding is what keeps the pipeline around the models cheap (see data.decode); each
        # backbone gets its own decode plan, one decode per plan (decode_groups).
        self.groups = decode_groups(backbones, decode_resize)
        # A backbone may fix its own stored dtype (lowres: uint8 grey levels) whatever --dtype says.
        self.dtypes = [getattr(b, "storage_dtype", None) or dtype for b in backbones]
        self.fingerprints, self.fingerprint_params = [], []
        for b in backbones:
            fp, params = backbone_fingerprint(b, dtype=dtype, decoder=decoder, decode_resize=decode_resize,
                                              timeline=timeline)
            store.register_extractor(fp, b.name, params)
            self.fingerprints.append(fp)
            self.fingerprint_params.append(params)
        self.pin = any(b.device.type == "cuda" for b in backbones)
        self.overlap = self.pin if overlap is None else overlap  # decode thread: by default only beside a GPU
        self.decode_workers = decode_workers or default_decode_workers(backbones)
        # Per decode group, the snippet positions its backbones read (CLIP: the centre frame only): the decoder may
        # skip the rest.
        self.needed_frames = [tuple(sorted({i for b in members for i in backbones[b].frame_indices}))
                              for _, members in self.groups]

    # -- producer --------------------------------------------------------------------------------------------
    def _plan(self, job: Job, *, wait: bool) -> str:
        """Fill ``job.todo`` and take its locks. Returns ``"cached"``, ``"busy"`` (another process holds a lock)
        or ``"todo"``."""
        job.video_key = self.store.video_key(job.path)
        state, job.todo, job.locks = claim_features(self.store, job.video_key, self.fingerprints, force=self.force,
                                                    wait=wait)
        return state

    @staticmethod
    def _release(job: Job) -> None:
        release(job.locks)

    def _decode(self, job: Job):
        """The video's snippets, once per decode group that holds a backbone still to compute (sequentially: one
        snippet in memory per decoder), then ``end`` with the decoding's info. Payload of a snippet: (group, frames
        uint8 ``[16, H, W, 3]``)."""
        info = None
        for g, (plan, members) in enumerate(self.groups):
            if not any(b in job.todo for b in members):
                continue
            with open_video(job.path, backend=self.decoder, fps=self.frames_fps, short_side=plan.short_side,
                            needed=self.needed_frames[g], square=plan.square, timeline=self.timeline,
                            stall_timeout_s=self.decode_timeout_s) as video:
                for snippet in video.snippets(SNIPPET_FRAMES):
                    tensor = torch.from_numpy(snippet)
                    job.queued += 1
                    yield ("snippet", job, (g, tensor.pin_memory() if self.pin else tensor))
                info = info or video.info  # the timeline (frame count, fps) is the same at every size
        yield ("end", job, info)

    def _job_messages(self, job: Job, *, wait: bool, deferred: list[Job]):
        """One video's messages, in order: ``cached``, or its ``snippet``s and ``end``, or ``failed``. A video
        another process is computing (and ``wait`` is False) yields nothing and goes to ``deferred``."""
        try:
            state = self._plan(job, wait=wait)
            if state == "busy":
                deferred.append(job)
            elif state == "cached":
                yield ("cached", job, None)
            else:
                yield from self._decode(job)
        except Exception as exc:  # VideoError, OSError, a decoder's own types: one bad video fails alone
            yield ("failed", job, exc)

    def _messages(self, jobs: list[Job], stop: threading.Event):
        """Yields ``(kind, job, payload)``: ``cached``, ``snippet``, ``end``, ``failed``, ``flush`` (run what is
        pending now) and a final ``stop``. Videos another process is computing are deferred to a second pass that
        waits for that process and then finds them cached."""
        deferred: list[Job] = []
        if self.decode_workers > 1:
            yield from self._parallel_messages(jobs, stop, deferred)
        else:
            for job in jobs:
                if stop.is_set():
                    return
                yield from self._job_messages(job, wait=False, deferred=deferred)
        for job in deferred:
            if stop.is_set():
                return
            # About to wait for another process: first finish (and unlock) everything we hold, so two processes
            # can never wait on each other.
            yield ("flush", None, None)
            yield from self._job_messages(job, wait=True, deferred=deferred)
        yield ("stop", None, None)

    def _parallel_messages(self, jobs: list[Job], stop: threading.Event, deferred: list[Job]):
        """``decode_workers`` threads each take the next video and decode it; their messages meet in a bounded
        queue. One video's messages stay in order, videos interleave (the consumer batches across videos)."""
        q: queue.Queue = queue.Queue(maxsize=self.queue_snippets)
        pending = iter(jobs)
        take = threading.Lock()

        def put(message) -> bool:
            while not stop.is_set():
                try:
                    q.put(message, timeout=QUEUE_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            while not stop.is_set():
                with take:
                    job = next(pending, None)
                if job is None:
                    break
                for message in self._job_messages(job, wait=False, deferred=deferred):
                    if not put(message):
                        return
            put(("worker-done", None, None))

        threads = [threading.Thread(target=work, name=f"decode-{i}", daemon=True)
                   for i in range(self.decode_workers)]
        for t in threads:
            t.start()
        running = len(threads)
        try:
            while running:
                try:
                    message = q.get(timeout=QUEUE_POLL_S)
                except queue.Empty:
                    if stop.is_set() and not any(t.is_alive() for t in threads):
                        break  # stopped: the workers returned without their "worker-done"
                    continue
                if message[0] == "worker-done":
                    running -= 1
                else:
                    yield message
        finally:
            # Closed early (the store failed: disk full, damaged manifest): the workers stop, and we wait for them, so
            # that a lock a worker claimed after the stop is in its job when the caller releases every job's locks.
            stop.set()
            for t in threads:
                while t.is_alive():
                    try:
                        q.get_nowait()  # a worker blocked on the full queue gets through to its stop check
                    except queue.Empty:
                        t.join(timeout=QUEUE_POLL_S)

    def _source(self, jobs: list[Job], stop: threading.Event):
        """The message stream. With a GPU, a decode thread fills a bounded queue so decoding overlaps the forward
        passes. On a CPU the forward passes already use every core: a concurrent decode thread would only stall
        torch's parallel regions, so decoding runs in between the forward passes instead."""
        if not self.overlap:
            yield from self._messages(jobs, stop)
            return
        q: queue.Queue = queue.Queue(maxsize=self.queue_snippets)
        producer = threading.Thread(target=lambda: [q.put(m) for m in self._messages(jobs, stop)], name="decode",
                                    daemon=True)
        producer.start()
        try:
            while (message := q.get())[0] != "stop":
                yield message
            yield message
        finally:
            stop.set()
            while producer.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    producer.join(timeout=0.1)

    # -- consumer (main thread) -------------------------------------------------------------------------------
    def run(self, paths: list[Path]) -> Outcome:
        jobs = [Job(i, Path(p)) for i, p in enumerate(paths)]
        outcome = Outcome()
        stop = threading.Event()
        batch: list[tuple[Job, int, torch.Tensor]] = []  # (video, decode group, snippet)
        ended: dict[int, Job] = {}
        bar = tqdm(total=len(jobs), unit="video", disable=not self.progress, dynamic_ncols=True,
                   desc=f"extract {','.join(b.name for b in self.backbones)}")
        start = time.perf_counter()
        embedded = [0.0]  # video frames through every backbone so far: the rate shows from the first batch on

        def show_rate() -> None:
            bar.set_postfix_str(f"{embedded[0] / max(time.perf_counter() - start, 1e-9):.0f} frames/s")

        def fail(job: Job, exc: BaseException) -> None:
            if isinstance(exc, (NoSpaceError, ManifestDamaged)):
                raise exc  # the store's fault, not the video's: the stage stops (what was written is kept)
            if job.failed:
                return
            job.failed = True
            reason, fix = failure_reason(exc)
            outcome.failures.append((str(job.path), reason, fix))
            self.store.record_failure(str(job.path), STAGE, reason, fix)
            self._release(job)
            ended.pop(job.index, None)
            batch[:] = [item for item in batch if item[0] is not job]
            bar.update(1)

        def finish_ready() -> None:
            for job in [j for j in ended.values() if j.done_snippets == j.queued]:
                del ended[job.index]
                try:
                    self._write(job)
                except (VideoError, OSError, NonFiniteFeature) as exc:
                    fail(job, exc)
                    continue
                outcome.extracted += 1
                outcome.frames += job.info.n_frames or 0
                if self.record_infos:
                    outcome.infos[str(job.path)] = job.info
                bar.update(1)
            show_rate()

        def flush() -> None:
            if batch:
                try:
                    self._forward(batch)
                    # a snippet of 16 frames per decode group (a video decoded at two sizes counts once)
                    embedded[0] += len(batch) * SNIPPET_FRAMES / len(self.groups)
                except Exception as exc:  # e.g. out of memory: the videos in this batch fail, the rest go on
                    for job in {id(item[0]): item[0] for item in batch}.values():
                        fail(job, exc)
                batch.clear()
            finish_ready()

        source = self._source(jobs, stop)
        try:
            for kind, job, payload in source:
                if kind == "stop":
                    break
                if kind == "flush":
                    flush()
                    continue
                if job.failed:
                    continue  # the rest of a video that already failed
                if kind == "cached":
                    outcome.cached += 1
                    bar.update(1)
                elif kind == "failed":
                    fail(job, payload)
                elif kind == "snippet":
                    batch.append((job, *payload))
                    if len(batch) >= self.batch_size:
                        flush()
                elif kind == "end":
                    job.info = payload
                    ended[job.index] = job
                    if job.done_snippets == job.queued:
                        finish_ready()
            flush()
        finally:
            stop.set()
            source.close()
            for job in jobs:
                self._release(job)
            bar.close()
        return outcome

    def _forward(self, batch: list[tuple[Job, int, torch.Tensor]]) -> None:
        """Run each backbone over the snippets of the batch decoded for its group whose video still needs it."""
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for i, (_, g, t) in enumerate(batch):
            by_shape[(g, *t.shape)].append(i)
        for (g, *_), rows in by_shape.items():
            for b in self.groups[g][1]:
                take = [i for i in rows if b in batch[i][0].todo]
                if not take:
                    continue
                backbone = self.backbones[b]
                feats = backbone.extract(torch.stack([batch[i][2] for i in take]))  # [n, crops or cells, D]
                for i, f in zip(take, feats):
                    batch[i][0].outputs[b].append(f)
                    if backbone.grid is not None:  # one frame size per call (by_shape), so one grid
                        batch[i][0].grids[b] = backbone.last_grid
            for i in rows:
                batch[i][0].done_snippets += 1

    def _write(self, job: Job) -> None:
        info = job.info
        if job.queued == 0:
            raise VideoError(str(job.path), f"too short: {info.n_frames} frames, a snippet needs {SNIPPET_FRAMES}",
                             f"use videos of at least {SNIPPET_FRAMES} frames")
        self.store.record_video(job.video_key, info)
        for b, key in job.todo.items():
            array = torch.stack(job.outputs[b]).numpy().astype(self.dtypes[b], copy=False)  # [T, crops, D]
            self.store.put_feature(key, job.video_key, self.backbones[b].name, self.fingerprints[b], array,
                                   grid=job.grids.get(b))
        job.outputs.clear()
        self._release(job)


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, fix) of a video that failed with ``exc``, as the CLIs print them and the manifest records them."""
    if isinstance(exc, (VideoError, NonFiniteFeature)):
        return exc.reason, exc.fix
    if isinstance(exc, UserError):  # e.g. a read-only store (detect): the message says what to do
        return str(exc), ""
    if isinstance(exc, FileNotFoundError):
        return "the file does not exist (moved or deleted?)", "check the path"
    if isinstance(exc, OSError):
        return f"cannot read it ({exc.strerror or exc})", "check the file's permissions and the disk"
    return f"{type(exc).__name__}: {exc}", "if the file plays elsewhere, report this as a bug"


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that decides what one extract run computes, in a picklable form: the local engine builds its
    backbones and :class:`Extractor` from it, and so does every Ray worker (``pipeline.extract.ray_engine``), so both
    engines compute the same features under the same fingerprints."""

    backbones: tuple[str, ...]
    weights: dict[str, str] = field(default_factory=dict)
    crops: int = 1
    clip_frames: int = 1
    views: dict[str, str] = field(default_factory=dict)  # backbone -> view (extractors.transforms.VIEWS)
    grids: dict[str, str] = field(default_factory=dict)  # backbone -> grid (extractors.grid); absent: global
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    dtype: str = "float32"
    decoder: str = "auto"
    force: bool = False
    frames_fps: float = FRAME_FOLDER_FPS
    decode_resize: bool = True
    decode_workers: int | None = None
    timeline: str = DEFAULT_TIMELINE
    decode_timeout_s: float = DECODE_STALL_TIMEOUT_S

    def build_backbones(self) -> list[Backbone]:
        """Raises WeightsNotFound or ValueError (bad weights file, unknown option) before any video is read."""
        device = auto_device(self.device)
        return [build_backbone(n, weights=self.weights.get(n), crops=self.crops, frames=self.clip_frames,
                               view=self.views.get(n), grid=self.grids.get(n), device=device)
                for n in self.backbones]

    def extractor(self, store: FeatureStore, backbones: list[Backbone], *, progress: bool) -> Extractor:
        return Extractor(store, backbones, batch_size=self.batch_size, dtype=self.dtype, decoder=self.decoder,
                         force=self.force, frames_fps=self.frames_fps, decode_resize=self.decode_resize,
                         decode_workers=self.decode_workers, progress=progress, timeline=self.timeline,
                         decode_timeout_s=self.decode_timeout_s)
