"""``dakd demo [--out dakd-demo] [--device auto]``: the main job on a small real default, and the text it ends with
(the world it writes: :mod:`pipeline.demo.world`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from extractors.weights import WeightsNotFound
from pipeline import api
from pipeline import defaults as d
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, print_failures, say
from pipeline.cli.parser import DEVICE_HELP, add_common
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.demo.world import (
    DEMO_OVERRIDES,
    EXPECTED,
    STUDENT_BACKBONE,
    SYNTHETIC_ANOMALOUS,
    SYNTHETIC_FIGURE_HEIGHT,
    SYNTHETIC_FRAMES,
    SYNTHETIC_NORMAL,
    SYNTHETIC_SCENES,
    SYNTHETIC_SEED,
    TEACHER_BACKBONES,
    write_world,
)
from pipeline.errors import InputError, UserError
from pipeline.fetch.fetcher import fetch_all


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd demo``."""
    p.add_argument("--out", default=d.DEMO_OUT, help=f"working folder (default: ./{d.DEMO_OUT})")
    p.add_argument("--store", metavar="STORE", help="the store to fill (default: <out>/store; $DAKD_STORE is not "
                                                    "used, so the demo never writes into a real store by accident)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    add_common(p, json_help="print the runs and their test metrics as JSON on stdout")


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
        return error(exc, args=args)
    try:
        quiet = args.quiet or args.json
        # the weights; the demo writes its own footage
        fetch_all(footage=False, report=None if quiet else lambda line: print(line, flush=True))
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
            print_failures(extracted.failures, args)
            print("demo: the extract stage failed for some videos; see the messages above", file=sys.stderr)
            return EXIT_SOME_FAILED
        teacher = api.train("teacher", dataset=synthetic, backbones=TEACHER_BACKBONES, overrides=DEMO_OVERRIDES,
                            **common)[0]
        student = api.train("student", teacher=teacher, backbones=STUDENT_BACKBONE, overrides=DEMO_OVERRIDES,
                            **common)[0]
        metrics = api.evaluate([teacher, student], store=store, device=args.device, progress=progress)
    except UserError as exc:  # a bad weights file, the store's faults, ... named
        return error(exc, args=args)
    say(args, report(metrics, store, student.key, time.perf_counter() - started))
    emit_json(args, {"store": str(store), "teacher": teacher.as_dict(), "student": student.as_dict(),
                     "metrics": [{"run": m.run, "stage": m.stage, "folder": str(m.folder), **m.values}
                                 for m in metrics]})
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
