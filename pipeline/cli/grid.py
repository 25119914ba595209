"""``dakd grid --store DIR --dataset NAME [--seeds 5] [--tables ...] [--variants ...]``: baselines and ablations
(the work: :mod:`pipeline.grid.runner`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.datasets import load_dataset
from pipeline import defaults as d
from pipeline.atomic import atomic_write_json, atomic_write_text
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, say
from pipeline.cli.parser import DEVICE_HELP, add_common, add_store, call_api, dataset_help
from pipeline.errors import UserError
from pipeline.grid.runner import Cell, GridSettings, markdown, plan, run_cell, table_rows
from pipeline.store import open_store


# flags this module consumes itself: which variants to run (the plan) and where the table goes
OWN_FLAGS = ("tables", "variants", "out")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd grid``."""
    add_store(p, "the store with the dataset's features")
    p.add_argument("--dataset", required=True, help=dataset_help())
    p.add_argument("--seeds", type=int, default=d.GRID_SEEDS,
                   help=f"seeds per variant (default: {d.GRID_SEEDS}, as the paper reports)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--tables", default=",".join(d.GRID_TABLES),
                   help=f"comma-separated from {', '.join(d.GRID_TABLES)} (default: all)")
    p.add_argument("--variants", default="", help="extra variants by name (e.g. temporal-lstm); with --tables '' "
                                                  "only these")
    teacher = ",".join(d.STAGE_BACKBONES["teacher"])
    student = d.STAGE_BACKBONES["student"][0]
    p.add_argument("--teacher-backbones", default=teacher,
                   help=f"backbones of the teacher variants (default: {teacher})")
    p.add_argument("--student-backbone", default=student,
                   help=f"the single backbone of the students, Sultani's MLP and LA-Net (default: {student})")
    p.add_argument("--epochs", type=int, help="epochs of every run (default: each stage's config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a config override for every variant; each stage reads its own sections (repeatable)")
    p.add_argument("--fingerprint", dest="fingerprints", action="append", default=[], metavar="BACKBONE=PREFIX",
                   help="which stored extraction to use when the store holds several for a backbone")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--out", help="folder for grid.json and grid.md (default: <store>/grid)")
    add_common(p, json_help="print grid.json's rows on stdout")


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("grid")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args) -> int:
    """The command: every variant x seed through :func:`pipeline.api.train` and :func:`pipeline.api.evaluate`,
    then ``grid.md`` and ``grid.json``."""
    configure_logging(args)
    try:
        if args.seeds < 1:
            raise UserError("--seeds must be at least 1")
        tables = [t.strip() for t in args.tables.split(",") if t.strip()]
        names = [n.strip() for n in args.variants.split(",") if n.strip()]
        todo = plan(tables, names)
        if not todo:
            raise UserError("nothing to run: give --tables and/or --variants")
    except UserError as exc:
        return error(exc, args=args)
    grid = call_api(GridSettings, args)
    try:
        spec = load_dataset(args.dataset)
    except (ValueError, OSError) as exc:
        return error(exc, args=args)
    try:  # named up front: a file, no store, a damaged manifest, a read-only store
        open_store(args.store, create=False, writes=True).close()
    except UserError as exc:
        return error(exc, args=args)
    from pipeline.config import parse_assignments  # torch: after the store and the dataset are checked

    try:
        parse_assignments(args.overrides)  # a malformed --set fails here, not in every variant
    except UserError as exc:
        return error(exc, args=args)
    cells = {v.name: Cell(v) for v in todo}
    for v in todo:
        for seed in range(args.seed, args.seed + args.seeds):
            run_cell(cells[v.name], seed, grid, cells)
            cell = cells[v.name]
            state = (f"AUC {cell.metrics[seed]['auc']:.4f}" + (" (cached)" if seed in cell.cached else "")
                     if seed in cell.metrics else f"FAILED: {cell.errors[seed]}")
            say(args, f"grid: {v.name} seed {seed}: {state}")
    rows = table_rows(list(cells.values()))
    out = Path(args.out) if args.out else Path(args.store) / "grid"
    out.mkdir(parents=True, exist_ok=True)
    title = f"Baselines and ablations on {spec.name}"
    atomic_write_json(out / "grid.json", {"dataset": args.dataset, "seeds": args.seeds, "rows": rows})
    text = markdown(rows, title)
    atomic_write_text(out / "grid.md", text)
    say(args, text + f"\nwritten: {out / 'grid.md'}, {out / 'grid.json'}")
    emit_json(args, {"dataset": args.dataset, "seeds": args.seeds, "rows": rows})
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
