"""Calibration, the engine of ``pipeline.calibrate`` (the typed API ``pipeline.api.calibrate``): the threshold that
gives a target false-alarm rate on normal footage, stored with the run (``<run folder>/calibration.json``) and in
its export (``export.json``'s ``"calibration"``; both written and read by :mod:`pipeline.runs`), which ``dakd
detect`` and ``dakd watch`` use unless ``--threshold`` is given.

A false alarm is an *event* of the alert rule (:class:`pipeline.alert_rule.AlertRule`: it opens after ``open_after``
snippets at or above the threshold and closes after ``close_after`` below) on footage known to be normal; the rate
is events per hour of that footage. Two score kinds are calibrated, since they differ: ``live``, the causal
windowed scores ``dakd watch`` raises alerts on (:func:`pipeline.watch.scoring.windowed_scores`; a spatial run's
cells by :func:`pipeline.watch.scoring.windowed_cell_scores`), and ``offline``, the whole-video scores ``dakd detect``
marks (:func:`pipeline.detect.detector.score_video`: :func:`pipeline.evaluate.scoring.score_snippets`, a spatial run's
cells on its grid by :func:`pipeline.evaluate.scoring.score_cells`), smoothed over ``smoothing`` snippets as detect
smooths them (:func:`pipeline.detect.detector.smooth_scores`; recorded as ``smoothing_snippets``).

The events are counted by :meth:`pipeline.alert_rule.AlertRule.count`, the rule ``dakd detect`` reports
and ``dakd watch`` runs, so the false alarms calibration counts are those detect finds on the same footage at the
calibrated threshold.

The threshold is the smallest candidate t such that at t and at every candidate above it the rate is at most the
target. The envelope is needed because the event count is not monotone in t: raising the threshold can split one
long event into two. A candidate never equals a snippet score: candidates lie midway between consecutive distinct
scores (counting there is counting "score >= the upper one"), plus one ``OUTSIDE_MARGIN`` below the lowest score
and one ``OUTSIDE_MARGIN`` above the highest, where no snippet is above and so no event can happen. So the chosen
threshold is as far as it can be from the scores on either side of it, and the rounding noise of another engine
(an ONNX export's scores differ by up to ``pipeline.detect.onnx_scorer.TOLERANCE``) flips no snippet unless two
scores lie closer than twice that; the distance is recorded (``margins``) and a warning names a threshold closer to
a score than the tolerance. On footage shorter than 1 / target hours a single event already exceeds the target, so it
can only be met with zero events: the result says so (``zero_events_only``) rather than pretend to a rate it cannot
measure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.decode import SNIPPET_FRAMES
from pipeline.errors import InputError, UsageError, UserError
from pipeline.detect.onnx_scorer import TOLERANCE
from pipeline.alert_rule import AlertRule

SOURCE_NORMAL = "normal"  # footage given with --normal
SOURCE_SPLIT = "split:{split}"  # the run's own validation split
SECONDS_PER_HOUR = 3600.0
# How far outside the footage's scores the lowest and highest candidate thresholds lie: 10 x the largest eager vs
# exported score difference an export accepts, so that no engine puts the top snippet above the top candidate.
OUTSIDE_MARGIN = 10 * TOLERANCE


@dataclass
class Choice:
    """The chosen threshold of one score kind and the false alarms it gives on the footage."""

    threshold: float
    events: int
    rate: float  # events per hour
    margin: float = math.inf  # distance from the threshold to the nearest snippet score of the footage


@dataclass
class NormalScores:
    """One normal video's scores of both kinds (float32 ``[T]`` each) and its length in hours."""

    name: str
    live: np.ndarray
    offline: np.ndarray
    hours: float


# -- choosing the threshold ------------------------------------------------------------------------------------
def candidates(videos: Sequence[np.ndarray]) -> np.ndarray:
    """float64, ascending, none equal to a score: ``OUTSIDE_MARGIN`` below the lowest distinct score, the midpoints
    between consecutive distinct scores, ``OUTSIDE_MARGIN`` above the highest (no snippet above: no event)."""
    values = np.unique(np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in videos]))
    return np.concatenate([[values[0] - OUTSIDE_MARGIN], (values[:-1] + values[1:]) / 2,
                           [values[-1] + OUTSIDE_MARGIN]])


def margin(videos: Sequence[np.ndarray], threshold: float) -> float:
    """Distance from ``threshold`` to the nearest snippet score of ``videos``."""
    values = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in videos])
    return float(np.abs(values - threshold).min())


