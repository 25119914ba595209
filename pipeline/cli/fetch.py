"""``dakd fetch [--skip-footage]``: the real weights and sample footage into the user cache (the work:
:mod:`pipeline.fetch.fetcher`)."""

from __future__ import annotations

import argparse
import sys

from data.assets import AssetError
from data.cache import cache_dir
from extractors.weights import WeightsNotFound
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, say
from pipeline.cli.parser import add_common
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.fetch.fetcher import fetch_all


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd fetch``."""
    p.add_argument("--skip-footage", action="store_true", help="weights only, no sample video")
    add_common(p, json_help="print what was fetched (name -> local path) as JSON on stdout")


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("fetch")


def run(args: argparse.Namespace) -> int:
    """The command: :func:`fetch_all`, one line per item (none with --quiet), then where they are."""
    configure_logging(args)
    try:
        quiet = args.quiet or args.json
        got = fetch_all(footage=not args.skip_footage,
                        report=None if quiet else lambda line: print(line, flush=True))
    except (WeightsNotFound, AssetError, RuntimeError, OSError) as exc:  # a download that failed: nothing to fix here
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    say(args, f"fetch: {len(got)} items ready in {cache_dir()}")
    emit_json(args, got)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
