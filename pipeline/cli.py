"""``dakd``: one command for every stage (``dakd extract | train | evaluate | detect | export | store | import |
grid | fetch | demo``), and the few helpers every stage's command line shares.

    dakd --help                  # the subcommands
    dakd extract VIDEOS --store S --backbones i3d,effnet_lite0
    dakd train teacher --store S --dataset ucf-crime --json

``dakd STAGE ARGS`` is ``python -m pipeline.<module> ARGS`` (the same parser, :mod:`pipeline.parsers`); the stage
module is imported only after the arguments parsed, so ``--help`` never loads torch. Each stage module has
``run(args) -> int`` (the command: parse -> :mod:`pipeline.api` call -> print) and ``main(argv) -> int``.
Exit codes everywhere: 0 ok, 1 some inputs failed, 2 a user error (one ``error: ...`` line on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from pipeline.defaults import EXIT_USER_ERROR
from pipeline.parsers import ALIASES, STAGES, dakd_parser

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging(args: argparse.Namespace) -> None:
    """WARNING by default, INFO with ``--verbose``."""
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format=LOG_FORMAT)


def say(args: argparse.Namespace, line: str) -> None:
    """A human-readable result line: stdout, or stderr under ``--json`` (stdout then holds the JSON alone)."""
    print(line, file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)


def emit_json(args: argparse.Namespace, summary) -> None:
    """Under ``--json``: the machine-readable summary on stdout."""
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2, default=str))


def error(message: object, suffix: str = "") -> int:
    """``error: MESSAGE`` on stderr; returns the user-error exit code (2)."""
    print(f"error: {message}{suffix}", file=sys.stderr)
    return EXIT_USER_ERROR


def print_failures(failures) -> None:
    """One ``FAILED path: reason (fix)`` line per failed input on stderr, as every stage reports them;
    ``failures``: (path, reason, fix) tuples or :class:`pipeline.api.Failure`."""
    for item in failures:
        path, reason, fix = (item.path, item.reason, item.fix) if hasattr(item, "path") else item
        print(f"  FAILED {path}: {reason}" + (f" ({fix})" if fix else ""), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = dakd_parser().parse_args(argv)
    stage = ALIASES.get(args.command, args.command)
    module = importlib.import_module(STAGES[stage][0])
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
