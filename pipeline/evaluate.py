"""Stage 4: score the test videos with trained runs and compute the community's frame-level metrics.

    python -m pipeline.evaluate RUN [RUN ...] --store DIR [--dataset ucf-crime] [--out DIR]
                                [--summary FILE.json] [--fingerprint BACKBONE=PREFIX ...]

Protocol (method.md §7): every snippet of each test video is scored (the full length, not 32 segments), crops
averaged; each snippet score covers its 16 frames; the ground truth has ``16 * T`` frames per video with T from
the feature file; videos are concatenated in the dataset's canonical test order; pooled AUC and AP, AUC on the
anomalous videos, false-alarm rate on the normal ones, per-class AUC.

Writes, per run, ``<store>/runs/evaluate/<key>/`` (or ``--out``): ``metrics.json``, ``scores.csv`` (one row per
snippet), ``videos.csv`` (one row per video), ``roc.png``, ``pr.png`` and ``videos/<name>.png`` (score over time,
GT shaded). The key hashes the run, the test labels and the test features, so re-running is a cache hit.

The test videos are scored with the features of the extraction the run was trained on (its fingerprint per
backbone). When they are stored under another extraction only (e.g. a test list imported with another
``--source``), the error names both and the fixes; ``--fingerprint BACKBONE=PREFIX`` scores them with another
stored extraction, which ``metrics.json`` records (``other_extractions``) and the key includes.

With several runs, runs are grouped by everything but the seed (the resolved config, the teacher run, the dataset,
the training features' fingerprints and any other test extraction): each group's mean ± std of each metric is
printed with what sets it apart from the other groups (``model.temporal=none, ...``) and written to
``--summary`` (per group: the runs, the config without the seed, the differing keys).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.datasets import DatasetSpec, load_dataset
from extractors.device import auto_device
from pipeline.atomic import atomic_write_json
from pipeline.errors import UserError
from pipeline.features import (describe_candidates, describe_extraction, extraction_candidates, missing_message,
                               resolve_features)
from pipeline.keys import canonical_json, hash_json
from pipeline.metrics import VideoScores, frame_metrics
from pipeline.plots import plot_all_videos, plot_pr, plot_roc, write_scores_csv, write_video_summary_csv
from pipeline.runs import LoadedRun, load_run
from pipeline.scoring import align_snippets, score_snippets
from pipeline.store import FeatureStore, StoreReadOnly, open_store

CODE_VERSION = "evaluate-1"
STAGE = "evaluate"
REPORTED = ("auc", "ap", "auc_anomalous_videos", "false_alarm_rate_normal")  # metrics summarised over seeds
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
                raise UserError(f"--fingerprint {b}={requested[b]} matches {len(matches)} of the {b} extractions "
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
        rebuild = (f"import the test list with the training list's source (python -m pipeline.import_features "
                   f"TEST_LIST --backbone {backbone} --source {shlex.quote(str(params.get('source')))} --root DIR "
                   f"--store {store.root})")
    else:
        crops = f" --crops {params['crops']}" if "crops" in params else ""
        rebuild = (f"extract the test videos with the training features' settings (python -m pipeline.extract "
                   f"VIDEOS --backbones {backbone}{crops} --store {store.root})")
    return (f"the {run.checkpoint['stage']} run {run.key[:SHORT_KEY]} was trained on {backbone} extraction "
            f"{describe_extraction(store, own, among)}, which holds {coverage.get(own, 0)} of the {len(per_video)} "
            f"{dataset} test videos; {stranded} test videos are stored only under other {backbone} extractions: {others}. "
            f"Fix: {rebuild}, or score the test videos with another extraction: add --fingerprint "
            f"{backbone}={best[:SHORT_KEY]} to the evaluate command")


def evaluate_run(store: FeatureStore, run: LoadedRun, spec: DatasetSpec, *, dataset_ref: str, out: Path | None,
                 device: torch.device, precision: str, allow_missing: bool, video_plots: bool, force: bool,
                 progress: bool, fingerprints: dict[str, str] | None = None) -> tuple[dict, Path, bool]:
    """Score, measure and plot one run. ``fingerprints``: backbone -> prefix of the stored extraction to score the
    test videos with (default: the run's own). Returns (metrics, folder, cached)."""
    entries = spec.split("test")
    if not entries:
        raise UserError(f"{spec.name} ({spec.source}) has no test videos (split 'test')")
    chosen = scoring_extractions(store, run, entries, dataset=spec.name, requested=fingerprints or {})
    features = resolve_features(store, entries, run.backbones, chosen)
    if features.missing and not allow_missing:
        raise UserError(missing_message(features, spec.name, store))
    other = {b: {"trained_on": run.fingerprints.get(b), "evaluated_on": fp} for b, fp in chosen.items()
             if fp != run.fingerprints.get(b)}
    key = hash_json({"run": run.key, "videos": [(e.name, e.label, e.class_name, e.intervals, e.mask_file)
                                                for e in entries],
                     "features": features.keys(), "precision": precision, "code": CODE_VERSION,
                     **({"other_extractions": other} if other else {})})  # absent: the keys of before stay valid
    folder = out or store.run_folder(STAGE, key)
    if (folder / "metrics.json").is_file() and not force:
        cached = json.loads((folder / "metrics.json").read_text())
        # an --out folder may hold another evaluation; a run without per-video plots does not satisfy one with
        if cached.get("key") == key and (not video_plots or (folder / "videos").is_dir()):
            return cached, folder, True

    if out is None and store.readonly:
        raise StoreReadOnly(store.root, f"evaluation {key[:12]} is not cached and its results go into the store; "
                                        "pass --out DIR to write them elsewhere")
    model = run.model.to(device)
    n_heads = run.attention_heads
    videos: list[VideoScores] = []
    fps: dict[str, float] = {}
    truncated: dict[str, int] = {}
    started = time.perf_counter()
    for vf in tqdm(features.found, desc=f"evaluate {run.key[:12]}", unit="video", disable=not progress,
                   dynamic_ncols=True):
        arrays, dropped = align_snippets([vf.load(b) for b in run.backbones])
        if dropped:
            truncated[vf.entry.name] = dropped
        scores = score_snippets(model, arrays, device, precision, n_heads=n_heads)
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
    metrics.update({
        "key": key, "run": run.key, "stage": run.checkpoint["stage"], "seed": run.config.train.seed,
        "dataset": dataset_ref,
        "backbones": list(run.backbones), "fingerprints": features.fingerprints, "other_extractions": other,
        "precision": precision, "device": str(device),
        "missing_videos": [e.name for e, _ in features.missing], "truncated_snippets": truncated,
        "wall_time_s": round(time.perf_counter() - started, 2), "protocol": "method.md §7 (RTFM family)",
    })
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


def _group_line(summary: dict) -> str:
    apart = ", ".join(f"{k}={_show(v)}" for k, v in summary["differing"].items())
    stats = ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in summary.items()
                      if k in REPORTED and isinstance(v, dict))
    return (f"{summary['stage']} {','.join(summary['backbones'])}" + (f" [{apart}]" if apart else "")
            + f", mean ± std over {len(summary['runs'])} runs: {stats}")


