"""``python -m data.synthetic OUT_DIR --normal N --anomalous M ...``: write a synthetic dataset."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence

from data.synthetic.dataset import generate_dataset
from data.synthetic.spec import (ANOMALY_KINDS, DEFAULT_FIGURE_HEIGHT, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_N_FRAMES,
                                 DEFAULT_WIDTH)

def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m data.synthetic OUT_DIR --normal N --anomalous M ...``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic", allow_abbrev=False,
        description="Write a synthetic UCF-Crime-like dataset (videos, Temporal_Anomaly_Annotation.txt, "
                    "split.csv, labels.csv) with known anomalies: " + ", ".join(ANOMALY_KINDS) + ".")
    parser.add_argument("out_dir", help="output folder (created if missing)")
    parser.add_argument("--normal", type=int, required=True, help="number of normal videos")
    parser.add_argument("--anomalous", type=int, required=True, help="number of anomalous videos")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--frames", type=int, default=DEFAULT_N_FRAMES,
                        help=f"frames per video (default: {DEFAULT_N_FRAMES})")
    parser.add_argument("--size", type=_parse_size, default=(DEFAULT_WIDTH, DEFAULT_HEIGHT),
                        help=f"frame size WxH (default: {DEFAULT_WIDTH}x{DEFAULT_HEIGHT})")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frame rate (default: {DEFAULT_FPS:g})")
    parser.add_argument("--scenes", type=int, default=None, metavar="N",
                        help="cameras the videos share, each filming normal and anomalous footage (default: every "
                             "video its own scene)")
    parser.add_argument("--figure-height", type=float, default=DEFAULT_FIGURE_HEIGHT, metavar="FRACTION",
                        help="a pedestrian's height as a fraction of the frame: the camera's distance (default: "
                             f"{DEFAULT_FIGURE_HEIGHT:g})")
    parser.add_argument("--lossless", action="store_true", help="lossless RGB H.264 instead of yuv420p H.264")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    width, height = args.size
    t0 = time.perf_counter()
    try:
        ds = generate_dataset(args.out_dir, n_normal=args.normal, n_anomalous=args.anomalous, seed=args.seed,
                              n_frames=args.frames, width=width, height=height, fps=args.fps,
                              n_scenes=args.scenes, figure_height=args.figure_height, lossless=args.lossless,
                              progress=not args.quiet)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_test = len(ds.by_split("test"))
    print(f"wrote {len(ds.entries)} videos ({args.normal} normal, {args.anomalous} anomalous; {width}x{height}, "
          f"{args.frames} frames @ {args.fps:g} fps, {'lossless ' if args.lossless else ''}H.264; "
          f"{len(ds.entries) - n_test} train / {n_test} test) to {ds.root} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
