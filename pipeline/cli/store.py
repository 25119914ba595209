"""``python -m pipeline.store`` (``dakd store``): list what a store holds (features, runs, failures), or
``--verify`` / ``--repair`` it; ``main(argv)`` returns the exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys

from pipeline.cli.parser import add_common, add_store
from pipeline.errors import UserError
from pipeline.store.manifest import FeatureStore, open_store
from pipeline.store.repair import repair_store

_RUN_SUMMARY_KEYS = ("best_epoch", "val_video_auc", "auc", "ap")  # what `--runs` shows of each run's metrics


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd store``."""
    p.add_argument("store_positional", nargs="?", metavar="STORE_DIR",
                   help="the store folder, positionally (the spelling of before; --store is the same)")
    add_store(p, "the store folder", required=False)
    p.add_argument("--backbone", help="only this backbone's features")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--failures", action="store_true", help="list recorded failures instead of features")
    what.add_argument("--runs", action="store_true", help="list training and evaluation runs instead of features")
    what.add_argument("--verify", action="store_true",
                      help="hash every feature file against the hash recorded at write; each damaged one is named and "
                           "marked missing, so the next extract recomputes it (exit 1 if any)")
    what.add_argument("--repair", action="store_true",
                      help="rebuild a damaged manifest.sqlite from the store's files (feature sidecars, run "
                           "folders), after moving it aside as manifest.sqlite.damaged-<time>")
    add_common(p, json_help="machine-readable output")


def _print_repair(report: dict, root: str) -> None:
    if not report["repaired"]:
        print(f"repair: {report['manifest']} needs no repair ({report['why']}); nothing changed")
        return
    moved = ", ".join(report["moved"]) or "nothing (it was missing)"
    print(f"repair: the manifest was damaged ({report['why']}); moved aside: {moved}. Rebuilt {report['manifest']} "
          f"from the store's files: {report['features']} features, {report['runs']} runs (the failure log and the "
          "memo of video paths start empty)")
    for reason in report["not_indexed"]:
        print(f"  NOT INDEXED {reason}", file=sys.stderr)
    if report["not_indexed"]:
        print(f"  {len(report['not_indexed'])} feature files could not be re-indexed: they count as missing; "
              f"dakd extract ... --store {root} recomputes them", file=sys.stderr)


def _print_verify(report: dict, root: str) -> None:
    for d in report["damaged"]:
        print(f"  DAMAGED {d['backbone']:<13} {d['video']}  {d['file']}: {d['reason']}", file=sys.stderr)
    hashed = f"; {report['hashed']} hashes recorded for files written before hashes were" if report["hashed"] else ""
    orphans = (f"; {report['orphans']} feature files have no manifest row (a write interrupted before its row, or "
               "an older extraction: dakd store --repair re-indexes them)") if report["orphans"] else ""
    print(f"verify: {report['checked']} feature files checked, {len(report['damaged'])} damaged{hashed}{orphans}")
    if report["damaged"]:
        print(f"  the damaged files count as missing from now on: {report['damaged'][0]['fix']}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from pipeline.cli.commands import stage_parser

    return stage_parser("store")


def run(args: argparse.Namespace) -> int:
    """The command: list, ``--verify`` or ``--repair`` the store given by ``--store`` (or positionally)."""
    from pipeline.cli.output import configure_logging, error

    configure_logging(args)
    if args.store_positional and args.store and args.store_positional != args.store and not _from_env(args):
        return error(f"two stores given: {args.store_positional} and --store {args.store}; pass one")
    args.store = args.store_positional or args.store
    if not args.store:
        return error("pass the store: --store DIR (or set $DAKD_STORE)")
    try:
        if args.repair:
            report = repair_store(args.store)
            print(json.dumps(report, indent=2)) if args.json else _print_repair(report, args.store)
            return 0
        store = open_store(args.store, create=False)
        try:
            if args.verify:
                report = store.verify(progress=not args.quiet and not args.json)
                print(json.dumps(report, indent=2)) if args.json else _print_verify(report, args.store)
                return 1 if report["damaged"] else 0
            return _list(store, args)
        finally:
            store.close()
    except UserError as exc:
        return error(exc, args=args)


def _from_env(args: argparse.Namespace) -> bool:
    """``--store`` came from ``$DAKD_STORE``, not the command line: the positional store then wins."""
    return args.store == os.environ.get("DAKD_STORE")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def _list(store: FeatureStore, args: argparse.Namespace) -> int:
    """The listing: features (each checked cheaply: damaged ones are flagged), runs or failures."""
    rows = store.failures() if args.failures else store.runs() if args.runs else store.features(args.backbone)
    damaged = 0
    if not (args.failures or args.runs):
        for r in rows:
            if r["damage"] is None and store.get_feature(r["key"]) is None:
                r["damage"] = store.feature_damage(r["key"]) or "damaged"
            damaged += r["damage"] is not None
    if args.json:
        print(json.dumps({"summary": store.summary(), "rows": rows}, indent=2))
        return 1 if damaged else 0
    s = store.summary()
    mode = " (read-only)" if s["readonly"] else ""
    print(f"{s['store']}{mode}: {s['videos']} videos, features {s['features'] or '{}'}, {s['failures']} failures "
          "logged")
    for r in rows:
        if args.runs:
            summary = json.loads(r["summary"])
            shown = " ".join(f"{k}={summary[k]:.4f}" if isinstance(summary[k], float) else f"{k}={summary[k]}"
                             for k in _RUN_SUMMARY_KEYS if summary.get(k) is not None)
            print(f"  {r['stage']:<9} {r['key'][:12]}  {r['status']:<8} seed {r['seed']:<3} {r['backbones']:<20} "
                  f"{shown}  ({r['dataset']})")
        elif args.failures:
            print(f"  [{r['stage']}] {r['path']}: {r['reason']}" + (f" ({r['fix']})" if r["fix"] else ""))
        else:
            flag = f"  DAMAGED ({r['damage']})" if r["damage"] else ""
            axis = f"grid={r['grid']:<5}" if r.get("grid") else f"crops={r['crops']:<2}"
            print(f"  {r['backbone']:<13} T={r['n_snippets']:<5} {axis} D={r['dim']:<5} "
                  f"{r['first_path']}  {r['file']}{flag}")
    if damaged:
        print(f"warning: {damaged} feature files are damaged: they count as missing and are never used; "
              f"dakd extract ... --store {store.root} recomputes them", file=sys.stderr)
    return 1 if damaged else 0
