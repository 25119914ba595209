"""Score new videos with a trained run: per-frame anomaly scores, a plot, and optionally an overlaid copy.

    python -m pipeline.detect VIDEO_OR_FOLDER... --store DIR [--model RUN] [--out detections]
                              [--overlay OUT.mp4|FOLDER] [--weights NAME=PATH] [--threshold 0.5]

The run (default: the store's most recent student) names its backbones; each video goes through the extract
stage with the settings the run's training features were made with (crops, frames, decoder, dtype, read from the
store), so its features are cached in the store like any other, then through the run's model over every snippet
(crops averaged, as evaluation scores). Works for teacher, student, LA-Net and lightning runs.

Per video, in ``--out``: ``<name>.csv`` (frame, time_s, snippet, score), ``<name>.json`` (the same scores as
arrays plus the run, the frame rate and the intervals at or above ``--threshold``) and ``<name>.png`` (score
over time). Snippet t covers frames [16t, 16t + 16); the last < 16 frames, which form no snippet, take the last
snippet's score, so every decoded frame has one. Videos are decoded snippet by snippet and the overlay frame by
frame, so memory stays bounded for long videos. A video that fails is reported with the reason and the fix, the
others go on, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.discover import find_videos
from extractors.device import auto_device
from extractors.weights import WeightsNotFound
from pipeline.atomic import atomic_write, atomic_write_json
from pipeline.errors import UserError
from pipeline.extract import Extractor, parse_weights
from pipeline.keys import feature_key
from pipeline.metrics import FALSE_ALARM_THRESHOLD, SNIPPET_FRAMES
from pipeline.overlay import write_overlay
from pipeline.plots import plot_detection, unique_stems
from pipeline.runs import LoadedRun, load_run, training_backbone
from pipeline.scoring import align_snippets, score_snippets
from pipeline.store import MANIFEST, FeatureStore, is_store

DEFAULT_STAGE = "student"  # the model used when --model is not given: the store's most recent one
DEFAULT_OUT = "detections"
STAGE = "detect"

log = logging.getLogger("pipeline.detect")


@dataclass
class Detection:
    """One video's result: snippet scores ``[T]`` and the frame scores ``[n_frames]`` derived from them."""

    path: Path
    snippet_scores: np.ndarray
    n_frames: int
    fps: float

    @property
    def frame_scores(self) -> np.ndarray:
        """float ``[n_frames]``: snippet t's score on frames [16t, 16t + 16), the last snippet's on the rest."""
        scores = np.repeat(self.snippet_scores, SNIPPET_FRAMES)
        tail = self.n_frames - len(scores)
        return np.concatenate([scores, np.full(tail, scores[-1])]) if tail > 0 else scores[:self.n_frames]

    @property
    def frame_times(self) -> np.ndarray:
        """Seconds from the start of each frame (frame index / fps)."""
        return np.arange(self.n_frames) / self.fps if self.fps > 0 else np.full(self.n_frames, np.nan)


def above_threshold(d: Detection, threshold: float) -> list[tuple[float, float]]:
    """Time intervals ``[start_s, end_s)`` whose frame scores are at or above ``threshold`` (frames when the
    frame rate is unknown)."""
    high = np.concatenate([[False], d.frame_scores >= threshold, [False]])
    edges = np.flatnonzero(np.diff(high.astype(np.int8)))
    scale = 1.0 / d.fps if d.fps > 0 else 1.0
    return [(float(a * scale), float(b * scale)) for a, b in zip(edges[::2], edges[1::2])]


def default_run(store: FeatureStore) -> str:
    done = [r for r in store.runs(DEFAULT_STAGE) if r["status"] == "done"]
    if not done:
        raise UserError(f"{store.root} holds no finished {DEFAULT_STAGE} run: pass --model RUN (a run key prefix or "
                        f"folder; python -m pipeline.store {store.root} --runs lists them) or train one")
    return done[-1]["key"]


def backbones_for(run: LoadedRun, store: FeatureStore, weights: dict[str, str], device) -> tuple[list, dict]:
    """The run's backbones built with the settings of its training features. Returns (backbones, extractor
    settings: decoder, dtype, decode_resize)."""
    built, settings = [], {"decoder": "auto", "dtype": "float32", "decode_resize": True}
    for name in run.backbones:
        built.append(training_backbone(run, store, name, weights=weights.get(name), device=device))
        params = store.extractor_params(run.fingerprints[name])
        decode = params.get("decode") or {}
        settings["decoder"] = decode.get("backend", settings["decoder"])
        settings["decode_resize"] = decode.get("short_side", 1) is not None
        if params.get("dtype") in ("float32", "float16"):
            settings["dtype"] = params["dtype"]
    return built, settings


