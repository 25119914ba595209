"""A UCF-Crime-like synthetic dataset on disk (:func:`generate_dataset`): the videos, the UCF-Crime temporal
annotation file, ``split.csv`` and the ``labels.csv`` that ``data.datasets.load_dataset`` reads."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.synthetic.events import random_events
from data.synthetic.spec import (ANOMALY_KINDS, CLASS_NAMES, DEFAULT_FIGURE_HEIGHT, DEFAULT_FPS, DEFAULT_HEIGHT,
                                 DEFAULT_N_FRAMES, DEFAULT_N_WALKERS, DEFAULT_WIDTH, NORMAL_CLASS,
                                 STREAM_DATASET_EVENTS, STREAM_DATASET_KINDS, STREAM_SCENE_SEED, STREAM_SPLIT,
                                 STREAM_VIDEO_SEED, AnomalyEvent, SyntheticSpec, _rng)
from data.synthetic.writer import H264_PIX_FMT, write_video

SECOND_EVENT_PROB = 0.25  # chance an anomalous dataset video holds two intervals of its class
DATASET_EVENT_LEN_FRACTION = (0.15, 0.40)  # event length range as fractions of the video length
TEST_FRACTION = 0.30
VIDEO_SUFFIX = "_synth"
ANNOTATION_FILE = "Temporal_Anomaly_Annotation.txt"
SPLIT_FILE = "split.csv"
LABELS_FILE = "labels.csv"  # data.datasets CSV format, read by load_dataset(root)
VIDEOS_DIR = "videos"


@dataclass(frozen=True)
class SyntheticEntry:
    """One generated video: file ``name`` (e.g. ``Fight001_synth.mp4``), absolute ``path``, ``label`` 0/1,
    UCF-style ``class_name`` (``Normal`` or a :data:`CLASS_NAMES` value), ``events``, ``split`` (train/test)
    and the per-video ``seed``."""

    name: str
    path: Path
    label: int
    class_name: str
    events: tuple[AnomalyEvent, ...]
    split: str
    seed: int


@dataclass(frozen=True)
class SyntheticDataset:
    """Result of :func:`generate_dataset`; ``entries`` in generation order (normal videos first)."""

    root: Path
    entries: tuple[SyntheticEntry, ...]
    annotation_path: Path
    split_path: Path
    labels_path: Path  # labels.csv in data.datasets' CSV format: load_dataset(root) reads it

    def by_split(self, split: str) -> tuple[SyntheticEntry, ...]:
        return tuple(e for e in self.entries if e.split == split)


def video_seed(seed: int, index: int, anomalous: bool) -> int:
    """Seed of dataset video ``index`` (counted separately for normal and anomalous videos)."""
    return int(np.random.SeedSequence([int(seed), STREAM_VIDEO_SEED, int(anomalous), int(index)])
               .generate_state(1, np.uint32)[0])


def scene_seed(seed: int, camera: int) -> int:
    """Background seed of camera ``camera`` of dataset ``seed``."""
    return int(np.random.SeedSequence([int(seed), STREAM_SCENE_SEED, int(camera)]).generate_state(1, np.uint32)[0])


def format_annotation_line(name: str, class_name: str, events: Sequence[AnomalyEvent]) -> str:
    """UCF-Crime annotation line (no newline): ``name  class  s1  e1  s2  e2  `` with EXCLUSIVE ends
    (``e = end``, method.md §7's ``gt[s:e] = 1``), ``-1  -1`` for unused intervals, two trailing spaces like the
    official file."""
    if len(events) > 2:
        raise ValueError(f"{name}: the UCF-Crime format holds at most 2 intervals, got {len(events)}")
    nums: list[int] = []
    for ev in events:
        nums += [ev.start, ev.end]
    nums += [-1] * (4 - len(nums))
    return "  ".join([name, class_name, *map(str, nums)]) + "  "


def _assign_splits(entries: list[tuple[str, int, str]], seed: int) -> dict[str, str]:
    """Deterministic stratified split: per label, classes shuffled and interleaved round-robin, the first
    ``round(TEST_FRACTION * n)`` (at least 1 and at most n-1 when n >= 2) go to test."""
    rng = _rng(seed, STREAM_SPLIT)
    split: dict[str, str] = {}
    for label in (0, 1):
        by_class: dict[str, list[str]] = {}
        for name, lab, cls in entries:
            if lab == label:
                by_class.setdefault(cls, []).append(name)
        classes = sorted(by_class)
        classes = [classes[j] for j in rng.permutation(len(classes))]
        queues = [[by_class[c][j] for j in rng.permutation(len(by_class[c]))] for c in classes]
        order: list[str] = []
        while any(queues):
            for q in queues:
                if q:
                    order.append(q.pop(0))
        n = len(order)
        n_test = int(round(TEST_FRACTION * n))
        if n >= 2:
            n_test = min(max(n_test, 1), n - 1)
        for j, name in enumerate(order):
            split[name] = "test" if j < n_test else "train"
    return split


def generate_dataset(out_dir, *, n_normal: int, n_anomalous: int, seed: int = 0,
                     n_frames: int = DEFAULT_N_FRAMES, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
                     fps: float = DEFAULT_FPS, n_scenes: int | None = None,
                     figure_height: float = DEFAULT_FIGURE_HEIGHT, lossless: bool = False,
                     progress: bool = False) -> SyntheticDataset:
    """Write a UCF-Crime-like synthetic dataset under ``out_dir``:

    - ``videos/Normal_Videos_XXX_synth.mp4`` and ``videos/<Kind>XXX_synth.mp4`` (Kind in :data:`CLASS_NAMES`,
      XXX a 3-digit per-class counter from 001); anomalous classes are balanced (shuffled round-robin);
      each anomalous video holds 1 interval (2 with probability :data:`SECOND_EVENT_PROB`) of its class;
    - ``Temporal_Anomaly_Annotation.txt`` (UCF-Crime format, exclusive ends, see :func:`format_annotation_line`);
    - ``split.csv``: header ``name,label,class,split``, deterministic stratified ~70/30 train/test;
    - ``labels.csv``: header ``name,label,class,split,intervals`` (intervals ``s-e;s-e``, end exclusive), the
      CSV format of ``data.datasets``, so ``load_dataset(out_dir)`` loads the generated dataset.

    Each video's seed is :func:`video_seed` ``(seed, index, anomalous)``. Event lengths are
    :data:`DATASET_EVENT_LEN_FRACTION` of ``n_frames``. ``n_scenes``: the number of cameras; the videos take
    them in turn (normal and anomalous ones each from the first), so every camera has normal and anomalous
    footage; None: every video is a scene of its own. ``figure_height``: a pedestrian's height as a fraction of
    the frame height (the camera's distance). ``progress`` shows a tqdm bar.
    """
    root = Path(out_dir)
    vid_dir = root / VIDEOS_DIR
    if n_normal < 0 or n_anomalous < 0:
        raise ValueError("n_normal and n_anomalous must be >= 0")
    if n_scenes is not None and n_scenes < 1:
        raise ValueError(f"n_scenes must be >= 1 or None, got {n_scenes}")

    def camera(j: int) -> dict:
        return {} if n_scenes is None else {"scene_seed": scene_seed(seed, j % n_scenes)}

    min_len = max(1, int(round(DATASET_EVENT_LEN_FRACTION[0] * n_frames)))
    max_len = max(min_len, int(round(DATASET_EVENT_LEN_FRACTION[1] * n_frames)))

    plan: list[tuple[str, int, str, SyntheticSpec]] = []
    for j in range(n_normal):
        s = video_seed(seed, j, False)
        spec = SyntheticSpec(n_frames, width, height, fps, DEFAULT_N_WALKERS, (), s, **camera(j),
                             figure_height=figure_height)
        plan.append((f"Normal_Videos_{j + 1:03d}{VIDEO_SUFFIX}.mp4", 0, NORMAL_CLASS, spec))
    kind_rng = _rng(seed, STREAM_DATASET_KINDS)
    counters = {k: 0 for k in ANOMALY_KINDS}
    kinds_order: list[str] = []
    for j in range(n_anomalous):
        if j % len(ANOMALY_KINDS) == 0:
            cycle = [ANOMALY_KINDS[q] for q in kind_rng.permutation(len(ANOMALY_KINDS))]
        kinds_order.append(cycle[j % len(ANOMALY_KINDS)])
    for j, kind in enumerate(kinds_order):
        s = video_seed(seed, j, True)
        ev_rng = _rng(seed, STREAM_DATASET_EVENTS, j)
        n_ev = 2 if ev_rng.random() < SECOND_EVENT_PROB else 1
        try:
            events = random_events(ev_rng, n_frames, n_ev, (kind,), min_len, max_len)
        except ValueError:
            events = random_events(ev_rng, n_frames, 1, (kind,), min_len, max_len)
        counters[kind] += 1
        spec = SyntheticSpec(n_frames, width, height, fps, DEFAULT_N_WALKERS, events, s, **camera(j),
                             figure_height=figure_height)
        plan.append((f"{CLASS_NAMES[kind]}{counters[kind]:03d}{VIDEO_SUFFIX}.mp4", 1, CLASS_NAMES[kind], spec))

    splits = _assign_splits([(name, label, cls) for name, label, cls, _ in plan], seed)
    if not lossless and (width % 2 or height % 2):
        raise ValueError(f"H.264 {H264_PIX_FMT} needs an even frame size, got {width}x{height} "
                         f"(use an even size or lossless)")
    vid_dir.mkdir(parents=True, exist_ok=True)
    iterator = plan
    if progress:
        from tqdm import tqdm
        iterator = tqdm(plan, desc="synthetic videos", unit="video")
    entries = []
    for name, label, cls, spec in iterator:
        path = write_video(spec, vid_dir / name, lossless=lossless)
        entries.append(SyntheticEntry(name, path.resolve(), label, cls, spec.events, splits[name], spec.seed))

    ann_path = root / ANNOTATION_FILE
    ann_path.write_text("".join(format_annotation_line(e.name, e.class_name, e.events) + "\n" for e in entries),
                        encoding="utf-8")
    split_path = root / SPLIT_FILE
    with split_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["name", "label", "class", "split"])
        for e in entries:
            writer.writerow([e.name, e.label, e.class_name, e.split])
    labels_path = root / LABELS_FILE
    with labels_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["name", "label", "class", "split", "intervals"])
        for e in entries:
            writer.writerow([e.name, e.label, e.class_name, e.split,
                             ";".join(f"{ev.start}-{ev.end}" for ev in e.events)])
    return SyntheticDataset(root.resolve(), tuple(entries), ann_path.resolve(), split_path.resolve(),
                            labels_path.resolve())
