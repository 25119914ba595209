"""What every command prints and how it exits: the human-readable lines, the ``--json`` summary, the ``error:``
line and the per-input ``FAILED`` lines. Exit codes everywhere: 0 ok, 1 some inputs failed, 2 a user error.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys

from pipeline.cli.parser import FLAGS_ATTRIBUTE
from pipeline.defaults import EXIT_USER_ERROR

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
QUOTED_PARAMETER = re.compile(r"`(\w+)`")  # how an API message names a parameter


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


def error(message: object, suffix: str = "", *, args: argparse.Namespace | None = None) -> int:
    """``error: MESSAGE`` on stderr; returns the user-error exit code (2). An API error that names parameters
    (``UsageError.parameters``, ``batch_size``) is shown with the flags the person typed (``--batch-size``), from
    the parsed ``args``' flag map (:func:`pipeline.cli.parser.flag_map`)."""
    print(f"error: {as_flags(message, args)}{suffix}", file=sys.stderr)
    return EXIT_USER_ERROR


def warn(args: argparse.Namespace, message: object) -> None:
    """``warning: MESSAGE`` on stderr, parameters shown as flags (:func:`as_flags`)."""
    print(f"warning: {as_flags(message, args)}", file=sys.stderr)


def as_flags(message: object, args: argparse.Namespace | None) -> str:
    """``message`` with each parameter it quotes shown as its flag, where the command has one (```batch_size` must
    be at least 1`` -> ``--batch-size must be at least 1``; :class:`pipeline.errors.UserError`)."""
    flags = getattr(args, FLAGS_ATTRIBUTE, None) or {}
    return QUOTED_PARAMETER.sub(lambda m: flags.get(m.group(1), m.group(0)), str(message))


def print_failures(failures, args: argparse.Namespace | None = None) -> None:
    """One ``FAILED path: reason (fix)`` line per failed input on stderr (:meth:`pipeline.api.Failure.line`), as
    every command reports them, parameters shown as flags; ``failures``: (path, reason, fix) tuples or
    :class:`pipeline.api.Failure`."""
    from pipeline.api import Failure

    for item in failures:
        failure = item if isinstance(item, Failure) else Failure(*item)
        print(f"  {as_flags(failure.line(), args)}", file=sys.stderr)
