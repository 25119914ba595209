"""Evaluation of trained runs, the engine of stage 4 (the command line is ``pipeline.evaluate``, whose docstring gives
the protocol and the files written; the typed API ``pipeline.api.evaluate``): score a run's test videos with the
features it was trained on, compute the frame-level metrics (method.md §7) and write them, and group runs by
everything but the seed.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.datasets import DatasetSpec
from data.pixel_masks import PIXEL_MASK_FOLDER, PixelMaskError, load_pixel_masks
from pipeline.atomic import atomic_write_json
from pipeline.errors import UserError
from pipeline.defaults import SMOOTHING_SNIPPETS
from pipeline.evaluate.metrics import VideoScores, check_smoothing_window, frame_metrics, smoothed
from pipeline.evaluate.localization import localization_report
from pipeline.evaluate.maps import MAPS_FOLDER, map_files, write_maps
from pipeline.evaluate.scoring import score_video
from pipeline.features import (describe_candidates, describe_extraction, extraction_candidates, missing_message,
                               resolve_features)
from pipeline.keys import canonical_json, hash_json
from pipeline.evaluate.plots import plot_all_videos, plot_pr, plot_roc, write_scores_csv, write_video_summary_csv
from pipeline.runs import LoadedRun
from pipeline.store import FeatureStore, StoreReadOnly

CODE_VERSION = "evaluate-1"
STAGE = "evaluate"
# metrics summarised over seeds (the *_smoothed ones when the evaluation smooths, SMOOTHING_SNIPPETS)
REPORTED = ("auc", "ap", "auc_anomalous_videos", "false_alarm_rate_normal", "auc_smoothed", "ap_smoothed")
SHORT_KEY = 12  # characters of a run key or fingerprint shown in messages

log = logging.getLogger("pipeline.evaluate")


def scoring_extractions(store: FeatureStore, run: LoadedRun, entries: list, *, dataset: str,
                        requested: dict[str, str]) -> dict[str, str]:
    """backbone -> the fingerprint whose features score the test videos: the run's own, or the extraction
    ``requested`` names by prefix (``--fingerprint``). A backbone none of whose test videos has features is left
    out (they are reported missing). Raises UserError when the test videos are stored under other extractions
    than the run's, naming them and the fixes."""
    chosen = {}
    for b in run.backbones:
        per_video = [extraction_candidates(store, e, b) for e in entries]  # as resolve_features looks them up
        coverage = Counter(fp for found in per_video for fp in found)
        own = run.fingerprints.get(b)
        if b in requested:
            matches = [fp for fp in coverage if fp.startswith(requested[b])]
            if len(matches) != 1:
                raise UserError(f"`fingerprints` {b}={requested[b]} matches {len(matches)} of the {b} extractions "
                                f"of the {len(entries)} {dataset} test videos: {describe_candidates(store, coverage)}; "
                                f"pass a prefix of one of them")
            chosen[b] = matches[0]
        elif any(found and own not in found for found in per_video):
            raise UserError(_other_extraction_message(store, run, b, per_video, dataset))
        elif own in coverage:
            chosen[b] = own
    return chosen