def write_outputs(d: Detection, stem: str, out: Path, run: LoadedRun, threshold: float) -> None:
    frames = pd.DataFrame({"frame": np.arange(d.n_frames), "time_s": d.frame_times,
                           "snippet": np.minimum(np.arange(d.n_frames) // SNIPPET_FRAMES, len(d.snippet_scores) - 1),
                           "score": d.frame_scores})
    atomic_write(out / f"{stem}.csv", lambda f: f.write(frames.to_csv(index=False).encode("utf-8")))
    best = int(np.argmax(d.frame_scores))
    atomic_write_json(out / f"{stem}.json", {
        "video": str(d.path), "run": run.key, "stage": run.checkpoint["stage"], "backbones": list(run.backbones),
        "fps": d.fps, "n_frames": d.n_frames, "n_snippets": len(d.snippet_scores), "snippet_frames": SNIPPET_FRAMES,
        "threshold": threshold, "max_score": float(d.frame_scores[best]), "max_frame": best,
        "intervals_above_threshold_s": above_threshold(d, threshold),
        # null when the container declares no frame rate (JSON has no NaN)
        "snippet_scores": d.snippet_scores.tolist(), "frame_time_s": d.frame_times.tolist() if d.fps > 0 else None,
        "frame_score": d.frame_scores.tolist(),
    })
    plot_detection(d.snippet_scores, d.n_frames, d.fps, out / f"{stem}.png", threshold=threshold,
                   title=f"{d.path.name}: {run.checkpoint['stage']} {run.key[:8]}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.detect", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", help="video files, folders (searched recursively) or folders of frames")
    p.add_argument("--store", required=True, help="the store holding the run (features of these videos are cached "
                                                  "there too)")
    p.add_argument("--model", help=f"run key prefix or folder (default: the most recent {DEFAULT_STAGE} run)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"folder for the CSV, JSON and PNG files (default: "
                                                      f"{DEFAULT_OUT})")
    p.add_argument("--overlay", help="write a copy of the video with a score bar: a .mp4 path (one video) or a "
                                     "folder (one <name>.mp4 per video)")
    p.add_argument("--threshold", type=float, default=FALSE_ALARM_THRESHOLD,
                   help=f"score marked as anomalous in the JSON intervals, the plot and the overlay "
                        f"(default: {FALSE_ALARM_THRESHOLD})")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file per backbone, as for pipeline.extract")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--batch-size", type=int, default=8, help="snippets per backbone forward pass (default: 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not is_store(args.store):
        print(f"error: {args.store} is not a store (no {MANIFEST}): pass the --store the run was trained in",
              file=sys.stderr)
        return 2
    store = FeatureStore(args.store)
    device = auto_device(args.device)
    try:
        run = load_run(store, args.model or default_run(store))
        backbones, settings = backbones_for(run, store, parse_weights(args.weights), device)
        found = find_videos(args.paths)
        if not found.videos:
            raise UserError(f"no videos found in {', '.join(args.paths)}")
        overlay = Path(args.overlay) if args.overlay else None
        if overlay and overlay.suffix.lower() == ".mp4" and len(found.videos) > 1:
            raise UserError(f"--overlay {overlay} names one file but there are {len(found.videos)} videos: pass a "
                            "folder")
    except (UserError, WeightsNotFound, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        store.close()
        return 2

    start = time.perf_counter()
    extractor = Extractor(store, backbones, batch_size=args.batch_size, progress=not args.quiet, **settings)
    for name, fp in zip(run.backbones, extractor.fingerprints):
        if fp != run.fingerprints[name]:
            print(f"warning: the {name} features of these videos come from other extractor settings than the "
                  f"run's training features (weights, crops or decoding differ); scores may be shifted",
                  file=sys.stderr)
    outcome = extractor.run(found.videos)
    failed = {path for path, _, _ in outcome.failures}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = run.model.to(device)
    videos = [v for v in found.videos if str(v) not in failed]
    stems = [v.stem for v in videos]
    for path, stem in zip(videos, unique_stems(stems if len(set(stems)) == len(stems) else [str(v) for v in videos])):
        video_key = store.video_key(path)
        arrays, _ = align_snippets([store.load_feature(feature_key(video_key, fp)).astype(np.float32)
                                    for fp in extractor.fingerprints])
        info = store.video(video_key)
        detection = Detection(path, score_snippets(model, arrays, device, n_heads=run.attention_heads),
                              int(info["n_frames"]), float(info["fps"] or 0.0))
        write_outputs(detection, stem, out, run, args.threshold)
        if overlay:
            dest = overlay if overlay.suffix.lower() == ".mp4" else overlay / f"{stem}.mp4"
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_overlay(path, dest, detection.frame_scores, fps=detection.fps, threshold=args.threshold)
        peak = above_threshold(detection, args.threshold)
        print(f"detect: {path}: max score {detection.frame_scores.max():.3f}, {len(peak)} interval(s) >= "
              f"{args.threshold:g}; {out / stem}.csv/.json/.png")
    elapsed = time.perf_counter() - start
    print(f"detect: {len(found.videos)} videos with {run.checkpoint['stage']} {run.key[:12]}: {len(videos)} scored, "
          f"{len(failed)} failed; {outcome.frames} new frames decoded in {elapsed:.1f} s; results in {out}")
    for path, reason, fix in outcome.failures:
        print(f"  FAILED {path}: {reason}" + (f" ({fix})" if fix else ""), file=sys.stderr)
    store.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
