"""The main job on a small real default: extract -> train the teacher -> distill the student -> evaluate.

    dakd demo [--out dakd-demo] [--device auto] [--quiet]      (or python -m pipeline.demo)

Real weights that a package registry carries (DeepMind's Kinetics-400 I3D, ImageNet EfficientNet-Lite0) on a
small synthetic surveillance dataset with known anomaly intervals (vehicles, fights, falls, crowds scattering,
fire), written with real encoders. The teacher aggregates both backbones; the student is the single-backbone
EfficientNet-Lite0 model distilled from it. Everything lands in ``<out>/store``; running it again is all cache
hits. The CLIP backbone of the paper needs weights from the network (open_clip downloads them when online).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.synthetic import generate_dataset
from extractors.weights import WeightsNotFound
from pipeline import api
from pipeline.cli import configure_logging, emit_json, error, say
from pipeline.defaults import DEMO_OUT, EXIT_SOME_FAILED
from pipeline.errors import InputError, UserError
from pipeline.fetch import fetch_all
from pipeline.parsers import stage_parser

DEFAULT_OUT = DEMO_OUT
TEACHER_BACKBONES = "i3d,effnet_lite0"  # the two backbones whose real weights a registry carries
STUDENT_BACKBONE = "effnet_lite0"
SYNTHETIC_NORMAL = 12
SYNTHETIC_ANOMALOUS = 12
SYNTHETIC_SEED = 0
# The paper's batches (30 + 30) would make one step per epoch on this small set; smaller batches give the
# optimiser enough steps in 100 epochs. Every other value is the project's default (pipeline.config).
DEMO_OVERRIDES = {"train.batch_anomalous": 4, "train.batch_normal": 4}


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("demo")


def check_paths(out: Path, store: Path) -> None:
    """The demo's folders, before anything is fetched: ``out`` must be a folder (or absent), ``store`` a store, an
    empty folder, or absent. Raises UserError naming the path and the fix."""
    from pipeline.inputs import check_new_store
    from pipeline.store import is_store, open_store

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a folder for the demo's videos, store and plots")
    check_new_store(store)
    if is_store(store):
        open_store(store, create=False, writes=True).close()  # a damaged or read-only store: named now


def run(args: argparse.Namespace) -> int:
    """The chain through :mod:`pipeline.api`: fetch -> synthetic videos -> extract -> teacher -> student ->
    evaluate, one line per stage."""
    configure_logging(args)
    out = Path(args.out)
    store = Path(args.store) if args.store else out / "store"
    progress = not args.quiet
    try:  # the paths first: a --out or --store that is a file, or a damaged store, is named before any download
        check_paths(out, store)
    except UserError as exc:
        return error(exc)
    try:
        fetch_all(footage=False, quiet=args.quiet or args.json)  # the weights; the demo writes its own footage
    except (WeightsNotFound, RuntimeError, OSError) as exc:
        print(f"error: cannot fetch the weights: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    synthetic = out / "synthetic"
    if not (synthetic / "labels.csv").is_file():
        generate_dataset(synthetic, n_normal=SYNTHETIC_NORMAL, n_anomalous=SYNTHETIC_ANOMALOUS, seed=SYNTHETIC_SEED,
                         progress=progress)
    common = dict(store=store, device=args.device, progress=progress)
    try:
        extracted = api.extract([synthetic / "videos"], backbones=TEACHER_BACKBONES, **common)
        say(args, f"demo extract: {extracted.videos} videos, {extracted.extracted} extracted, {extracted.cached} "
                  f"cached, {extracted.failed} failed ({extracted.seconds:.1f} s); store {store}")
        if not extracted.ok:
            for failure in extracted.failures:
                print(f"  {failure.line()}", file=sys.stderr)
            print("demo: the extract stage failed for some videos; see the messages above", file=sys.stderr)
            return EXIT_SOME_FAILED
        teacher = api.train("teacher", dataset=synthetic, backbones=TEACHER_BACKBONES, overrides=DEMO_OVERRIDES,
                            **common)[0]
        student = api.train("student", teacher=teacher, backbones=STUDENT_BACKBONE, overrides=DEMO_OVERRIDES,
                            **common)[0]
        for run in (teacher, student):
            say(args, f"demo {run.stage}: run {run.key[:12]}, val video AUC {run.val_video_auc}; {run.folder}")
        metrics = api.evaluate([teacher, student], store=store, device=args.device, progress=progress)
    except UserError as exc:  # a bad weights file, the store's faults, ... named
        return error(exc)
    for m in metrics:
        say(args, f"demo evaluate {m.stage} {m.run[:12]}: AUC {m.auc:.4f}, AP {m.ap:.4f}; plots and CSVs in "
                  f"{m.folder}")
    say(args, f"demo: done. Metrics, ROC/PR curves and one score plot per test video are in the folders printed "
              f"above (all runs: dakd store --store {store} --runs)")
    emit_json(args, {"store": str(store), "teacher": teacher.as_dict(), "student": student.as_dict(),
                     "metrics": [{"run": m.run, "stage": m.stage, "folder": str(m.folder), **m.values}
                                 for m in metrics]})
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
