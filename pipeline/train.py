"""Stages 2-3: train the TAM Teacher with MIL, distill the single-backbone Student from a frozen teacher run,
train LA-Net with Discriminative Dynamics Learning, or distill several teachers into the lightning student.

    python -m pipeline.train teacher --store DIR --dataset ucf-crime [--backbones i3d,s3d,clip] [--seeds 5]
    python -m pipeline.train student --store DIR --teacher RUN [--backbones clip] [--seeds 5]
    python -m pipeline.train lanet --store DIR --dataset ucf-crime [--backbones i3d]
    python -m pipeline.train lightning --store DIR --teachers RUN[,RUN...]   (needs --backbones lowres extracted)

The command: flags -> :func:`pipeline.api.train` -> one line per run. What a run does is in
``pipeline.training``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from pipeline import api
from pipeline.cli import configure_logging, emit_json, error, say
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.errors import UserError
from pipeline.parsers import stage_parser


# -- command line (pipeline.parsers holds the arguments, pipeline.api.train the work) ----------------------------
def build_parser() -> argparse.ArgumentParser:
    return stage_parser("train")


def train_kwargs(args: argparse.Namespace) -> dict:
    """The keywords of :func:`pipeline.api.train` that the flags give."""
    return dict(store=args.store, dataset=args.dataset, backbones=args.backbones, teacher=args.teacher,
                teachers=args.teachers, config=args.config, overrides=args.set, epochs=args.epochs, seed=args.seed,
                seeds=args.seeds, val_fraction=args.val_fraction, crops=args.crops, precision=args.precision,
                device=args.device, fingerprints=args.fingerprint, allow_missing=args.allow_missing,
                checkpoint_every=args.checkpoint_every, force=args.force, progress=not args.quiet)


def run_line(run) -> str:
    """The line printed for each trained (or found) run."""
    from pipeline.training.engine import _fmt  # torch: imported once a run exists, not before the inputs are checked

    m = run.metrics
    state = "cached (the run exists; --force retrains)" if run.cached else f"{m['wall_time_s']:.1f} s"
    return (f"train {run.stage}: seed {run.seed} run {run.key[:12]}: best epoch {m['best_epoch']}/{m['epochs']}, "
            f"val video AUC {_fmt(m['val_video_auc'])}, {state}; {run.folder}")


def run_stage(args) -> tuple[list[dict], list[str]]:
    """Train every requested seed from parsed flags (kept for the scripts that build flags). Returns (metrics per
    run, warnings)."""
    result = api.train(args.stage, **train_kwargs(args), on_run=lambda r: print(run_line(r), flush=True))
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
        result = api.train(args.stage, **train_kwargs(args), on_run=lambda r: say(args, run_line(r)))
    except UserError as exc:
        return error(exc)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    rows = [r.as_dict() for r in result.runs]
    if (line := summarize(rows)):
        say(args, line)
    emit_json(args, rows)
    return EXIT_SOME_FAILED if result.warnings else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
