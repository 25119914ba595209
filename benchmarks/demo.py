"""Does the demo show the method working? The demo's chain on its synthetic world, several seeds, with references.

    python benchmarks/demo.py [--work DIR] [--seeds 3] [--figure-height H] [--scenes N] [--tag NAME]
                              [--time-demo] [--out benchmarks/results] [--readme README.md] [--from-results]

1. Writes the demo's synthetic dataset (``pipeline.demo``'s world unless ``--figure-height`` / ``--scenes`` name
   another, for the ablation) under ``--work`` and extracts what the demo extracts, plus ``lowres`` for the motion
   reference (cached in ``<work>/<world>/store``).
2. The references of ``benchmarks/references.py`` on the same features: a logistic regression on the video labels
   (what MIL must beat), one on the frame labels (a ceiling: does the global feature see the anomalies at all?) and
   the no-learning motion score.
3. The demo's teacher and student (the demo's backbones and overrides) over ``--seeds`` training seeds, evaluated
   with the community's protocol: pooled frame AUC, AP and AUC per anomaly class.
4. ``--time-demo``: the wall time of a fresh ``dakd demo`` (weights already fetched) in a new folder.

Writes ``demo.json`` (one entry per world tag) and ``demo.md`` to ``--out``; ``--readme`` replaces the README's
table between ``<!-- demo:begin -->`` and ``<!-- demo:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.references import linear_references, motion_reference  # noqa: E402

SEEDS = 3
README_BEGIN, README_END = "<!-- demo:begin -->", "<!-- demo:end -->"
DEMO_TAG = "demo"  # the tag of the shipped demo world
# The backbones whose weights a registry carries: the demo's models use i3d; effnet_lite0 is measured beside it
# (its references, a teacher over both, a student on it) to show why the demo leaves it out.
FEATURE_BACKBONES = ("i3d", "effnet_lite0")
ROWS = {"teacher": "the demo's teacher: TAM on i3d, MIL", "student": "the demo's student, distilled from it",
        "teacher-i3d+effnet": "the teacher over i3d + effnet_lite0", "student-effnet": "a student on effnet_lite0, "
        "distilled from the demo's teacher"}


def world_folder(work: Path, world: dict) -> Path:
    return work / (f"h{world['figure_height']:g}-s{world['scenes']}-n{world['normal']}+{world['anomalous']}"
                   f"-f{world['frames']}")


def extract(synthetic: Path, store: Path) -> dict[str, str]:
    """The backbones of :data:`FEATURE_BACKBONES` and lowres; returns backbone -> fingerprint of the extraction."""
    from data.datasets import load_dataset
    from pipeline import api
    from pipeline.features import resolve_features
    from pipeline.store import FeatureStore

    for backbones in (",".join(FEATURE_BACKBONES), "lowres"):
        result = api.extract([synthetic / "videos"], backbones=backbones, store=store, progress=False)
        if not result.ok:
            raise SystemExit(f"extraction of {backbones} failed: {[f.line() for f in result.failures]}")
    spec = load_dataset(synthetic)
    names = FEATURE_BACKBONES + ("lowres",)
    s = FeatureStore(store)
    try:
        return dict(resolve_features(s, list(spec.entries), names).fingerprints)
    finally:
        s.close()


def references(synthetic: Path, store: Path, fingerprints: dict[str, str]) -> list[dict]:
    from data.datasets import load_dataset
    from pipeline.store import FeatureStore

    spec = load_dataset(synthetic)
    both = FEATURE_BACKBONES
    s = FeatureStore(store)
    try:
        rows = linear_references(s, spec, fingerprints, [(b,) for b in both] + [both],
                                 lambda vf, n: spec.frame_labels(vf.entry, n))
        rows.append(motion_reference(s, spec, fingerprints["lowres"]))
    finally:
        s.close()
    return rows


def train_and_evaluate(synthetic: Path, store: Path, seeds: int) -> list[dict]:
    """The demo's teacher and student for each seed: their test metrics and training times."""
    from pipeline import api
    from pipeline.demo import DEMO_OVERRIDES, STUDENT_BACKBONE, TEACHER_BACKBONES

    runs = []
    for seed in range(seeds):
        tick = time.perf_counter()
        teacher = api.train("teacher", store=store, dataset=synthetic, backbones=TEACHER_BACKBONES,
                            overrides=DEMO_OVERRIDES, seed=seed)[0]
        student = api.train("student", store=store, dataset=synthetic, teacher=teacher, backbones=STUDENT_BACKBONE,
                            overrides=DEMO_OVERRIDES, seed=seed)[0]
        # beside the demo's two: a teacher over both backbones, and a student on effnet_lite0
        both = api.train("teacher", store=store, dataset=synthetic, backbones=",".join(FEATURE_BACKBONES),
                         overrides=DEMO_OVERRIDES, seed=seed)[0]
        effnet = api.train("student", store=store, dataset=synthetic, teacher=teacher, backbones="effnet_lite0",
                           overrides=DEMO_OVERRIDES, seed=seed)[0]
        trained = {"teacher": teacher, "student": student, "teacher-i3d+effnet": both, "student-effnet": effnet}
        metrics = api.evaluate(list(trained.values()), store=store, dataset=str(synthetic), video_plots=False)
        for (row, run), m in zip(trained.items(), metrics):
            runs.append({"stage": row, "seed": seed, "run": run.key, "auc": m.auc, "ap": m.ap,
                         "per_class_auc": m.values.get("per_class_auc", {}),
                         "train_s": run.metrics.get("wall_time_s")})
        print(f"demo bench: seed {seed}: " + ", ".join(f"{r['stage']} AUC {r['auc']:.4f}" for r in runs[-4:])
              + f" ({time.perf_counter() - tick:.0f} s)", flush=True)
    return runs