def _other_extraction_message(store: FeatureStore, run: LoadedRun, backbone: str, per_video: list[dict],
                              dataset: str) -> str:
    own = run.fingerprints.get(backbone, "")
    coverage = Counter(fp for found in per_video for fp in found)
    stranded = sum(1 for found in per_video if found and own not in found)
    among = [own, *coverage]  # each description shows what differs from the run's own and the other candidates
    others = "; ".join(f"{describe_extraction(store, fp, among)} ({n} videos)" for fp, n in coverage.most_common()
                       if fp != own)
    best = next(fp for fp, _ in coverage.most_common() if fp != own)
    params = store.extractor_params(own)
    if params.get("imported"):
        rebuild = (f"import the test list with the training list's source (dakd import "
                   f"TEST_LIST --backbone {backbone} --source {shlex.quote(str(params.get('source')))} --root DIR "
                   f"--store {store.root})")
    else:
        crops = f" --crops {params['crops']}" if "crops" in params else ""
        rebuild = (f"extract the test videos with the training features' settings (dakd extract "
                   f"VIDEOS --backbones {backbone}{crops} --store {store.root})")
    return (f"the {run.checkpoint['stage']} run {run.key[:SHORT_KEY]} was trained on {backbone} extraction "
            f"{describe_extraction(store, own, among)}, which holds {coverage.get(own, 0)} of the {len(per_video)} "
            f"{dataset} test videos; {stranded} test videos are stored only under other {backbone} extractions: "
            f"{others}. "
            f"Fix: {rebuild}, or score the test videos with another extraction: pass `fingerprints` "
            f"{backbone}={best[:SHORT_KEY]}")


def test_pixel_masks(entries: list, dataset_ref: str, pixel_masks: Path | None) -> dict[str, np.ndarray]:
    """Entry name -> bool ``[T, H, W]`` pixel mask of the test videos that have one (:mod:`data.pixel_masks`), read
    from ``pixel_masks`` or, when the dataset is a frame-label folder, its ``pixel_masks/`` folder; a mask file is
    matched to a video by the video's name or one of its aliases (UCSD's ``Test019`` is ``test_19``). Raises
    UserError for a named folder that does not exist or a mask file that cannot be read."""
    if pixel_masks is not None and not Path(pixel_masks).is_dir():
        raise UserError(f"`pixel_masks` {pixel_masks} is not a folder: pass the folder of <video>.npz masks "
                        f"(each with a 0/1 array `mask` [T, H, W])")
    folder = Path(pixel_masks) if pixel_masks is not None else Path(dataset_ref) / PIXEL_MASK_FOLDER
    try:
        masks = load_pixel_masks(folder)
    except PixelMaskError as exc:
        raise UserError(str(exc)) from None
    found = {}
    for entry in entries:
        name = next((n for n in (entry.name, *entry.aliases) if n in masks), None)
        if name is not None:
            found[entry.name] = masks[name]
    return found


