"""The main job on a small real default: extract -> train the teacher -> distill the student -> evaluate.

    dakd demo [--out dakd-demo] [--device auto] [--quiet]      (or python -m pipeline.demo)

Real weights that a package registry carries (DeepMind's Kinetics-400 I3D) on a small synthetic surveillance
dataset with known anomaly intervals (vehicles, fights, falls, crowds scattering, fire), written with real
encoders. The teacher is the Temporal Aggregation Module trained with MIL from video labels; the student is distilled
from it. Everything lands in ``<out>/store``; running it again is all cache hits. The paper's CLIP and S3D backbones
need weights from the network (open_clip and torchvision download them when online).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data.synthetic import GENERATOR_VERSION, generate_dataset
from extractors.weights import WeightsNotFound
from pipeline import api
from pipeline.cli import configure_logging, emit_json, error, say
from pipeline.defaults import DEMO_OUT, EXIT_SOME_FAILED
from pipeline.errors import InputError, UserError
from pipeline.fetch import fetch_all
from pipeline.parsers import stage_parser

DEFAULT_OUT = DEMO_OUT
# The demo's models: the teacher and the student on DeepMind's I3D, whose weights a package registry carries. On
# the demo's world EfficientNet-Lite0 hurt: a teacher over i3d + effnet_lite0 scored 0.83 frame AUC against 0.90 on
# i3d alone, and an effnet_lite0 student 0.63 (its frame-label ceiling is 0.79: single images barely show a fall or
# a fight); 3 seeds, benchmarks/demo.py, README "The demo's numbers".
TEACHER_BACKBONES = "i3d"
STUDENT_BACKBONE = "i3d"
# The demo's world: 40 short videos (8 s) rather than 24 long ones, for the same frames to extract: MIL learns from
# bags, and 12 anomalous videos left one or two training videos per anomaly class (teacher 0.74 with them, 0.90
# with 40 videos). 3 cameras (every camera films normal and anomalous footage, as a site's cameras do), close enough
# that a person is a quarter of the frame high: on the generator's defaults (every video its own scene, people a
# tenth of the frame high) the teacher scored 0.69 and ranked falls below normal footage (benchmarks/demo.py).
SYNTHETIC_NORMAL = 20
SYNTHETIC_ANOMALOUS = 20
SYNTHETIC_SEED = 0
SYNTHETIC_FRAMES = 192  # per video, at 25 fps: 12 snippets
SYNTHETIC_SCENES = 3
SYNTHETIC_FIGURE_HEIGHT = 0.25
WORLD_FILE = "world.json"  # beside labels.csv: the world the videos were written with
# What a user should see, measured by benchmarks/demo.py (3 seeds; README "The demo's numbers").
EXPECTED = ("On this world both score about 0.9 frame AUC or more (benchmarks/demo.py, 3 seeds); real footage is "
            "harder (README, \"The demo's numbers\").")
# The paper's batches (30 + 30) would make one step per epoch on this small set; smaller batches give the
# optimiser enough steps in 100 epochs. Every other value is the project's default (pipeline.config).
DEMO_OVERRIDES = {"train.batch_anomalous": 4, "train.batch_normal": 4}


def write_world(folder: Path, *, figure_height: float = SYNTHETIC_FIGURE_HEIGHT, scenes: int = SYNTHETIC_SCENES,
                normal: int = SYNTHETIC_NORMAL, anomalous: int = SYNTHETIC_ANOMALOUS, frames: int = SYNTHETIC_FRAMES,
                seed: int = SYNTHETIC_SEED, progress: bool = False) -> Path:
    """The synthetic dataset under ``folder`` (written unless ``folder`` already holds this world, as its
    ``world.json`` says; a folder of another world is written anew). ``scenes`` 0: every video its own scene.
    Returns ``folder``."""
    import json
    import shutil

    world = {"figure_height": figure_height, "scenes": scenes, "normal": normal, "anomalous": anomalous,
             "frames": frames, "seed": seed, "generator": GENERATOR_VERSION}
    record = folder / WORLD_FILE
    if (folder / "labels.csv").is_file() and record.is_file() and json.loads(record.read_text()) == world:
        return folder
    if folder.exists():
        shutil.rmtree(folder)  # another world's videos: none of them may stay behind under the new labels
    generate_dataset(folder, n_normal=normal, n_anomalous=anomalous, seed=seed, n_frames=frames,
                     n_scenes=scenes or None, figure_height=figure_height, progress=progress)
    record.write_text(json.dumps(world, indent=1) + "\n")
    return folder


def report(metrics, store: Path, student: str, seconds: float) -> str:
    """The demo's closing text: the two runs' metrics side by side with what they mean, AUC per anomaly class,
    where the files are, and the commands to run next."""
    teacher_m, student_m = metrics
    v = teacher_m.values
    prevalence = v["n_anomalous_frames"] / v["n_frames"]

    def cell(x) -> str:
        return "  n/a" if x is None else f"{x:.3f}"

    rows = [("frame AUC", teacher_m.auc, student_m.auc, "0.5 is chance; 1.0 puts every anomalous frame above "
             "every normal one"),
            ("AP", teacher_m.ap, student_m.ap, f"chance is {prevalence:.2f}, the share of anomalous frames")]
    classes = sorted(set(v.get("per_class_auc") or {}) | set(student_m.values.get("per_class_auc") or {}))
    rows += [(f"AUC {c}", (v.get("per_class_auc") or {}).get(c), (student_m.values.get("per_class_auc") or {}).get(c),
              "its anomalous videos against every normal one") for c in classes]
    width = max(len(r[0]) for r in rows)
    lines = [f"demo: done in {seconds / 60:.1f} min. Test split: {v['n_videos']} videos ({v['n_anomalous_videos']} "
             f"with anomalies), {v['n_frames']} frames, {100 * prevalence:.0f} % of them anomalous.", "",
             f"  {'':{width}}  teacher  student", *[f"  {name:{width}}  {cell(t):>7}  {cell(s):>7}   {what}"
                                                   for name, t, s, what in rows], "",
             "The teacher (the Temporal Aggregation Module on I3D features) learned from video labels alone (which "
             "videos hold an anomaly, not when); the student learned from the teacher's scores and features. "
             f"{EXPECTED}",
             f"Plots (ROC, PR, one score plot per test video) and CSVs: {teacher_m.folder} and {student_m.folder}",
             "", "Next:",
             f"  score your own video:   dakd detect my_video.mp4 --store {store} --model {student[:12]}",
             f"  watch a camera live:    dakd watch rtsp://CAMERA/stream --store {store} --model {student[:12]}",
             f"  every run in the store: dakd store --store {store} --runs"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("demo")


def check_paths(out: Path, store: Path) -> None:
    """The demo's folders, before anything is fetched: ``out`` must be a folder (or absent), ``store`` a store, an
    empty folder, or absent. Raises UserError naming the path and the fix."""
    from pipeline.inputs import check_new_store
    from pipeline.store import is_store, open_store

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a folder for the demo's videos, store and plots")
    check_new_store(store)
    if is_store(store):
        open_store(store, create=False, writes=True).close()  # a damaged or read-only store: named now


def run(args: argparse.Namespace) -> int:
    """The chain through :mod:`pipeline.api`: fetch -> synthetic videos -> extract -> teacher -> student ->
    evaluate, one line per stage."""
    configure_logging(args)
    out = Path(args.out)
    store = Path(args.store) if args.store else out / "store"
    progress = not args.quiet
    started = time.perf_counter()
    try:  # the paths first: a --out or --store that is a file, or a damaged store, is named before any download
        check_paths(out, store)
    except UserError as exc:
        return error(exc)
    try:
        fetch_all(footage=False, quiet=args.quiet or args.json)  # the weights; the demo writes its own footage
    except (WeightsNotFound, RuntimeError, OSError) as exc:
        print(f"error: cannot fetch the weights: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    synthetic = write_world(out / "synthetic", figure_height=SYNTHETIC_FIGURE_HEIGHT, scenes=SYNTHETIC_SCENES,
                            normal=SYNTHETIC_NORMAL, anomalous=SYNTHETIC_ANOMALOUS, frames=SYNTHETIC_FRAMES,
                            seed=SYNTHETIC_SEED, progress=progress)
    common = dict(store=store, device=args.device, progress=progress)
    try:
        extracted = api.extract([synthetic / "videos"], backbones=TEACHER_BACKBONES, **common)
        say(args, f"demo extract: {extracted.videos} videos, {extracted.extracted} extracted, {extracted.cached} "
                  f"cached, {extracted.failed} failed ({extracted.seconds:.1f} s); store {store}")
        if not extracted.ok:
            for failure in extracted.failures:
                print(f"  {failure.line()}", file=sys.stderr)
            print("demo: the extract stage failed for some videos; see the messages above", file=sys.stderr)
            return EXIT_SOME_FAILED
        teacher = api.train("teacher", dataset=synthetic, backbones=TEACHER_BACKBONES, overrides=DEMO_OVERRIDES,
                            **common)[0]
        student = api.train("student", teacher=teacher, backbones=STUDENT_BACKBONE, overrides=DEMO_OVERRIDES,
                            **common)[0]
        metrics = api.evaluate([teacher, student], store=store, device=args.device, progress=progress)
    except UserError as exc:  # a bad weights file, the store's faults, ... named
        return error(exc)
    say(args, report(metrics, store, student.key, time.perf_counter() - started))
    emit_json(args, {"store": str(store), "teacher": teacher.as_dict(), "student": student.as_dict(),
                     "metrics": [{"run": m.run, "stage": m.stage, "folder": str(m.folder), **m.values}
                                 for m in metrics]})
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