def _stats(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for stage, what in ROWS.items():
        mine = [r for r in runs if r["stage"] == stage]
        classes = sorted({c for r in mine for c in r["per_class_auc"]})
        rows.append({"name": stage, "group": "demo", "what": what,
                     "auc": _stats([r["auc"] for r in mine]), "ap": _stats([r["ap"] for r in mine]),
                     "per_class_auc": {c: _stats([r["per_class_auc"][c] for r in mine
                                                  if r["per_class_auc"].get(c) is not None]) for c in classes}})
    return rows


def time_demo() -> dict:
    """A fresh ``dakd demo`` (new folder, weights already in the cache): its wall time and the AUCs it printed,
    which must equal seed 0's of the same world (same seed, same bytes, another process)."""
    with tempfile.TemporaryDirectory() as tmp:
        tick = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pipeline.demo", "--out", str(Path(tmp) / "demo"), "--quiet",
                               "--json"], check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - tick
    printed = json.loads(done.stdout)
    return {"seconds": round(seconds, 1), **{m["stage"]: m["auc"] for m in printed["metrics"]}}


def markdown(results: dict) -> str:
    def fmt(stat):
        return "-" if not stat else (f"{stat['mean']:.3f}" if stat["n"] == 1 else
                                     f"{stat['mean']:.3f} ± {stat['std']:.3f}")

    lines = ["Frame-level AUC on the demo's synthetic test split, mean ± sample std over the seeds (references: one "
             "deterministic fit). Worlds: pedestrian height as a fraction of the frame, cameras shared by the "
             "videos (none: every video its own scene), videos normal + anomalous.", ""]
    for tag, result in results.items():
        w = result["world"]
        scenes = w["scenes"] if w["scenes"] else "none"
        fresh = result.get("demo_run")
        timing = (f"; a fresh `dakd demo` took {fresh['seconds']:.0f} s and printed teacher {fresh['teacher']:.4f}, "
                  f"student {fresh['student']:.4f}" if fresh else "")
        lines += [f"**{tag}** (height {w['figure_height']:g}, cameras {scenes}, videos {w['normal']} + "
                  f"{w['anomalous']} of {w.get('frames', 320)} frames, {result['seeds']} seeds{timing})", "",
                  "| row | what | AUC | AP | AUC per class |", "|---|---|---|---|---|"]
        for r in result["rows"] + result["references"]:
            per_class = ", ".join(f"{c} {fmt(s)}" for c, s in r.get("per_class_auc", {}).items())
            lines.append(f"| {r['name']} | {r['what']} | {fmt(r['auc'])} | {fmt(r['ap'])} | {per_class} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from pipeline.cli import demo

    p = argparse.ArgumentParser(prog="python benchmarks/demo.py", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--work", default="demo-bench", help="where the worlds, stores and runs go (default: demo-bench)")
    p.add_argument("--seeds", type=int, default=SEEDS, help=f"training seeds (default: {SEEDS})")
    p.add_argument("--figure-height", type=float, default=demo.SYNTHETIC_FIGURE_HEIGHT)
    p.add_argument("--scenes", type=int, default=demo.SYNTHETIC_SCENES, help="cameras (0: every video its own)")
    p.add_argument("--normal", type=int, default=demo.SYNTHETIC_NORMAL)
    p.add_argument("--anomalous", type=int, default=demo.SYNTHETIC_ANOMALOUS)
    p.add_argument("--frames", type=int, default=demo.SYNTHETIC_FRAMES, help="frames per video")
    p.add_argument("--tag", default=DEMO_TAG, help=f"name of this world in the results (default: {DEMO_TAG})")
    p.add_argument("--time-demo", action="store_true", help="also time a fresh `dakd demo`")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--readme", help="README to update between the demo markers")
    p.add_argument("--from-results", action="store_true", help="only regenerate the tables from demo.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    path = out / "demo.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if not args.from_results:
        world = {"figure_height": args.figure_height, "scenes": args.scenes, "normal": args.normal,
                 "anomalous": args.anomalous, "frames": args.frames, "seed": demo.SYNTHETIC_SEED}
        from pipeline.fetch import fetch_all

        fetch_all(footage=False)  # the weights, as the demo fetches them
        folder = world_folder(Path(args.work), world)
        synthetic = demo.write_world(folder / "synthetic", **{k: world[k] for k in ("figure_height", "scenes",
                                                                                     "normal", "anomalous", "frames")})
        store = folder / "store"
        tick = time.perf_counter()
        fingerprints = extract(synthetic, store)
        extract_s = time.perf_counter() - tick
        refs = references(synthetic, store, fingerprints)
        runs = train_and_evaluate(synthetic, store, args.seeds)
        results[args.tag] = {"world": world, "seeds": args.seeds, "rows": summarise(runs), "references": refs,
                             "runs": runs, "extract_s": round(extract_s, 1),
                             "demo_run": time_demo() if args.time_demo else None,
                             "machine": platform.machine(), "cpus": os.cpu_count(),
                             "python": platform.python_version()}
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "demo.md").write_text(table)
    if args.readme:
        from benchmarks.accuracy import update_readme

        update_readme(Path(args.readme), table, README_BEGIN, README_END)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