def evaluate_run(store: FeatureStore, run: LoadedRun, spec: DatasetSpec, *, dataset_ref: str, out: Path | None,
                 device: torch.device, precision: str, allow_missing: bool, video_plots: bool, force: bool,
                 progress: bool, fingerprints: dict[str, str] | None = None,
                 pixel_masks: Path | None = None, smoothing: int = SMOOTHING_SNIPPETS) -> tuple[dict, Path, bool]:
    """Score, measure and plot one run. ``fingerprints``: backbone -> prefix of the stored extraction to score the
    test videos with (default: the run's own). ``pixel_masks``: a folder of the test videos' pixel masks (default:
    the dataset folder's ``pixel_masks/``, if any); a spatial run's or a map student's maps are then scored for
    localisation (``metrics["localization"]``, :func:`pipeline.evaluate.localization.localization_report`).
    ``smoothing``: an odd number of snippets; above 1 the metrics add ``auc_smoothed`` and ``ap_smoothed``, the
    frame AUC and AP of each video's scores smoothed over that many snippets (method.md §7.3), beside the
    protocol's unsmoothed ones. Returns (metrics, folder, cached)."""
    check_smoothing_window(smoothing)  # before any scoring
    entries = spec.split("test")
    if not entries:
        raise UserError(f"{spec.name} ({spec.source}) has no test videos (split 'test')")
    chosen = scoring_extractions(store, run, entries, dataset=spec.name, requested=fingerprints or {})
    features = resolve_features(store, entries, run.backbones, chosen)
    if features.missing and not allow_missing:
        raise UserError(missing_message(features, spec.name, store))
    other = {b: {"trained_on": run.fingerprints.get(b), "evaluated_on": fp} for b, fp in chosen.items()
             if fp != run.fingerprints.get(b)}
    masks = test_pixel_masks(entries, dataset_ref, pixel_masks) if run.has_maps else {}
    # What localisation is measured against: the masks' names and shapes (their bytes are the dataset's own).
    mask_key = {name: list(mask.shape) for name, mask in sorted(masks.items())}
    key = hash_json({"run": run.key, "videos": [(e.name, e.label, e.class_name, e.intervals, e.mask_file)
                                                for e in entries],
                     "features": features.keys(), "precision": precision, "code": CODE_VERSION,
                     **({"other_extractions": other} if other else {}),  # absent: the keys of before stay valid
                     **({"pixel_masks": mask_key} if mask_key else {}),
                     **({"smoothing_snippets": smoothing} if smoothing > 1 else {})})
    folder = out or store.run_folder(STAGE, key)
    if (folder / "metrics.json").is_file() and not force:
        cached = json.loads((folder / "metrics.json").read_text())
        # an --out folder may hold another evaluation; a run without per-video plots does not satisfy one with
        if cached.get("key") == key and (not video_plots or (folder / "videos").is_dir()):
            return cached, folder, True

    if out is None and store.readonly:
        raise StoreReadOnly(store.root, f"evaluation {key[:12]} is not cached and its results go into the store; "
                                        "pass `out` (a folder) to write them elsewhere")
    run.model.to(device)
    # A spatial run's or a map student's per-snippet anomaly maps, maps/<video>.npz (pipeline.evaluate.maps), for
    # localisation.
    maps_out = map_files(folder, [vf.entry.name for vf in features.found]) if run.has_maps else {}
    videos: list[VideoScores] = []
    video_maps: dict[str, np.ndarray] = {}  # name -> [T, rows, cols], for localisation
    fps: dict[str, float] = {}
    truncated: dict[str, int] = {}
    started = time.perf_counter()
    for vf in tqdm(features.found, desc=f"evaluate {run.key[:12]}", unit="video", disable=not progress,
                   dynamic_ncols=True):
        scores, maps, dropped = score_video(run, vf, device, precision)
        if run.has_maps:
            write_maps(maps_out[vf.entry.name], maps)
            video_maps[vf.entry.name] = maps
        if dropped:
            truncated[vf.entry.name] = dropped
        info = store.video(vf.records[run.backbones[0]].video_key)
        # T from the feature file, never a separate frame count; the video's frame count (when the store has
        # it) only tells an interval wholly past the video's end, an error, from one partly past it, cut
        gt = spec.frame_labels(vf.entry, len(scores), n_frames=(info or {}).get("n_frames") or None)
        videos.append(VideoScores(vf.entry.name, vf.entry.label, vf.entry.class_name, scores, gt))
        if info and info["fps"]:
            fps[vf.entry.name] = float(info["fps"])
    n_frames = sum(len(v.gt) for v in videos)
    assert n_frames == 16 * sum(v.n_snippets for v in videos), "ground truth and scores disagree in length"
    metrics = frame_metrics(videos)
    if smoothing > 1:  # not the protocol: reported beside it, never in its place
        smooth = frame_metrics(smoothed(videos, smoothing))
        metrics.update(auc_smoothed=smooth["auc"], ap_smoothed=smooth["ap"], smoothing_snippets=smoothing)
    metrics.update({
        "key": key, "run": run.key, "stage": run.checkpoint["stage"], "seed": run.config.train.seed,
        "dataset": dataset_ref,
        "backbones": list(run.backbones), "fingerprints": features.fingerprints, "other_extractions": other,
        "precision": precision, "device": str(device),
        "missing_videos": [e.name for e, _ in features.missing], "truncated_snippets": truncated,
        "wall_time_s": round(time.perf_counter() - started, 2), "protocol": "method.md §7 (RTFM family)",
    })
    if run.has_maps:  # where the maps are and their cells (a global run has neither)
        metrics.update(grid=list(run.grid), maps=MAPS_FOLDER)
        if masks:
            metrics["localization"] = localization_report(video_maps, masks, {v.name: v.gt for v in videos})
    folder.mkdir(parents=True, exist_ok=True)
    title = f"{run.checkpoint['stage']} {run.key[:8]} on {spec.name}"
    write_scores_csv(videos, folder / "scores.csv")
    write_video_summary_csv(videos, folder / "videos.csv")
    plot_roc(videos, folder / "roc.png", title=title)
    plot_pr(videos, folder / "pr.png", title=title)
    if video_plots:
        plot_all_videos(videos, folder / "videos", fps_by_name=fps)
    atomic_write_json(folder / "metrics.json", metrics)  # last: its presence means the folder is complete
    if not store.readonly:  # a read-only store's evaluation (with --out) lives in its folder only
        store.record_run(key, STAGE, dataset=dataset_ref, backbones=",".join(run.backbones),
                         seed=run.config.train.seed, status="done",
                         summary={k: metrics.get(k) for k in ("run", *REPORTED)})
    return metrics, folder, False


