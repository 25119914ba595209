"""The main job on a small real default: extract -> train the teacher -> distill the student -> evaluate.

    python -m pipeline.demo [--out dakd-demo] [--device auto] [--quiet]

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
from pipeline import evaluate, extract, train
from pipeline.fetch import fetch_all
from pipeline.errors import UserError
from pipeline.store import open_store

DEFAULT_OUT = "dakd-demo"
TEACHER_BACKBONES = "i3d,effnet_lite0"  # the two backbones whose real weights a registry carries
STUDENT_BACKBONE = "effnet_lite0"
SYNTHETIC_NORMAL = 12
SYNTHETIC_ANOMALOUS = 12
SYNTHETIC_SEED = 0
# The paper's batches (30 + 30) would make one step per epoch on this small set; smaller batches give the
# optimiser enough steps in 100 epochs. Every other value is the project's default (pipeline.config).
DEMO_TRAIN = ["--set", "train.batch_anomalous=4", "--set", "train.batch_normal=4"]


def _latest(store: Path, stage: str, backbones: str, dataset: Path) -> str:
    """Key prefix of the most recent finished run of ``stage`` on ``backbones`` and ``dataset``."""
    runs = [r for r in open_store(store, create=False).runs(stage)
            if r["status"] == "done" and r["backbones"] == backbones and r["dataset"] == str(dataset.resolve())]
    return runs[-1]["key"][:12]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help=f"working folder (default: ./{DEFAULT_OUT})")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    store = out / "store"
    quiet = ["--quiet"] if args.quiet else []
    try:
        fetch_all(footage=False, quiet=args.quiet)  # the weights; the demo writes its own footage
    except (WeightsNotFound, RuntimeError, OSError) as exc:
        print(f"error: cannot fetch the weights: {exc}", file=sys.stderr)
        return 1
    synthetic = out / "synthetic"
    if not (synthetic / "labels.csv").is_file():
        generate_dataset(synthetic, n_normal=SYNTHETIC_NORMAL, n_anomalous=SYNTHETIC_ANOMALOUS, seed=SYNTHETIC_SEED,
                         progress=not args.quiet)
    teacher = lambda: _latest(store, "teacher", TEACHER_BACKBONES, synthetic)  # noqa: E731  (known once trained)
    student = lambda: _latest(store, "student", STUDENT_BACKBONE, synthetic)  # noqa: E731
    stages = [
        ("extract", lambda: extract.main([str(synthetic / "videos"), "--store", str(store), "--backbones",
                                          TEACHER_BACKBONES, "--device", args.device, *quiet])),
        ("teacher", lambda: train.main(["teacher", "--store", str(store), "--dataset", str(synthetic),
                                        "--backbones", TEACHER_BACKBONES, "--device", args.device, *DEMO_TRAIN,
                                        *quiet])),
        ("student", lambda: train.main(["student", "--store", str(store), "--teacher", teacher(),
                                        "--backbones", STUDENT_BACKBONE, "--device", args.device, *DEMO_TRAIN,
                                        *quiet])),
        ("evaluate", lambda: evaluate.main([teacher(), student(), "--store", str(store), "--device", args.device,
                                            *quiet])),
    ]
    for name, run in stages:
        try:
            code = run()
        except UserError as exc:  # the store's faults, named (a damaged manifest, ...)
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if code != 0:
            print(f"demo: the {name} stage failed (exit code {code}); see the messages above", file=sys.stderr)
            return code
    print(f"demo: done. Metrics, ROC/PR curves and one score plot per test video are in the folders printed above "
          f"(all runs: python -m pipeline.store {store} --runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
