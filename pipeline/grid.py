"""Baselines and ablations on one dataset: train and evaluate a grid of variants over seeds, write a table.

    python -m pipeline.grid --store DIR --dataset ucf-crime [--seeds 5] [--tables methods,table1,table4,table5]
                            [--variants NAME,...] [--epochs N] [--set SECTION.KEY=VALUE] [--out DIR]

Every variant is an ordinary ``pipeline.train`` run (content-keyed, so a grid that is re-run or extended only
trains what is new) followed by ``pipeline.evaluate``'s protocol on the test split. Students distill the TAM
teacher of the same seed; the lightning student distills the teacher, the student and LA-Net of that seed. A
variant that fails (missing features, a config error) is reported in the table and the grid goes on; the exit
code is then 1. Writes ``grid.json`` and ``grid.md``: AUC and AP, mean ± sample std over the seeds.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.datasets import load_dataset
from extractors.device import auto_device
from pipeline import evaluate, train
from pipeline.atomic import atomic_write_json, atomic_write_text
from pipeline.config import DEFAULT_BACKBONES, parse_assignments
from pipeline.errors import UserError
from pipeline.runs import load_run
from pipeline.store import FeatureStore, open_store

TEMPORAL_VARIANTS = ("tam", "disentangled", "mha", "lstm", "gru", "rnn", "cnn1d")  # the paper's Table 1
ATTENTION_TERMS = ("self_c2c", "cross_c2c", "c2p", "p2c")  # Table 5: each term alone
TABLES = ("methods", "table1", "table4", "table5")
TEACHER = "teacher"  # the TAM teacher variant every student distills


@dataclass(frozen=True)
class Variant:
    name: str
    table: str
    description: str
    stage: str
    backbones: str  # "teacher" | "student": the grid's teacher or student backbones; else literal
    overrides: tuple[str, ...] = ()  # SECTION.KEY=VALUE
    teachers: tuple[str, ...] = ()  # variants whose runs of the same seed this one distills


def variants() -> list[Variant]:
    """Every variant the grid knows, in table order."""
    out = [
        Variant("sultani", "methods", "Sultani et al. MIL MLP (baseline)", "teacher", "student",
                ("model.temporal=none", "model.projection=false")),
        Variant(TEACHER, "methods", "DAKD Teacher (TAM, MIL)", "teacher", "teacher"),
        Variant("student", "methods", "DAKD Student (bi-level distillation)", "student", "student",
                teachers=(TEACHER,)),
        Variant("lanet", "methods", "LA-Net + DDL", "lanet", "student"),
        Variant("lightning", "methods", "lightning student (adversarial, 3 teachers)", "lightning", "lowres",
                teachers=(TEACHER, "student", "lanet")),
    ]
    out += [Variant(f"temporal-{m}", "table1", f"temporal module: {m}", "teacher", "teacher",
                    (f"model.temporal={m}",)) for m in TEMPORAL_VARIANTS if m != "tam"]
    out += [
        Variant("student-no-tam", "table4", "student w/o TAM", "student", "student", ("model.temporal=none",),
                (TEACHER,)),
        Variant("student-no-nce", "table4", "student w/o L_nce", "student", "student", ("distill.alpha=0",),
                (TEACHER,)),
        Variant("student-no-bce", "table4", "student w/o L_bce", "student", "student", ("distill.bce_weight=0",),
                (TEACHER,)),
        Variant("student-no-min-max", "table4", "student w/o min-max normalisation", "student", "student",
                ("distill.min_max=false",), (TEACHER,)),
        Variant("student-no-moving-average", "table4", "student w/o moving average", "student", "student",
                ("distill.smoothing_e=0",), (TEACHER,)),
    ]
    out += [Variant(f"attention-{term}", "table5", f"teacher attention: {term} alone", "teacher", "teacher",
                    tuple(f"model.{t}={'true' if t == term else 'false'}" for t in ATTENTION_TERMS))
            for term in ATTENTION_TERMS]
    return out


def plan(tables: list[str], names: list[str]) -> list[Variant]:
    """The requested variants plus the ones they distill from, dependencies first."""
    known = {v.name: v for v in variants()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    bad = [t for t in tables if t not in TABLES]
    if bad:
        raise UserError(f"unknown table(s) {', '.join(bad)}; known: {', '.join(TABLES)}")
    wanted = set(names) | {v.name for v in known.values() if v.table in tables}
    ordered: list[str] = []

    def visit(name: str) -> None:
        for dep in known[name].teachers:
            visit(dep)
        if name not in ordered:
            ordered.append(name)

    for v in variants():  # table order, each after its dependencies
        if v.name in wanted:
            visit(v.name)
    return [known[n] for n in ordered]


@dataclass
class Cell:
    """One variant's runs and metrics over the seeds."""

    variant: Variant
    runs: dict[int, str] = field(default_factory=dict)  # seed -> run key
    metrics: dict[int, dict] = field(default_factory=dict)  # seed -> evaluate metrics
    errors: dict[int, str] = field(default_factory=dict)  # seed -> why it failed


def _train_argv(v: Variant, seed: int, args, backbones: dict[str, str], teacher_runs: list[str]) -> list[str]:
    argv = [v.stage, "--store", args.store, "--dataset", args.dataset, "--seed", str(seed), "--quiet",
            "--device", args.device]
    if v.stage != "lightning":
        argv += ["--backbones", backbones.get(v.backbones, v.backbones)]
    if v.stage == "student":
        argv += ["--teacher", teacher_runs[0]]
    if v.stage == "lightning":
        argv += ["--teachers", ",".join(teacher_runs)]
    if args.epochs:
        argv += ["--epochs", str(args.epochs)]
    for item in (*v.overrides, *args.set):  # each stage reads only its own sections (pipeline.config)
        argv += ["--set", item]
    for item in args.fingerprint:
        argv += ["--fingerprint", item]
    return argv


