"""``dakd synthetic OUT_DIR --normal N --anomalous M ...`` (or ``python -m data.synthetic``): write a synthetic
dataset with known anomalies (the work: :mod:`data.synthetic`)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence

from data.synthetic.dataset import generate_dataset
from data.synthetic.spec import (ANOMALY_KINDS, DEFAULT_FIGURE_HEIGHT, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_N_FRAMES,
                                 DEFAULT_WIDTH)
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, say
from pipeline.cli.parser import add_common

DESCRIPTION = ("videos, Temporal_Anomaly_Annotation.txt, split.csv and labels.csv with known anomalies: "
               + ", ".join(ANOMALY_KINDS))


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd synthetic``."""
    p.add_argument("out_dir", help="output folder (created if missing)")
    p.add_argument("--normal", type=int, required=True, help="number of normal videos")
    p.add_argument("--anomalous", type=int, required=True, help="number of anomalous videos")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--frames", type=int, default=DEFAULT_N_FRAMES,
                   help=f"frames per video (default: {DEFAULT_N_FRAMES})")
    p.add_argument("--size", type=_parse_size, default=(DEFAULT_WIDTH, DEFAULT_HEIGHT),
                   help=f"frame size WxH (default: {DEFAULT_WIDTH}x{DEFAULT_HEIGHT})")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frame rate (default: {DEFAULT_FPS:g})")
    p.add_argument("--scenes", type=int, default=None, metavar="N",
                   help="cameras the videos share, each filming normal and anomalous footage (default: every video "
                        "its own scene)")
    p.add_argument("--figure-height", type=float, default=DEFAULT_FIGURE_HEIGHT, metavar="FRACTION",
                   help="a pedestrian's height as a fraction of the frame: the camera's distance (default: "
                        f"{DEFAULT_FIGURE_HEIGHT:g})")
    p.add_argument("--lossless", action="store_true", help="lossless RGB H.264 instead of yuv420p H.264")
    add_common(p, json_help="print the dataset's summary as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    """The command: flags -> :func:`data.synthetic.generate_dataset` -> one summary line."""
    configure_logging(args)
    width, height = args.size
    t0 = time.perf_counter()
    try:
        ds = generate_dataset(args.out_dir, n_normal=args.normal, n_anomalous=args.anomalous, seed=args.seed,
                              n_frames=args.frames, width=width, height=height, fps=args.fps,
                              n_scenes=args.scenes, figure_height=args.figure_height, lossless=args.lossless,
                              progress=not args.quiet)
    except ValueError as exc:
        return error(exc, args=args)
    n_test = len(ds.by_split("test"))
    say(args, f"wrote {len(ds.entries)} videos ({args.normal} normal, {args.anomalous} anomalous; {width}x{height}, "
              f"{args.frames} frames @ {args.fps:g} fps, {'lossless ' if args.lossless else ''}H.264; "
              f"{len(ds.entries) - n_test} train / {n_test} test) to {ds.root} in {time.perf_counter() - t0:.1f}s")
    emit_json(args, {"root": str(ds.root), "videos": len(ds.entries), "test": n_test})
    return 0


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("synthetic")


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
