"""Baselines and ablations on one dataset: train and evaluate a grid of variants over seeds, write a table.

    dakd grid --store DIR --dataset ucf-crime [--seeds 5] [--tables methods,table1,table4,table5]
              [--variants NAME,...] [--epochs N] [--set SECTION.KEY=VALUE] [--out DIR]

Every variant is an ordinary ``pipeline.train`` run (content-keyed, so a grid that is re-run or extended only
trains what is new) followed by ``pipeline.evaluate``'s protocol on the test split. Students distill the TAM
teacher of the same seed; the lightning student distills the teacher, the student and LA-Net of that seed. A
variant that fails (missing features, a config error) is reported in the table and the grid goes on; the exit
code is then 1. Writes ``grid.json`` and ``grid.md``: AUC and AP, mean ± sample std over the seeds. The "methods"
rows that are a method with its defaults come from the method registry (``pipeline.methods``), a method registered
at run time included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline import api, methods
from pipeline import defaults as d
from pipeline.defaults import GRID_TABLES
from pipeline.errors import UserError

TEMPORAL_VARIANTS = ("tam", "disentangled", "mha", "lstm", "gru", "rnn", "cnn1d")  # the paper's Table 1
ATTENTION_TERMS = ("self_c2c", "cross_c2c", "c2p", "p2c")  # Table 5: each term alone
TABLES = GRID_TABLES
TEACHER = "teacher"  # the TAM teacher variant every student distills


@dataclass(frozen=True)
class GridSettings:
    """What every variant of one grid shares: the store and dataset, the seeds ``seed .. seed + seeds - 1``, and the
    options passed to every :func:`pipeline.api.train` (``overrides``: SECTION.KEY=VALUE for every variant)."""

    store: str
    dataset: str
    seed: int = 0
    seeds: int = d.GRID_SEEDS
    device: str = d.DEFAULT_DEVICE
    epochs: int | None = None
    overrides: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()
    teacher_backbones: str = ",".join(d.STAGE_BACKBONES["teacher"])
    student_backbone: str = d.STAGE_BACKBONES["student"][0]


@dataclass(frozen=True)
class Variant:
    name: str
    table: str
    description: str
    stage: str
    backbones: str  # "teacher" | "student": the grid's teacher or student backbones; else literal
    overrides: tuple[str, ...] = ()  # SECTION.KEY=VALUE
    teachers: tuple[str, ...] = ()  # variants whose runs of the same seed this one distills


def method_variant(name: str, backbones: str, teachers: tuple[str, ...] = (),
                   description: str | None = None) -> Variant:
    """A "methods" row that is just the method ``name`` (``pipeline.methods``) with its defaults: its stage and
    (unless given) its description come from the method registry."""
    return Variant(name, "methods", description or methods.get(name).description, name, backbones,
                   teachers=teachers)


def registered_variants(taken: set[str]) -> list[Variant]:
    """A "methods" row for each registered method the grid has no row of (a method added at run time), on its
    default backbones: those that need no teacher, or one run of the TAM teacher."""
    out = []
    for name, row in methods.REGISTRY.items():
        if name in taken or (row.teachers != methods.NO_TEACHER and row.teacher_stage != TEACHER):
            continue
        out.append(method_variant(name, ",".join(row.backbones), (TEACHER,) if row.teacher_stage else ()))
    return out


def variants() -> list[Variant]:
    """Every variant the grid knows, in table order."""
    out = [
        Variant("sultani", "methods", "Sultani et al. MIL MLP (baseline)", "teacher", "student",
                ("model.temporal=none", "model.projection=false")),
        method_variant(TEACHER, "teacher"),
        method_variant("student", "student", (TEACHER,)),
        method_variant("lanet", "student"),
        method_variant("lightning", ",".join(methods.get("lightning").backbones), (TEACHER, "student", "lanet"),
                       "lightning student (adversarial, 3 teachers)"),
    ]
    out += registered_variants({v.name for v in out} | {f"temporal-{m}" for m in TEMPORAL_VARIANTS})
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
    cached: set[int] = field(default_factory=set)  # seeds whose run and evaluation were both in the store already


def train_kwargs(v: Variant, seed: int, grid: GridSettings, teacher_runs: list[str]) -> dict:
    """The :func:`pipeline.api.train` keywords of one variant and seed."""
    kwargs = dict(store=grid.store, dataset=grid.dataset, seed=seed, device=grid.device, epochs=grid.epochs or None,
                  overrides=[*v.overrides, *grid.overrides],  # each stage reads only its own sections (pipeline.config)
                  fingerprints=list(grid.fingerprints))
    method = methods.get(v.stage)
    if not method.fixed_backbones:
        backbones = {"teacher": grid.teacher_backbones, "student": grid.student_backbone}
        kwargs["backbones"] = backbones.get(v.backbones, v.backbones)
    if method.teachers == methods.ONE_TEACHER:
        kwargs["teacher"] = teacher_runs[0]
    if method.teachers == methods.SEVERAL_TEACHERS:
        kwargs["teachers"] = teacher_runs
    return kwargs


def run_cell(cell: Cell, seed: int, grid: GridSettings, cells: dict[str, Cell]) -> None:
    """Train (or find) and evaluate one variant for one seed; a failure is recorded on the cell."""
    v = cell.variant
    missing = [t for t in v.teachers if seed not in cells[t].runs]
    if missing:
        cell.errors[seed] = f"needs the {', '.join(missing)} run of seed {seed}, which failed"
        return
    try:
        runs = api.train(v.stage, **train_kwargs(v, seed, grid, [cells[t].runs[seed] for t in v.teachers]))
        metrics = api.evaluate(runs[0], store=grid.store, dataset=grid.dataset, device=grid.device,
                               video_plots=False)[0]
    except UserError as exc:
        cell.errors[seed] = str(exc)
        return
    cell.runs[seed] = runs[0].key
    cell.metrics[seed] = metrics.values
    if runs[0].cached and metrics.cached:
        cell.cached.add(seed)


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
