"""Extraction throughput: end to end (decode + preprocess + forward + store) vs the forward-only bound.

    python benchmarks/extract.py [--backbones i3d,effnet_lite0] [--out benchmarks/results/extract.json]
    python benchmarks/extract.py --grid-video VIDEO [--rounds 3] [--out benchmarks/results/extract_grid.json]

Both runs use the same videos (OpenCV's real vtest.avi plus synthetic surveillance videos), the same backbones
with their real weights and the same batch size. The forward-only bound feeds already-decoded, already
preprocessed snippets straight to the models, so ``ratio = e2e_fps / forward_fps`` says how much of the
machine the pipeline around the models costs. Target on the 2-core CPU machine: ratio >= 0.9.

``--grid-video`` measures feature grids instead (``--grid``, :func:`grid_benchmark`): for each backbone in the
full view, the extraction time of one real video (decode, forward, store) and of its forward passes alone, global
vs native grid vs a pooled grid, the variants interleaved round by round (the order rotated) so that a machine
busy with other work slows each alike; and the bytes a video-hour takes for each choice and dtype at UCF-Crime's
frame (320 x 240, 30 fps), and for UCF-Crime's 128 hours. Target: a grid costs at most 1.1x the global time (the
same forward pass; only the last average is skipped).
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
GRID_CHOICES = (None, "native", "3x4")  # global, the backbone's own map, the pooled grid the docs show
GRID_ROUNDS = 3  # interleaved rounds per variant (medians reported)
UCF_CRIME_FRAME = (240, 320)  # UCF-Crime's typical frame (H, W)
UCF_CRIME_FPS = 30
UCF_CRIME_HOURS = 128
TARGET_GRID_RATIO = 1.1  # a grid extraction's time over the global one's


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


def _cells_at(backbone, frame_hw: tuple[int, int], choice: str | None) -> tuple[int, int]:
    """(rows, cols) ``backbone`` gives a ``frame_hw`` frame with grid ``choice`` ((1, 1) for global), found by
    running it on one snippet of that size."""
    if choice is None:
        return 1, 1
    backbone.use_grid(choice)
    backbone.extract(torch.zeros(1, 16, *frame_hw, 3, dtype=torch.uint8))
    return backbone.last_grid


def _median(values: list[float]) -> float:
    return float(np.median(values))


def grid_benchmark(video: Path, names: list[str], *, rounds: int, batch_size: int, device) -> dict:
    """Per backbone (its real weights, the full view): time of global / native / 3x4 extractions of ``video``
    (end to end, and the forward passes alone on the same preprocessed input), interleaved; stored bytes per
    video-hour at UCF-Crime's frame for each choice and dtype."""
    out: dict = {}
    snippets_per_hour = UCF_CRIME_FPS * 3600 / 16  # 16-frame snippets, stride 16
    for name in names:
        b = build_backbone(name, view="full", device=device)
        plan = decode_plan(b)
        with open_video(video, short_side=plan.short_side, square=plan.square) as v:
            snippets = [torch.from_numpy(np.stack(chunk)) for chunk in _batches(list(v.snippets()), batch_size)]
            fps = v.info.fps
        inputs = [b.preprocess(x) for x in snippets]
        b.forward_preprocessed(inputs[0][:1], n_snippets=1)  # warm-up
        e2e: dict[str, list[float]] = {str(c): [] for c in GRID_CHOICES}
        fwd: dict[str, list[float]] = {str(c): [] for c in GRID_CHOICES}
        stored: dict[str, dict] = {}
        for r in range(rounds):
            order = GRID_CHOICES[r % len(GRID_CHOICES):] + GRID_CHOICES[:r % len(GRID_CHOICES)]
            for choice in order:
                b.use_grid(choice)
                t = time.perf_counter()
                for x, raw in zip(inputs, snippets):
                    b.forward_preprocessed(x, n_snippets=raw.shape[0])
                fwd[str(choice)].append(time.perf_counter() - t)
                with tempfile.TemporaryDirectory() as tmp:
                    store = FeatureStore(Path(tmp) / "store")
                    t = time.perf_counter()
                    outcome = Extractor(store, [b], batch_size=batch_size, progress=False).run([video])
                    e2e[str(choice)].append(time.perf_counter() - t)
                    (row,) = store.features()
                    stored[str(choice)] = {"shape": list(np.load(store.root / row["file"], mmap_mode="r").shape),
                                           "file_bytes": (store.root / row["file"]).stat().st_size,
                                           "frames": outcome.frames}
                    store.close()
        per_choice = {}
        for choice in GRID_CHOICES:
            key = str(choice)
            rows, cols = _cells_at(b, UCF_CRIME_FRAME, choice)
            per_hour = {dtype: int(snippets_per_hour * rows * cols * b.dim * np.dtype(dtype).itemsize)
                        for dtype in ("float32", "float16")}
            per_choice[key] = {
                "grid": "global" if choice is None else choice,
                "end_to_end_seconds": [round(x, 3) for x in e2e[key]],
                "end_to_end_median_s": round(_median(e2e[key]), 3),
                "forward_seconds": [round(x, 3) for x in fwd[key]],
                "forward_median_s": round(_median(fwd[key]), 3),
                # each round's grid time over the same round's global time (paired), then the median
                "end_to_end_ratio_to_global": round(_median([g / w for g, w in zip(e2e[key], e2e["None"])]), 3),
                "forward_ratio_to_global": round(_median([g / w for g, w in zip(fwd[key], fwd["None"])]), 3),
                "this_video": {**stored[key], "fps": fps},
                "ucf_crime_cells": [rows, cols],
                "ucf_crime_bytes_per_video_hour": per_hour,
                "ucf_crime_total_bytes": {k: v * UCF_CRIME_HOURS for k, v in per_hour.items()},
            }
        b.use_grid(None)
        out[name] = {"view": "full", "dim": b.dim, "input_hw": list(inputs[0].shape[-2:]), "choices": per_choice}
    return out


def _batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default=DEFAULT_BACKBONES)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--device", default="auto")
    p.add_argument("--grid-video", type=Path, help="measure feature grids on this video instead (see above)")
    p.add_argument("--rounds", type=int, default=GRID_ROUNDS, help="with --grid-video: interleaved rounds")
    p.add_argument("--out", help="default: benchmarks/results/extract.json, with --grid-video extract_grid.json")
    args = p.parse_args(argv)
    device = auto_device(args.device)
    if args.grid_video is not None:
        result = {"benchmark": "extract_grid", "video": args.grid_video.name, "device": str(device),
                  "batch_size": args.batch_size, "rounds": args.rounds,
                  "ucf_crime": {"frame_hw": list(UCF_CRIME_FRAME), "fps": UCF_CRIME_FPS, "hours": UCF_CRIME_HOURS},
                  "target_grid_ratio": TARGET_GRID_RATIO,
                  "backbones": grid_benchmark(args.grid_video, args.backbones.split(","), rounds=args.rounds,
                                              batch_size=args.batch_size, device=device)}
        write_report(result, args.out or "benchmarks/results/extract_grid.json")
        return 0
    args.out = args.out or "benchmarks/results/extract.json"
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
