"""Stages 2-3: train the TAM Teacher with MIL, distill the single-backbone Student from a frozen teacher run,
train LA-Net with Discriminative Dynamics Learning, or distill several teachers into the lightning student.

    python -m pipeline.train teacher --store DIR --dataset ucf-crime [--backbones i3d,s3d,clip] [--seeds 5]
    python -m pipeline.train student --store DIR --teacher RUN [--backbones clip] [--seeds 5]
    python -m pipeline.train lanet --store DIR --dataset ucf-crime [--backbones i3d]
    python -m pipeline.train lightning --store DIR --teachers RUN[,RUN...]   (needs --backbones lowres extracted)

The command: flags -> :func:`pipeline.api.train` -> one line per run. What a run does is in
``pipeline.train``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from pipeline import api
from pipeline import defaults as d
from pipeline import methods
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, say, warn
from pipeline.cli.parser import DEVICE_HELP, add_common, add_store, call_api, dataset_help
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd train``."""
    rows = methods.REGISTRY.values()  # read now: a method registered at run time is a choice too
    p.add_argument("stage", choices=methods.METHODS,
                   help="; ".join(f"{row.name}: {row.description}" for row in rows))
    add_store(p, "the feature store (runs are kept in <store>/runs)")
    one, several = methods.with_teachers(methods.ONE_TEACHER), methods.with_teachers(methods.SEVERAL_TEACHERS)
    p.add_argument("--dataset", help=f"{dataset_help()} ({', '.join(one)}: default the teacher's)")
    defaults = "; ".join(f"{row.name} {','.join(row.backbones)}" for row in rows if not row.fixed_backbones)
    fixed = "; ".join(f"{row.name}: {','.join(row.backbones)}, always" for row in rows if row.fixed_backbones)
    p.add_argument("--backbones", help=f"comma-separated (default: {defaults}{'; ' + fixed if fixed else ''})")
    p.add_argument("--teacher", help=f"{', '.join(one)} only: the teacher run (key prefix or run folder)")
    teaching = ", ".join(row.name for row in rows if row.teaches)
    p.add_argument("--teachers", help=f"{', '.join(several)} only: comma-separated teacher runs of any stage "
                                      f"({teaching}), each a key prefix or run folder")
    p.add_argument("--config", help="YAML file with model/train/mil/distill/lanet/ddl/lightning/adversarial "
                                    "sections (each stage reads its own), or 'paper' for the papers' recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set model.k=10 (repeatable)")
    p.add_argument("--epochs", type=int, help="exactly this many epochs (sets train.min_steps=0; default: 100 "
                                              "epochs and at least train.min_steps steps)")
    p.add_argument("--seed", type=int, help="first seed (default: 0)")
    p.add_argument("--seeds", type=int, default=d.DEFAULT_SEEDS,
                   help=f"train this many seeds and report mean ± std (default: {d.DEFAULT_SEEDS})")
    p.add_argument("--val-fraction", type=float, help="validation share of the training videos (default: 0.1)")
    p.add_argument("--crops", choices=d.CROP_MODES, help="average crops (default) or one sample per crop")
    p.add_argument("--precision", choices=d.PRECISIONS,
                   help="auto: fp32 on CPU, bf16/fp16 autocast on GPU (default: auto)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--fingerprint", dest="fingerprints", action="append", default=[], metavar="BACKBONE=PREFIX",
                   help="which stored extraction to use when the store holds several for a backbone")
    p.add_argument("--allow-missing", action="store_true",
                   help="train on the videos that have features instead of stopping when some are missing")
    p.add_argument("--checkpoint-every", type=int,
                   help=f"epochs between resumable saves (default: {d.DEFAULT_CHECKPOINT_EVERY}, and at least "
                        f"{d.CHECKPOINT_MIN_STEPS} steps)")
    p.add_argument("--force", action="store_true", help="retrain even if the run exists")
    add_common(p, json_help="print the runs' metrics as JSON on stdout; the other lines go to stderr")


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("train")


def run_line(run) -> str:
    """The line printed for each trained (or found) run."""
    from pipeline.train.trainer import _fmt  # torch: imported once a run exists, not before the inputs are checked

    m = run.metrics
    state = "cached (the run exists; --force retrains)" if run.cached else f"{m['wall_time_s']:.1f} s"
    return (f"train {run.stage}: seed {run.seed} run {run.key[:12]}: best epoch {m['best_epoch']}/{m['epochs']}, "
            f"val video AUC {_fmt(m['val_video_auc'])}, {state}; {run.folder}")


def run_stage(args) -> tuple[list[dict], list[str]]:
    """Train every requested seed from parsed flags (kept for the scripts that build flags). Returns (metrics per
    run, warnings)."""
    result = call_api(api.train, args, progress=not args.quiet, on_run=lambda r: print(run_line(r), flush=True))
    return [r.as_dict() for r in result.runs], result.warnings


def summarize(results: list[dict]) -> str:
    aucs = [r["val_video_auc"] for r in results if r["val_video_auc"] is not None]
    if len(results) < 2:
        return ""
    evaluate = "test metrics: dakd evaluate " + " ".join(r["run"][:12] for r in results)
    if not aucs:
        return f"{len(results)} seeds trained (no validation split, so no validation AUC); {evaluate}"
    std = np.std(aucs, ddof=1) if len(aucs) > 1 else 0.0
    return f"val video AUC over {len(aucs)} seeds: {np.mean(aucs):.4f} ± {std:.4f} (mean ± sample std); {evaluate}"


def run(args: argparse.Namespace) -> int:
    """The command: flags -> :func:`pipeline.api.train` -> one line per run, the seeds' summary."""
    configure_logging(args)
    try:  # config, features, runs, damaged files: each message says what to change
        result = call_api(api.train, args, progress=not args.quiet, on_run=lambda r: say(args, run_line(r)))
    except UserError as exc:
        return error(exc, args=args)
    for w in result.warnings:
        warn(args, w)
    rows = [r.as_dict() for r in result.runs]
    if (line := summarize(rows)):
        say(args, line)
    emit_json(args, rows)
    return EXIT_SOME_FAILED if result.warnings else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
