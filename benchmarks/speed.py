"""End-to-end scoring speed of the three systems on the same videos, in one run (method.md §9).

    python benchmarks/speed.py [--out benchmarks/results/speed.json] [--device auto]

For each system, every video goes through the whole path a user's video takes: decode (resized while decoding),
the backbones, the store write, and the scoring model over every snippet. Frames per second = decoded frames /
wall time.

- teacher: I3D + S3D + CLIP ViT-B/16 features -> TAM teacher (paper sizes);
- clip student: CLIP ViT-B/16 -> student (paper sizes);
- lightning: low-resolution grey frames (``extractors.lowres``) -> lightning student with 3 teacher heads;
- lightning_maps: the same frames -> the map student (3 map heads on Ped1's 7 x 11 grid), scores and maps.

``--systems`` picks some of them (e.g. ``lightning,lightning_maps``: the two students in one run, a fair pair).

``--spatial`` measures the grid path against the global one instead (``benchmarks/spatial_speed.py``: grid
extraction, spatial MIL training and scoring, live windows with maps, on UCSD Ped1 clips; frames/s and peak memory).

Weights: the real I3D weights (fetched by the set-up code); S3D's and CLIP's when they are on this machine, else
``random`` (recorded in the output: a forward pass costs the same with any weights). The scoring heads are
freshly initialised for the same reason. Targets: lightning >= 1000 frames/s and >= 20 x the CLIP student.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_report import write_report
from data.assets import opencv_sample
from data.synthetic import generate_dataset
from extractors.device import auto_device
from extractors.registry import build_backbone
from extractors.weights import WeightsNotFound
from models.lightning_student import LightningStudent
from models.vad_model import VADModel
from pipeline.evaluate.scoring import score_snippet_maps, score_snippets
from pipeline.extract.extractor import DEFAULT_BATCH_SIZE, Extractor
from pipeline.store import FeatureStore

SYNTHETIC_VIDEOS = 2  # one normal, one anomalous, 320 frames each
LIGHTNING_TEACHERS = 3  # TAM teacher, CLIP student, LA-Net
LIGHTNING_BATCH_SIZE = 64  # snippets per forward pass: the lightning model is cheap, batches amortise the calls
SYSTEMS = {
    "teacher": ("i3d", "s3d", "clip"),
    "clip_student": ("clip",),
    "lightning": ("lowres",),
    "lightning_maps": ("lowres",),
}
MAP_GRID = (7, 11)  # the map student's grid: its teachers' on UCSD Ped1 (i3d / effnet_lite0's full-view cells)


def load_backbone(name: str, device) -> tuple[object, str]:
    """The backbone with its real weights when they are here, else random ones. Returns (backbone, weights)."""
    try:
        backbone = build_backbone(name, device=device)
        return backbone, "none" if backbone.weights_id == "none" else "pretrained"
    except WeightsNotFound:
        return build_backbone(name, weights="random", device=device), "random"


def scoring_model(system: str, dims: list[int]) -> torch.nn.Module:
    if system == "lightning":
        return LightningStudent(LIGHTNING_TEACHERS).eval()
    if system == "lightning_maps":
        return LightningStudent(LIGHTNING_TEACHERS, grid=MAP_GRID).eval()
    return VADModel(dims).eval()


def time_system(system: str, videos: list[Path], store_dir: Path, device, batch_size: int) -> dict:
    names = SYSTEMS[system]
    loaded = [load_backbone(n, device) for n in names]
    backbones = [b for b, _ in loaded]
    model = scoring_model(system, [b.dim for b in backbones]).to(device)
    warm = torch.zeros(1, 16, 240, 320, 3, dtype=torch.uint8)  # first-call allocations and kernel choice
    for b in backbones:
        b.extract(warm)
    store = FeatureStore(store_dir)
    start = time.perf_counter()
    extractor = Extractor(store, backbones, batch_size=batch_size, progress=False)  # default decode workers
    outcome = extractor.run(videos)
    extracted = time.perf_counter()
    by_video: dict[str, dict[str, Path]] = {}
    for row in store.features():
        by_video.setdefault(row["video_key"], {})[row["backbone"]] = store.root / row["file"]
    for files in by_video.values():  # every backbone's features of one video, in the model's order
        features = [np.load(files[b]).astype(np.float32, copy=False) for b in names]
        if system == "lightning_maps":
            score_snippet_maps(model, features, device, grid=MAP_GRID)
        else:
            score_snippets(model, features, device)
    end = time.perf_counter()
    store.close()
    return {
        "backbones": list(names),
        "weights": {n: w for n, (_, w) in zip(names, loaded)},
        "batch_size": batch_size,
        "decode_workers": extractor.decode_workers,
        "frames": outcome.frames,
        "failed": outcome.failed,
        "extract_seconds": round(extracted - start, 3),
        "score_seconds": round(end - extracted, 3),
        "seconds": round(end - start, 3),
        "fps": round(outcome.frames / (end - start), 2),
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--spatial" in argv:  # the grid path against the global one, with its own flags
        from spatial_speed import main as spatial_main

        return spatial_main([a for a in argv if a != "--spatial"])
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--spatial", action="store_true", help="measure the grid path (grid extraction, spatial MIL "
                   "training and scoring, live windows with maps) against the global path on real videos instead: "
                   "benchmarks/spatial_speed.py, whose flags (--data, --clips, --epochs, --rounds, --out, --readme) "
                   "then apply")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="snippets per backbone forward pass "
                                                                             "(teacher, CLIP student)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems to time "
                   f"(default: all, {', '.join(SYSTEMS)})")
    p.add_argument("--out", default="benchmarks/results/speed.json")
    args = p.parse_args(argv)
    systems = [n.strip() for n in args.systems.split(",") if n.strip()]
    if not systems or set(systems) - set(SYSTEMS):
        p.error(f"--systems takes names from {', '.join(SYSTEMS)}")
    device = auto_device(args.device)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        synth = generate_dataset(Path(tmp) / "synth", n_normal=1, n_anomalous=SYNTHETIC_VIDEOS - 1, seed=0)
        videos = [opencv_sample("vtest.avi")] + [e.path for e in synth.entries]
        for system in systems:
            batch = LIGHTNING_BATCH_SIZE if system.startswith("lightning") else args.batch_size
            results[system] = time_system(system, videos, Path(tmp) / f"store-{system}", device, batch)
            print(f"{system}: {results[system]['fps']} frames/s", flush=True)
    fps = {name: r["fps"] for name, r in results.items()}
    ratios = {f"lightning_over_{other}": round(fps["lightning"] / fps[other], 2)
              for other in ("clip_student", "teacher") if "lightning" in fps and other in fps}
    write_report({
        "benchmark": "speed",
        "device": str(device),
        "videos": len(videos),
        "systems": results,
        **ratios,
        "target_lightning_fps": 1000,
        "target_lightning_over_clip_student": 20,
    }, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