def run_cell(cell: Cell, seed: int, args, backbones: dict[str, str], cells: dict[str, Cell], store: FeatureStore,
             spec, device) -> None:
    """Train (or find) and evaluate one variant for one seed; a failure is recorded on the cell."""
    v = cell.variant
    missing = [t for t in v.teachers if seed not in cells[t].runs]
    if missing:
        cell.errors[seed] = f"needs the {', '.join(missing)} run of seed {seed}, which failed"
        return
    try:
        argv = _train_argv(v, seed, args, backbones, [cells[t].runs[seed] for t in v.teachers])
        results, warnings = train.run_stage(train.build_parser().parse_args(argv))
        run = load_run(store, results[0]["run"], v.stage)
        metrics, _, _ = evaluate.evaluate_run(store, run, spec, dataset_ref=args.dataset, out=None, device=device,
                                              precision="fp32", allow_missing=False, video_plots=False,
                                              force=False, progress=False)
    except (UserError, ValueError) as exc:
        cell.errors[seed] = str(exc)
        return
    cell.runs[seed] = run.key
    cell.metrics[seed] = metrics


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}


def table_rows(cells: list[Cell]) -> list[dict]:
    rows = []
    for c in cells:
        v = c.variant
        rows.append({
            "variant": v.name, "table": v.table, "description": v.description, "stage": v.stage,
            "overrides": list(v.overrides), "teachers": list(v.teachers),
            "runs": {str(s): k for s, k in c.runs.items()},
            "auc": _stats([m["auc"] for m in c.metrics.values() if m.get("auc") is not None]),
            "ap": _stats([m["ap"] for m in c.metrics.values() if m.get("ap") is not None]),
            "per_seed": {str(s): {"auc": m.get("auc"), "ap": m.get("ap")} for s, m in c.metrics.items()},
            "errors": {str(s): e for s, e in c.errors.items()},
        })
    return rows


def markdown(rows: list[dict], title: str) -> str:
    def fmt(stat):
        return "failed" if stat is None else f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"

    lines = [f"# {title}", "", "AUC and AP in %, mean ± sample std over the seeds (n = seeds that finished).", "",
             "| table | variant | what | AUC | AP | n |", "|---|---|---|---|---|---|"]
    for r in rows:
        n = r["auc"]["n"] if r["auc"] else 0
        lines.append(f"| {r['table']} | {r['variant']} | {r['description']} | {fmt(r['auc'])} | {fmt(r['ap'])} "
                     f"| {n} |")
    failures = [(r["variant"], s, e) for r in rows for s, e in r["errors"].items()]
    if failures:
        lines += ["", "Failures:", ""] + [f"- {v} seed {s}: {e}" for v, s, e in failures]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="the store with the dataset's features")
    p.add_argument("--dataset", required=True, help="ucf-crime | shanghaitech | xd-violence | labels CSV | folder")
    p.add_argument("--seeds", type=int, default=5, help="seeds per variant (default: 5, as the paper reports)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated from {', '.join(TABLES)} "
                                                              "(default: all)")
    p.add_argument("--variants", default="", help="extra variants by name (e.g. temporal-lstm); with --tables '' "
                                                  "only these")
    p.add_argument("--teacher-backbones", default=",".join(DEFAULT_BACKBONES["teacher"]),
                   help="backbones of the teacher variants (default: i3d,s3d,clip)")
    p.add_argument("--student-backbone", default=DEFAULT_BACKBONES["student"][0],
                   help="the single backbone of the students, Sultani's MLP and LA-Net (default: clip)")
    p.add_argument("--epochs", type=int, help="epochs of every run (default: each stage's config)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a config override for every variant; each stage reads its own sections (repeatable)")
    p.add_argument("--fingerprint", action="append", default=[], metavar="BACKBONE=PREFIX",
                   help="which stored extraction to use when the store holds several for a backbone")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--out", help="folder for grid.json and grid.md (default: <store>/grid)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.seeds < 1:
            raise UserError("--seeds must be at least 1")
        parse_assignments(args.set)  # a malformed --set fails here, not in every variant
        tables = [t.strip() for t in args.tables.split(",") if t.strip()]
        names = [n.strip() for n in args.variants.split(",") if n.strip()]
        todo = plan(tables, names)
        if not todo:
            raise UserError("nothing to run: give --tables and/or --variants")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backbones = {"teacher": args.teacher_backbones, "student": args.student_backbone}
    try:
        spec = load_dataset(args.dataset)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:  # named: a file, no store, a damaged manifest, a read-only store
        store = open_store(args.store, create=False, writes=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = auto_device(args.device)
    cells = {v.name: Cell(v) for v in todo}
    try:
        for v in todo:
            for seed in range(args.seed, args.seed + args.seeds):
                run_cell(cells[v.name], seed, args, backbones, cells, store, spec, device)
                state = (f"AUC {cells[v.name].metrics[seed]['auc']:.4f}" if seed in cells[v.name].metrics
                         else f"FAILED: {cells[v.name].errors[seed]}")
                print(f"grid: {v.name} seed {seed}: {state}", flush=True)
    finally:
        store.close()
    rows = table_rows(list(cells.values()))
    out = Path(args.out) if args.out else Path(args.store) / "grid"
    out.mkdir(parents=True, exist_ok=True)
    title = f"Baselines and ablations on {spec.name}"
    atomic_write_json(out / "grid.json", {"dataset": args.dataset, "seeds": args.seeds, "rows": rows})
    text = markdown(rows, title)
    atomic_write_text(out / "grid.md", text)
    print(text + f"\nwritten: {out / 'grid.md'}, {out / 'grid.json'}")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
