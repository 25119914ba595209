"""Stage 4: score the test videos with trained runs and compute the community's frame-level metrics.

    python -m pipeline.evaluate RUN [RUN ...] --store DIR [--dataset ucf-crime] [--out DIR]

Protocol (method.md §7): every snippet of each test video is scored (the full length, not 32 segments), crops
averaged; each snippet score covers its 16 frames; the ground truth has ``16 * T`` frames per video with T from
the feature file; videos are concatenated in the dataset's canonical test order; pooled AUC and AP, AUC on the
anomalous videos, false-alarm rate on the normal ones, per-class AUC.

Writes, per run, ``<store>/runs/evaluate/<key>/`` (or ``--out``): ``metrics.json``, ``scores.csv`` (one row per
snippet), ``videos.csv`` (one row per video), ``roc.png``, ``pr.png`` and ``videos/<name>.png`` (score over time,
GT shaded). The key hashes the run, the test labels and the test features, so re-running is a cache hit.
With several runs of one configuration (seeds), the mean ± std of each metric is printed and written to
``--summary``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.datasets import DatasetSpec, load_dataset
from extractors.device import auto_device
from pipeline.atomic import atomic_write_json
from pipeline.errors import UserError
from pipeline.features import missing_message, resolve_features
from pipeline.keys import hash_json
from pipeline.metrics import VideoScores, frame_metrics
from pipeline.plots import plot_all_videos, plot_pr, plot_roc, write_scores_csv, write_video_summary_csv
from pipeline.runs import LoadedRun, load_run
from pipeline.scoring import align_snippets, score_snippets
from pipeline.store import MANIFEST, FeatureStore, is_store

CODE_VERSION = "evaluate-1"
STAGE = "evaluate"
REPORTED = ("auc", "ap", "auc_anomalous_videos", "false_alarm_rate_normal")  # metrics summarised over seeds

log = logging.getLogger("pipeline.evaluate")


def evaluate_run(store: FeatureStore, run: LoadedRun, spec: DatasetSpec, *, dataset_ref: str, out: Path | None,
                 device: torch.device, precision: str, allow_missing: bool, video_plots: bool, force: bool,
                 progress: bool) -> tuple[dict, Path, bool]:
    """Score, measure and plot one run. Returns (metrics, folder, cached)."""
    entries = spec.split("test")
    if not entries:
        raise UserError(f"{spec.name} ({spec.source}) has no test videos (split 'test')")
    features = resolve_features(store, entries, run.backbones, run.fingerprints)
    if features.missing and not allow_missing:
        raise UserError(missing_message(features, spec.name, store))
    key = hash_json({"run": run.key, "videos": [(e.name, e.label, e.class_name, e.intervals, e.mask_file)
                                                for e in entries],
                     "features": features.keys(), "precision": precision, "code": CODE_VERSION})
    folder = out or store.run_folder(STAGE, key)
    if (folder / "metrics.json").is_file() and not force:
        cached = json.loads((folder / "metrics.json").read_text())
        # an --out folder may hold another evaluation; a run without per-video plots does not satisfy one with
        if cached.get("key") == key and (not video_plots or (folder / "videos").is_dir()):
            return cached, folder, True

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
        gt = spec.frame_labels(vf.entry, len(scores))  # T from the feature file, never a separate frame count
        videos.append(VideoScores(vf.entry.name, vf.entry.label, vf.entry.class_name, scores, gt))
        info = store.video(vf.records[run.backbones[0]].video_key)
        if info and info["fps"]:
            fps[vf.entry.name] = float(info["fps"])
    n_frames = sum(len(v.gt) for v in videos)
    assert n_frames == 16 * sum(v.n_snippets for v in videos), "ground truth and scores disagree in length"
    metrics = frame_metrics(videos)
    metrics.update({
        "key": key, "run": run.key, "stage": run.checkpoint["stage"], "seed": run.config.train.seed,
        "dataset": dataset_ref,
        "backbones": list(run.backbones), "precision": precision, "device": str(device),
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


def _line(m: dict) -> str:
    parts = [f"{k} {m[k]:.4f}" for k in REPORTED if m.get(k) is not None]
    return ", ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run key prefixes or run folders (several: mean ± std over them)")
    p.add_argument("--store", required=True, help="the store holding the runs and the test features")
    p.add_argument("--dataset", help="default: the dataset each run was trained on")
    p.add_argument("--out", help="output folder (default: <store>/runs/evaluate/<key>; one run only)")
    p.add_argument("--summary", help="write the mean ± std over the runs (grouped by stage and backbones) to this "
                                     "JSON file")
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
    if not is_store(args.store):
        print(f"error: {args.store} is not a store (no {MANIFEST}): pass the --store used for training",
              file=sys.stderr)
        return 2
    store = FeatureStore(args.store)
    device = auto_device(args.device)
    results = []
    incomplete = False
    try:
        for ref in args.runs:
            run = load_run(store, ref)
            dataset_ref = args.dataset or run.checkpoint["dataset"]
            try:
                spec = load_dataset(dataset_ref)
            except (ValueError, OSError) as exc:
                raise UserError(str(exc)) from None
            metrics, folder, cached = evaluate_run(
                store, run, spec, dataset_ref=dataset_ref, out=Path(args.out) if args.out else None, device=device,
                precision=args.precision, allow_missing=args.allow_missing, video_plots=not args.no_video_plots,
                force=args.force, progress=not args.quiet)
            incomplete |= bool(metrics["missing_videos"])
            results.append(metrics)
            note = " (cached)" if cached else ""
            print(f"evaluate {metrics['stage']} {run.key[:12]} on {spec.name}: {_line(metrics)}; "
                  f"{metrics['n_videos']} videos{note}; plots and CSVs in {folder}")
    except (UserError, ValueError) as exc:  # ValueError: test labels that break §7 (named in the message)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    groups: dict[tuple, list[dict]] = {}
    for m in results:  # seeds of one configuration: same stage, backbones and dataset
        groups.setdefault((m["stage"], tuple(m["backbones"]), m["dataset"]), []).append(m)
    summaries = []
    for (stage, backbones, _), members in groups.items():
        if len(members) > 1:
            summary = {"stage": stage, "backbones": list(backbones), **summarize(members)}
            summaries.append(summary)
            print(f"{stage} {','.join(backbones)}, mean ± std over {len(members)} runs: "
                  + ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in summary.items()
                              if isinstance(v, dict)))
    if args.summary:
        atomic_write_json(args.summary, summaries)
    if incomplete:
        print("warning: some test videos had no features; the metrics cover the rest (see missing_videos)",
              file=sys.stderr)
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
