"""Extraction throughput: end to end (decode + preprocess + forward + store) vs the forward-only bound.

    python benchmarks/extract.py [--backbones i3d,effnet_lite0] [--out benchmarks/results/extract.json]

Both runs use the same videos (OpenCV's real vtest.avi plus synthetic surveillance videos), the same backbones
with their real weights and the same batch size. The forward-only bound feeds already-decoded, already
preprocessed snippets straight to the models, so ``ratio = e2e_fps / forward_fps`` says how much of the
machine the pipeline around the models costs. Target on the 2-core CPU machine: ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_report import write_report
from data.assets import opencv_sample
from data.decode import open_video
from data.synthetic import generate_dataset
from extractors.device import auto_device
from extractors.registry import build_backbone
from pipeline.extract.extractor import DEFAULT_BATCH_SIZE, Extractor, decode_plan
from pipeline.store import FeatureStore

DEFAULT_BACKBONES = "i3d,effnet_lite0"
SYNTHETIC_VIDEOS = 2  # one normal, one anomalous, 320 frames each


def forward_only_seconds(backbones, videos, batch_size: int) -> float:
    """Time of the forward passes alone over every snippet of the videos, inputs prepared beforehand."""
    seconds = 0.0
    for video in videos:
        for b in backbones:
            plan = decode_plan(b)  # the inputs the pipeline feeds each backbone
            with open_video(video, short_side=plan.short_side, square=plan.square) as v:
                snippets = list(v.snippets())
            for start in range(0, len(snippets), batch_size):
                x = b.preprocess(torch.from_numpy(np.stack(snippets[start:start + batch_size])))
                t = time.perf_counter()
                b.forward_preprocessed(x, n_snippets=len(snippets[start:start + batch_size]))
                seconds += time.perf_counter() - t
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default=DEFAULT_BACKBONES)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="benchmarks/results/extract.json")
    args = p.parse_args(argv)
    device = auto_device(args.device)
    backbones = [build_backbone(n, device=device) for n in args.backbones.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        synth = generate_dataset(Path(tmp) / "synth", n_normal=1, n_anomalous=SYNTHETIC_VIDEOS - 1, seed=0)
        videos = [opencv_sample("vtest.avi")] + [e.path for e in synth.entries]
        # Warm-up (first-call allocations, oneDNN kernel choice) so neither measurement pays it.
        warm = torch.zeros(1, 16, 240, 320, 3, dtype=torch.uint8)
        for b in backbones:
            b.extract(warm)
        t = time.perf_counter()
        outcome = Extractor(FeatureStore(Path(tmp) / "store"), backbones, batch_size=args.batch_size,
                            progress=False).run(videos)
        e2e = time.perf_counter() - t
        frames = outcome.frames
        fwd = forward_only_seconds(backbones, videos, args.batch_size)
    result = {
        "benchmark": "extract",
        "backbones": args.backbones.split(","),
        "device": str(device),
        "batch_size": args.batch_size,
        "videos": len(videos),
        "frames": frames,
        "failed": outcome.failed,
        "end_to_end_seconds": round(e2e, 3),
        "forward_only_seconds": round(fwd, 3),
        "end_to_end_fps": round(frames / e2e, 2),
        "forward_only_fps": round(frames / fwd, 2),
        "ratio": round(fwd / e2e, 4),
        "target_ratio": 0.9,
    }
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