def choose_threshold(videos: Sequence[np.ndarray], hours: float, target: float,
                     rule: AlertRule = AlertRule()) -> Choice:
    """The smallest candidate t with a rate <= ``target`` events/hour of ``rule`` at t (``rule.with_threshold(t)``;
    its own threshold is not used) and at every candidate above it.

    videos: per normal video its snippet scores ``[T_v]``; hours: their total length. Walks the candidates from
    the top down and stops at the first one over the target (so it counts only the candidates above the result
    and one more)."""
    if hours <= 0 or not math.isfinite(hours):
        raise UsageError(f"the normal footage has no measurable length ({hours} h): calibrate on videos with a "
                         "known frame rate")
    if not target > 0:
        raise UsageError(f"`false_alarms_per_hour` must be above 0, got {target}")
    allowed = target * hours
    values = candidates(videos)
    best = float(values[-1]), 0
    for t in values[::-1][1:]:
        n = rule.with_threshold(float(t)).count(videos)
        if n > allowed:
            break
        best = float(t), n
    return Choice(best[0], best[1], best[1] / hours, margin(videos, best[0]))


def zero_events_only(hours: float, target: float) -> bool:
    """Whether one event on ``hours`` of footage already exceeds ``target`` per hour: then the target is met only
    by a threshold with no event at all."""
    return hours * target < 1.0


def calibrate_scores(videos: Sequence[NormalScores], target: float, rule: AlertRule) -> dict[str, Choice]:
    """kind (``pipeline.runs.CALIBRATION_KINDS``) -> its :class:`Choice` over ``videos`` (events of ``rule`` at
    each candidate threshold)."""
    from pipeline.runs import CALIBRATION_KINDS  # torch: imported when calibrating, not with this module

    hours = sum(v.hours for v in videos)
    return {kind: choose_threshold([getattr(v, kind) for v in videos], hours, target, rule)
            for kind in CALIBRATION_KINDS}