def summarize(all_metrics: list[dict]) -> dict:
    """Mean and sample standard deviation of each reported metric over runs (seeds)."""
    summary = {"runs": [m["run"] for m in all_metrics]}
    for name in REPORTED:
        values = [m[name] for m in all_metrics if m.get(name) is not None]
        if values:
            summary[name] = {"mean": float(np.mean(values)),
                             "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "n": len(values)}
    return summary


def group_identity(run: LoadedRun, metrics: dict) -> dict:
    """What the seeds of one configuration share: the resolved config without the seed, the dataset, the teacher
    run (students), the training features' fingerprints and any other extraction the test videos were scored with."""
    config = run.config.to_dict()
    del config["train"]["seed"]
    other = metrics.get("other_extractions") or {}
    return {"config": config, "dataset": metrics["dataset"], "teacher": run.checkpoint.get("teacher"),
            "fingerprints": run.fingerprints, "evaluated_on": {b: o["evaluated_on"] for b, o in other.items()}}


def _flat(identity: dict) -> dict:
    """Dotted key -> value of every leaf (the config's keys as ``--set`` spells them: ``model.temporal``)."""
    out = {}

    def walk(obj, prefix: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}{k}.")
        elif obj is not None:
            out[prefix[:-1]] = obj

    walk(identity["config"], "")
    walk({k: v for k, v in identity.items() if k != "config"}, "")
    return out


def differing_keys(identities: list[dict]) -> list[str]:
    """The dotted keys whose values are not the same in every identity (in order of first appearance)."""
    flats = [_flat(i) for i in identities]
    keys = dict.fromkeys(k for f in flats for k in f)
    return [k for k in keys if len({canonical_json(f.get(k)) for f in flats}) > 1]


def _show(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "none"}[value]
    if isinstance(value, list):
        return ",".join(map(str, value))
    text = str(value)
    return text[:SHORT_KEY] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def group_summaries(results: list[tuple[dict, dict]]) -> list[dict]:
    """(metrics, identity) of each run -> one summary per configuration: its runs (seeds), mean ± std of each
    metric, its identity, and ``differing``: its values of the keys that set it apart from the other groups of its
    stage and backbones (those of another stage or backbones are told apart by these already)."""
    groups: dict[str, list[tuple[dict, dict]]] = {}
    for metrics, identity in results:
        groups.setdefault(canonical_json(identity), []).append((metrics, identity))
    identities = [members[0][1] for members in groups.values()]

    def family(identity: dict) -> tuple:
        return identity["config"]["stage"], tuple(identity["config"]["backbones"])

    summaries = []
    for members, identity in zip(groups.values(), identities):
        keys = differing_keys([i for i in identities if family(i) == family(identity)])
        flat = _flat(identity)
        summaries.append({"stage": identity["config"]["stage"], "backbones": identity["config"]["backbones"],
                          "differing": {k: flat.get(k) for k in keys}, **identity,
                          **summarize([m for m, _ in members])})
    return summaries