def _line(m: dict) -> str:
    parts = [f"{k} {m[k]:.4f}" for k in REPORTED if m.get(k) is not None]
    return ", ".join(parts)


def _fingerprint_flags(values: list[str]) -> dict[str, str]:
    """``["i3d=0a1b", ...]`` -> ``{"i3d": "0a1b"}``."""
    out = {}
    for value in values:
        backbone, sep, prefix = (part.strip() for part in value.partition("="))
        if not sep or not backbone or not prefix:
            raise UserError(f"--fingerprint takes BACKBONE=PREFIX (e.g. i3d=0a1b2c), got {value!r}")
        out[backbone] = prefix
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run key prefixes or run folders (several: mean ± std over them)")
    p.add_argument("--store", required=True, help="the store holding the runs and the test features")
    p.add_argument("--dataset", help="default: the dataset each run was trained on")
    p.add_argument("--out", help="output folder (default: <store>/runs/evaluate/<key>; one run only)")
    p.add_argument("--summary", help="write the mean ± std over the runs, one group per configuration (all but "
                                     "the seed), to this JSON file")
    p.add_argument("--fingerprint", action="append", default=[], metavar="BACKBONE=PREFIX",
                   help="score the test videos with this stored extraction of BACKBONE instead of the run's own "
                        "(repeatable; recorded in metrics.json)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="scoring precision (default: fp32, the reference)")
    p.add_argument("--allow-missing", action="store_true", help="evaluate the test videos that have features "
                                                                "(the metrics are then not comparable)")
    p.add_argument("--no-video-plots", action="store_true", help="skip the per-video PNGs")
    p.add_argument("--force", action="store_true", help="recompute even if this evaluation exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.out and len(args.runs) > 1:
        print("error: --out takes one run; several runs are written to <store>/runs/evaluate", file=sys.stderr)
        return 2
    try:  # named: a file, no store, a damaged manifest (a read-only store is fine for cached evaluations)
        store = open_store(args.store, create=False)
    except UserError as exc:
        print(f"error: {exc} (pass the --store used for training)", file=sys.stderr)
        return 2
    device = auto_device(args.device)
    results = []
    incomplete = False
    try:
        requested = _fingerprint_flags(args.fingerprint)
        runs = [load_run(store, ref) for ref in args.runs]
        unused = sorted(set(requested) - {b for run in runs for b in run.backbones})
        if unused:
            raise UserError(f"--fingerprint names {', '.join(unused)}, which none of the runs uses (their backbones: "
                            f"{', '.join(sorted({b for run in runs for b in run.backbones}))})")
        for run in runs:
            dataset_ref = args.dataset or run.checkpoint["dataset"]
            try:
                spec = load_dataset(dataset_ref)
            except (ValueError, OSError) as exc:
                raise UserError(str(exc)) from None
            metrics, folder, cached = evaluate_run(
                store, run, spec, dataset_ref=dataset_ref, out=Path(args.out) if args.out else None, device=device,
                precision=args.precision, allow_missing=args.allow_missing, video_plots=not args.no_video_plots,
                force=args.force, progress=not args.quiet,
                fingerprints={b: p for b, p in requested.items() if b in run.backbones})
            incomplete |= bool(metrics["missing_videos"])
            results.append((metrics, group_identity(run, metrics)))
            note = " (cached)" if cached else ""
            other = "".join(f"; {b} scored with extraction {o['evaluated_on'][:SHORT_KEY]}, not the run's "
                            f"{str(o['trained_on'])[:SHORT_KEY]}"
                            for b, o in metrics.get("other_extractions", {}).items())
            print(f"evaluate {metrics['stage']} {run.key[:12]} on {spec.name}: {_line(metrics)}; "
                  f"{metrics['n_videos']} videos{other}{note}; plots and CSVs in {folder}")
    except (UserError, ValueError) as exc:  # ValueError: test labels that break §7 (named in the message)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    summaries = group_summaries(results)
    for summary in summaries:
        if len(summary["runs"]) > 1:  # one run's metrics are printed above
            print(_group_line(summary))
    if args.summary:
        atomic_write_json(args.summary, summaries)
    if incomplete:
        print("warning: some test videos had no features; the metrics cover the rest (see missing_videos)",
              file=sys.stderr)
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
