"""``dakd import LIST [LIST ...] --backbone NAME --store DIR [--root DIR] [--source LABEL] [--force]``: community
.npy feature lists into the store (the work: :mod:`pipeline.import_features.importer`)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, print_failures, say
from pipeline.cli.parser import add_common, add_store
from pipeline.errors import UserError
from pipeline.import_features.importer import BACKBONE_NAME, import_lists
from pipeline.store import open_store


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd import``."""
    p.add_argument("lists", nargs="+", metavar="LIST",
                   help="feature lists: one .npy path per line, or a VadCLIP 'path,label' CSV")
    p.add_argument("--backbone", required=True,
                   help="backbone name to file the features under (e.g. i3d, clip); a folder name in the store")
    add_store(p, "feature store folder (created if missing)")
    p.add_argument("--root", help="folder holding the downloaded .npy files; each listed file is looked up "
                                  "below it by file name (the lists carry the authors' paths)")
    p.add_argument("--source", help="label of where the features came from; enters the fingerprint "
                                    "(default: the first list's file name without its extension and the "
                                    "train/test words, so a release's train and test lists agree: "
                                    "ucf-i3d-test.list -> ucf-i3d)")
    p.add_argument("--force", action="store_true", help="import again features that are already stored")
    add_common(p)


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("import")


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The command: lists -> :func:`import_lists` -> one summary line (and the failures)."""
    configure_logging(args)
    if not BACKBONE_NAME.match(args.backbone):
        print(f"error: --backbone {args.backbone!r} must be letters, digits, '_', '.' or '-' (it names a folder "
              f"in the store), e.g. i3d", file=sys.stderr)
        return 2
    lists = [Path(p) for p in args.lists]
    missing = [str(p) for p in lists if not p.is_file()]
    if missing:
        print(f"error: feature list(s) not found: {', '.join(missing)} (pass the .list / .csv files that name "
              f"the .npy features)", file=sys.stderr)
        return 2
    root = Path(args.root) if args.root else None
    if root is not None and not root.is_dir():
        print(f"error: --root {root} is not a folder (pass the folder that holds the downloaded .npy files)",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        store = open_store(args.store, create=True, writes=True)
    except UserError as exc:  # a file, a damaged manifest, a read-only store
        return error(exc, args=args)
    try:
        outcome = import_lists(store, lists, args.backbone, root=root, source=args.source, force=args.force,
                               progress=not args.quiet)
    except UserError as exc:  # ShapeMismatch, or the store's faults (full disk, damaged manifest)
        return error(exc, args=args)
    finally:
        store.close()
    say(args, f"import: {outcome.imported} imported, {outcome.existing} already there, {len(outcome.failures)} failed "
          f"({args.backbone}, source {outcome.source!r}, fingerprint {outcome.fingerprint[:12]}, {len(lists)} "
          f"list(s), {time.perf_counter() - start:.1f} s); store {args.store}")
    print_failures(outcome.failures, args)
    emit_json(args, {"imported": outcome.imported, "existing": outcome.existing, "source": outcome.source,
                     "fingerprint": outcome.fingerprint, "backbone": args.backbone,
                     "failures": [{"path": w, "reason": r, "fix": f} for w, r, f in outcome.failures]})
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
