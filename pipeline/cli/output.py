"""What every command prints and how it exits: the human-readable lines, the ``--json`` summary, the ``error:``
line and the per-input ``FAILED`` lines. Exit codes everywhere: 0 ok, 1 some inputs failed, 2 a user error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline.defaults import EXIT_USER_ERROR

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
