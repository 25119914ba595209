"""Teacher training speed on a UCF-Crime-sized feature set.

    python benchmarks/train.py [--epochs 100] [--precision fp32] [--out benchmarks/results/train.json]

A synthetic feature set with UCF-Crime's training split sizes (810 anomalous + 800 normal videos) and the paper's
three backbones and dimensions (i3d 1024, s3d 1024, clip 512) is imported into a fresh store; then
``python -m pipeline.train teacher`` runs with the paper's configuration (batch 30 + 30, 10 % validation). The
result records the wall time of the epochs (validation included) and of the whole command (pooling included).
Target on the 2-core CPU machine: 100 epochs in under 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


from bench_report import write_report
from data.synthetic_features import make_feature_dataset, write_feature_dataset
from pipeline.cli import import_features, train

DIMS = {"i3d": 1024, "s3d": 1024, "clip": 512}  # the paper's backbones
SIGNAL = {"i3d": 1.0, "s3d": 1.0, "clip": 0.5}
UCF_TRAIN = (810, 800)  # anomalous, normal (data/splits/ucf_crime/Anomaly_Train.txt)
SNIPPETS = (32, 64)  # T per video; the epoch cost does not depend on it (every video is pooled to 32 segments)
TARGET_SECONDS = 180.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="benchmarks/results/train.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        videos = make_feature_dataset(dims=DIMS, signal=SIGNAL, n_train=UCF_TRAIN, n_test=(0, 0), snippets=SNIPPETS)
        files = write_feature_dataset(root / "features", videos)
        del videos
        for backbone in DIMS:
            assert import_features.main([str(files[backbone]), "--backbone", backbone, "--store",
                                         str(root / "store"), "--quiet"]) == 0
        prepare_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        code = train.main(["teacher", "--store", str(root / "store"), "--dataset", str(files["labels"]),
                           "--backbones", ",".join(DIMS), "--epochs", str(args.epochs), "--precision", args.precision,
                           "--device", args.device, "--checkpoint-every", str(args.epochs), "--quiet"])
        command_s = time.perf_counter() - t1
        assert code == 0
        run = next((root / "store" / "runs" / "teacher").iterdir())
        metrics = json.loads((run / "metrics.json").read_text())
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epochs_s = metrics["wall_time_s"]
    result = {
        "benchmark": "train teacher", "epochs": args.epochs, "precision": args.precision,
        "device": metrics["device"], "train_videos": sum(UCF_TRAIN), "backbones": DIMS,
        "epochs_wall_s": epochs_s, "per_epoch_s": round(epochs_s / args.epochs, 3),
        "compute_s_per_epoch": round(sum(h["compute_s"] for h in log) / len(log), 3),
        "command_wall_s": round(command_s, 2), "prepare_features_s": round(prepare_s, 2),
        "extrapolated_100_epochs_s": round(epochs_s / args.epochs * 100, 1),
        "target_100_epochs_s": TARGET_SECONDS,
        "met": epochs_s / args.epochs * 100 <= TARGET_SECONDS,
    }
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