# -- scoring normal footage ------------------------------------------------------------------------------------
@dataclass
class Footage:
    """What was scored: each normal video's scores, the videos that failed (path, reason, fix), warnings."""

    videos: list[NormalScores] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def score_both(run, arrays: list[np.ndarray], window: int, device,
               grids: list[tuple[int, int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(live ``[T]``, offline ``[T]``) scores of one video's aligned features, one array per backbone, read as
    ``pipeline.detect.detector.stored_inputs`` reads them: a global run's ``[T, crops, D_b]`` (``grids`` None), a
    spatial run's cells ``[T, C_b, D_b]`` on ``grids``. Offline: what ``dakd detect`` marks
    (``pipeline.detect.detector.score_video``: a spatial run's cells scored on its grid); live: the causal windows
    ``dakd watch`` scores (a spatial run's by ``pipeline.watch.scoring.score_last_cells``)."""
    from pipeline.detect.detector import score_video
    from pipeline.watch.scoring import windowed_cell_scores, windowed_scores

    if run.spatial:
        live = windowed_cell_scores(run.model, arrays, grids, window, device, grid=run.grid,
                                    n_heads=run.attention_heads)
    else:
        live = windowed_scores(run.model, arrays, window, device)
    offline, _ = score_video(run, run.model, arrays, device, grids)
    return live, offline


def video_hours(n_snippets: int, fps: float) -> float:
    """Hours of footage the scored snippets cover (16 frames each)."""
    return n_snippets * SNIPPET_FRAMES / fps / SECONDS_PER_HOUR


def score_normal_videos(store, run, paths: list[str], *, window: int, weights: dict[str, str], device,
                        batch_size: int, progress: bool) -> Footage:
    """``paths`` through the run's extraction, as ``pipeline.detect`` does (features cached in the store), then
    scored both ways. A video that fails is listed, the others go on."""
    from pipeline.detect.detector import STORED_FEATURE_FIX, backbones_for, find_inputs, stored_inputs, video_timeline
    from pipeline.extract.extractor import Extractor
    from pipeline.keys import feature_key

    backbones, settings = backbones_for(run, store, weights, device)
    videos = find_inputs(paths, None)
    extractor = Extractor(store, backbones, batch_size=batch_size, progress=progress, record_infos=True, **settings)
    footage = Footage(warnings=[
        f"the {name} features of these videos come from other extractor settings than the run's training features "
        "(weights, crops, decoding or timeline differ); thresholds may be shifted"
        for name, fp in zip(run.backbones, extractor.fingerprints) if fp != run.fingerprints[name]])
    outcome = extractor.run(videos)
    footage.failures = list(outcome.failures)
    failed = {path for path, _, _ in footage.failures}
    run.model = run.model.to(device)
    for path in [v for v in videos if str(v) not in failed]:
        video_key = store.video_key(path)
        try:
            arrays, grids = stored_inputs(run, store, [feature_key(video_key, fp) for fp in extractor.fingerprints])
        except (UserError, ValueError, OSError) as exc:  # damaged since the extractor checked it: fails alone
            footage.failures.append((str(path), f"its stored features cannot be read ({exc})",
                                     STORED_FEATURE_FIX.format(store=store.root)))
            continue
        _, fps, _ = video_timeline(store, video_key, outcome.infos.get(str(path)))
        if not fps > 0:
            footage.failures.append((str(path), "its frame rate is unknown, so its length in hours is too",
                                     "calibrate on videos whose container declares a frame rate"))
            continue
        live, offline = score_both(run, arrays, window, device, grids)
        footage.videos.append(NormalScores(str(path), live, offline, video_hours(len(live), fps)))
    return footage


def validation_normals(store, run) -> list:
    """The normal videos of the run's validation split (:class:`pipeline.features.VideoFeatures`), recomputed as
    training made it: the dataset's training entries with features of the run's extractions (and its teachers'),
    split with the run's ``train.val_fraction``, ``train.split_seed`` and ``train.min_val_videos``."""
    from data.datasets import load_dataset
    from pipeline.features import resolve_features
    from pipeline.runs import load_run
    from pipeline.train.data import validation_split

    dataset = run.checkpoint.get("dataset")
    if not dataset:
        raise InputError(f"run {run.key[:12]} records no dataset, so its validation split cannot be made again: "
                         "calibrate on normal footage: pass `normal` (videos or folders)")
    try:
        spec = load_dataset(dataset)
    except (ValueError, OSError) as exc:
        raise InputError(f"the run's dataset {dataset} cannot be read ({exc}): calibrate on normal footage with "
                         "`normal` (videos or folders)") from None
    entries = spec.split("train")
    features = resolve_features(store, entries, run.backbones, run.fingerprints)
    teacher_refs = run.checkpoint.get("teachers") or ([run.checkpoint["teacher"]] if run.checkpoint.get("teacher")
                                                      else [])
    for ref in teacher_refs:  # training kept only the videos every teacher could score too
        teacher = load_run(store, ref)
        have = {vf.entry.name for vf in resolve_features(store, entries, teacher.backbones, teacher.fingerprints).found}
        features.found = [vf for vf in features.found if vf.entry.name in have]
    labels = np.array([vf.entry.label for vf in features.found])
    t = run.config.train
    _, val = validation_split(labels, t.val_fraction, t.split_seed, min_videos=t.min_val_videos)
    normals = [features.found[i] for i in val if labels[i] == 0]
    if not normals:
        raise UsageError(f"run {run.key[:12]}'s validation split holds no normal videos (train.val_fraction = "
                         f"{t.val_fraction:g}; no split is made when it gives fewer than train.min_val_videos = "
                         f"{t.min_val_videos} videos of a label): calibrate on normal footage: pass `normal` "
                         "(videos or folders)")
    return normals


def score_split(store, run, split: str, *, window: int, device) -> Footage:
    """The normal videos of the run's ``split`` (``val``), features from the store (a spatial run's cells read as
    evaluation reads them, ``LoadedRun.scoring_inputs``), scored both ways."""
    from pipeline.evaluate.scoring import align_cells, align_snippets

    footage = Footage()
    run.model = run.model.to(device)
    for vf in validation_normals(store, run):
        record = vf.records[run.backbones[0]]
        try:
            if run.spatial:
                cells, grids = run.scoring_inputs(vf)
                arrays = align_cells(cells)[0]
            else:
                arrays, grids = align_snippets([vf.load(b) for b in run.backbones])[0], None
        except (UserError, ValueError, OSError) as exc:
            footage.failures.append((vf.entry.name, f"its stored features cannot be read ({exc})",
                                     f"check the store with dakd store {store.root} --verify"))
            continue
        info = store.video(record.video_key) or {}
        fps = float(info.get("fps") or 0.0)
        if not fps > 0:
            footage.failures.append((vf.entry.name, "the store records no frame rate for it (imported features?), so "
                                     "its length in hours is unknown", "calibrate on its video with `normal`"))
            continue
        live, offline = score_both(run, arrays, window, device, grids)
        footage.videos.append(NormalScores(vf.entry.name, live, offline, video_hours(len(live), fps)))
    return footage


# -- the whole stage -------------------------------------------------------------------------------------------
@dataclass
class Calibrated:
    """What :func:`calibrate_run` did: the record written, where, the videos that failed, warnings."""

    record: dict
    path: Path
    export: Path | None  # the export.json whose "calibration" was updated
    failures: list[tuple[str, str, str]]
    warnings: list[str]
    seconds: float


def calibrate_run(store_dir, run_ref: str, *, normal: list[str] | None, split: str | None, target: float,
                  rule: AlertRule, window: int | None, out: Path | None,
                  weights: dict[str, str], device: str, batch_size: int, progress: bool,
                  smoothing: int = 1) -> Calibrated:
    """Score the normal footage with the run, choose both thresholds for events of ``rule`` (its own threshold is
    not used: calibration chooses it), write them. ``smoothing``: the offline scores are smoothed over that many
    snippets first, as detect smooths them (``pipeline.detect.detector.smooth_scores``). Raises UserError."""
    from extractors.device import auto_device
    from pipeline.watch.scoring import default_window
    from pipeline.runs import calibration_record, load_run, open_run_store, write_calibration
    from pipeline.store import StoreReadOnly
    from pipeline.store.layout import writable

    if (normal is None) == (split is None):
        raise UsageError("pass the normal footage: `normal` (videos or folders) or `split` val")
    if window is not None and window < 1:
        raise UsageError(f"`window` must be at least 1 snippet, got {window}")
    if not target > 0:
        raise UsageError(f"`false_alarms_per_hour` must be above 0, got {target}")
    store = open_run_store(store_dir)
    start = time.perf_counter()
    try:
        run = load_run(store, run_ref)
        if out is None and (store.readonly or not writable(run.folder)):
            raise StoreReadOnly(store.root, f"the calibration would go into the run's folder {run.folder}; pass "
                                "`out` (a file)")
        window = window or default_window(run.checkpoint["stage"], run.config.train.n_segments)
        dev = auto_device(device)
        if normal is not None:
            footage = score_normal_videos(store, run, normal, window=window, weights=weights, device=dev,
                                          batch_size=batch_size, progress=progress)
            source = SOURCE_NORMAL
        else:
            footage = score_split(store, run, split, window=window, device=dev)
            source = SOURCE_SPLIT.format(split=split)
    finally:
        store.close()
    if not footage.videos:
        listed = "; ".join(f"{p}: {r}" for p, r, _ in footage.failures[:3])
        raise InputError(f"none of the normal videos could be scored ({listed}): calibrate on other normal footage")
    from pipeline.detect.detector import smooth_scores

    for video in footage.videos:  # the scores detect marks: smoothed as it smooths them
        video.offline = smooth_scores(video.offline, smoothing)
    choices = calibrate_scores(footage.videos, target, rule)
    hours = sum(v.hours for v in footage.videos)
    record = calibration_record(run.key, run.checkpoint["stage"], rule=rule, window=window, target=target,
                                hours=hours, videos=[v.name for v in footage.videos],
                                n_snippets=sum(len(v.live) for v in footage.videos), choices=choices,
                                zero_events_only=zero_events_only(hours, target), source=source,
                                smoothing=smoothing)
    if record["zero_events_only"]:
        footage.warnings.append(
            f"{record['hours']:.2g} h of normal footage is shorter than 1 / {target:g} = {1 / target:.2g} h: the "
            f"target of {target:g} false alarm(s)/h can only be met with zero events on it; calibrate on more "
            "normal footage to measure the rate")
    for kind, choice in choices.items():
        if choice.margin < TOLERANCE:
            footage.warnings.append(
                f"the {kind} threshold lies {choice.margin:.2g} from a snippet score of the footage, closer than the "
                f"export's tolerance ({TOLERANCE:g}): an ONNX export's scores may count that snippet on the other "
                "side; calibrate on more normal footage")
    path, export = write_calibration(record, run.folder, out)
    return Calibrated(record, path, export, footage.failures, footage.warnings, time.perf_counter() - start)
