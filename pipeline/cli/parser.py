"""What every command's parser shares: the parser class (no abbreviations, "did you mean"), the options every command
has, and :func:`call_api`, the flags handed to the API by name. Nothing here imports torch, torchvision or sklearn,
so that ``dakd --help`` and ``dakd COMMAND --help`` answer at once (``benchmarks/startup.py`` measures it).

One vocabulary for every subcommand (README "Command line"):

- ``--store DIR`` is an option everywhere a store is used, its default ``$DAKD_STORE`` (``pipeline.store`` also
  takes the store positionally, the spelling of before);
- ``--quiet`` (no progress bars), ``--verbose`` (log the library's INFO messages), ``--json`` (a machine-readable
  summary on stdout; the human-readable lines then go to stderr) on every subcommand;
- ``NAME=VALUE`` options (``--weights``, ``--fingerprint``, ``--view``, ``--set``) go through
  :func:`pipeline.pairs.parse_pairs`, in the API;
- a flag taking one backbone is ``--backbone``, several ``--backbones`` (comma-separated); a qualified list keeps
  the qualifier (``grid --teacher-backbones``, ``--student-backbone``);
- exit codes: 0 ok, 1 some inputs of a batch failed, 2 a user error (:mod:`pipeline.defaults`).

Renamed flags keep their old spelling as an alias: ``extract --clip-frames`` is ``--frames-per-snippet`` (it drives
every image backbone, effnet_lite0 as well as clip).

Each command module declares its own flags (``add_arguments``); :mod:`pipeline.cli.commands` builds the parsers
from them. The defaults come from :mod:`pipeline.defaults`, the registries and ``data.decode``, which import numpy
at most.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable

from data.datasets import registry as dataset_registry
from data.watchdog import DECODE_STALL_TIMEOUT_S
from pipeline import defaults as d

DEVICE_HELP = "auto (CUDA when present), cpu, cuda, cuda:1, ... (default: auto)"


def dataset_help() -> str:
    """What ``--dataset`` takes, from the dataset registry (read when a parser is built, so a dataset registered
    before shows): ``ucf-crime | ... | avenue | a labels CSV | ...``."""
    return dataset_registry.spec_forms()


# -- the parser class: no abbreviations, "did you mean" -------------------------------------------------------
SUGGEST_CUTOFF = 0.7  # difflib similarity an option or command must reach to be suggested (--bogus is no --verbose)
_NUMBER = re.compile(r"^-\d+(\.\d*)?$|^-\.\d+$")  # "-1", "-0.5": values, not flags


class Parser(argparse.ArgumentParser):
    """Every parser of the command line: abbreviations refused (``allow_abbrev=False``: ``--stor`` is not taken
    for ``--store``), and an unknown flag answered with the usage of the (sub)command that was given it and a
    "did you mean --X?" from that command's own options (exit code 2, as argparse)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)  # what error() looks through for unknown flags
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse would name them under the top-level usage: name them under the subcommand's
            self._chosen_subparser(namespace).error(_unrecognized(extras, self._chosen_subparser(namespace)))
        return namespace

    def error(self, message: str):
        if self._subparsers_action() is None:  # a leaf: flags it does not know are the likely cause of any error
            unknown = self.unknown_flags(self._argv)
            if unknown:
                message = _unrecognized(unknown, self)
        elif (m := re.search(r"invalid choice: '([^']*)'", message)) and (close := difflib.get_close_matches(
                m.group(1), list(self._subparsers_action().choices), n=1, cutoff=SUGGEST_CUTOFF)):
            message = f"{message}; did you mean {close[0]}?"
        super().error(message)

    def option_strings(self) -> list[str]:
        """This parser's long and short option strings (``--store``, ``-h``, ...)."""
        return list(self._option_string_actions)

    def unknown_flags(self, argv: Iterable[str]) -> list[str]:
        """The flag-like tokens of ``argv`` (before a ``--``) that are none of this parser's options."""
        unknown = []
        for token in argv:
            if token == "--":
                break
            if token.startswith("-") and len(token) > 1 and not _NUMBER.match(token):
                name = token.split("=", 1)[0]
                if name not in self._option_string_actions:
                    unknown.append(name)
        return unknown

    def suggest(self, flag: str) -> str | None:
        """The closest of this parser's long options to ``flag``, or None."""
        longs = [o for o in self._option_string_actions if o.startswith("--")]
        close = difflib.get_close_matches(flag, longs, n=1, cutoff=SUGGEST_CUTOFF)
        return close[0] if close else None

    def _subparsers_action(self) -> argparse._SubParsersAction | None:
        return next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)

    def _chosen_subparser(self, namespace: argparse.Namespace) -> argparse.ArgumentParser:
        action = self._subparsers_action()
        chosen = getattr(namespace, action.dest, None) if action is not None else None
        return action.choices[chosen] if chosen in (action.choices if action is not None else {}) else self


def _unrecognized(tokens: list[str], parser: argparse.ArgumentParser) -> str:
    """``unrecognized arguments: --stor (did you mean --store?)``."""
    hints = []
    for token in tokens:
        name = token.split("=", 1)[0]
        if name in parser._option_string_actions:  # a flag of the subcommand, given before it (dakd --json extract)
            hints.append(f"{name} goes after the command")
            continue
        close = parser.suggest(name) if isinstance(parser, Parser) and name.startswith("-") else None
        if close and close != name:
            hints.append(f"did you mean {close}?" if len(tokens) == 1 else f"{name}: did you mean {close}?")
    return f"unrecognized arguments: {' '.join(tokens)}" + (f" ({'; '.join(hints)})" if hints else "")


# -- the options every subcommand shares -----------------------------------------------------------------------
def add_store(p: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    """``--store DIR``, default ``$DAKD_STORE``; required (when that is unset) unless ``required`` is False."""
    env = os.environ.get(d.STORE_ENV) or None
    p.add_argument("--store", default=env, required=required and env is None, metavar="STORE",
                   help=f"{help} (default: ${d.STORE_ENV}" + (f", now {env})" if env else ", unset)"))


def add_common(p: argparse.ArgumentParser, *, json_help: str = "print a machine-readable summary (JSON) on "
               "stdout; the other lines go to stderr") -> None:
    """``--quiet``, ``--verbose``, ``--json``: on every subcommand."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose", action="store_true", help="log the library's progress messages (INFO) on stderr")
    p.add_argument("--json", action="store_true", help=json_help)


def add_decode_timeout(p: argparse.ArgumentParser) -> None:
    """``--decode-timeout``: extract and detect share it."""
    p.add_argument("--decode-timeout", dest="decode_timeout_s", type=float, default=DECODE_STALL_TIMEOUT_S,
                   metavar="SECONDS",
                   help="a video whose decoding makes no progress (no snippet) for this long fails by name and the "
                        f"others go on (default: {DECODE_STALL_TIMEOUT_S:g})")


def add_offline_smoothing(p: argparse.ArgumentParser) -> None:
    """``--smoothing``: detect smooths the scores it marks, calibrate the offline scores it chooses a threshold on,
    by the same rule (``pipeline.detect.detector.smooth_scores``)."""
    p.add_argument("--smoothing", type=int, default=d.DETECT_SMOOTHING_SNIPPETS, metavar="N",
                   help="smooth each video's snippet scores by a centred moving mean over N snippets, N odd, before "
                        "events are marked (detect) or the offline threshold is chosen (calibrate); live scores "
                        f"are never smoothed (default: {d.DETECT_SMOOTHING_SNIPPETS}; 1: the model's own scores)")


def add_hysteresis(p: argparse.ArgumentParser) -> None:
    """``--open-after``, ``--close-after``: the alert rule (``pipeline.alert_rule``) that detect, calibrate and
    watch share; :func:`alert_rule` builds it from them."""
    from pipeline.alert_rule import CLOSE_AFTER, OPEN_AFTER  # numpy only, as data.decode

    p.add_argument("--open-after", type=int, default=OPEN_AFTER,
                   help=f"snippets at or above the threshold in a row that open an event (default: {OPEN_AFTER})")
    p.add_argument("--close-after", type=int, default=CLOSE_AFTER,
                   help=f"snippets below it in a row that close one (default: {CLOSE_AFTER})")


RULE_FLAGS = ("threshold", "open_after", "close_after")  # the flags alert_rule() turns into one AlertRule


def alert_rule(args: argparse.Namespace):
    """The :class:`pipeline.alert_rule.AlertRule` of ``--threshold`` (absent or None: the calibrated one),
    ``--open-after`` and ``--close-after``. Raises UsageError naming the flags."""
    from pipeline.errors import UsageError
    from pipeline.alert_rule import AlertRule

    try:
        return AlertRule(getattr(args, "threshold", None), args.open_after, args.close_after)
    except ValueError as exc:
        flags = "--threshold, --open-after and" if hasattr(args, "threshold") else "--open-after and"
        raise UsageError(f"{flags} --close-after make no alert rule: {exc}") from None


def add_live_scoring(p: argparse.ArgumentParser, window_help: str) -> None:
    """The hysteresis (:func:`add_hysteresis`) and ``--window``: calibrate and watch share them."""
    add_hysteresis(p)
    p.add_argument("--window", type=int, help=window_help)




# -- flags -> the API: derived, never written out -----------------------------------------------------------------
# Flags every command has that are the command line's own (how it prints), never an API parameter.
OUTPUT_FLAGS = ("quiet", "verbose", "json", "help")
FLAGS_ATTRIBUTE = "_flags"  # the parsed namespace's dest -> flag map, set by flag_map(), read by output.error()


def flag_map(p: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> what a person types for it: the first long option (``batch_size`` -> ``--batch-size``), or a
    positional's name in capitals (``paths`` -> ``PATHS``)."""
    out = {}
    for action in p._actions:
        if action.dest in (argparse.SUPPRESS, "help"):
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        out[action.dest] = longs[0] if longs else (action.metavar or action.dest.upper())
    return out


def parameters(function: Callable, *forwarded_to: Callable) -> list[str]:
    """The keyword parameters of ``function``, and of the functions its ``**kwargs`` are passed on to."""
    names = []
    for f in (function, *forwarded_to):
        names += [n for n, p in inspect.signature(f).parameters.items()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return names


def call_api(function: Callable, args: argparse.Namespace, *forwarded_to: Callable, **given):
    """``function(**kwargs)``: every parameter of ``function`` (and of ``forwarded_to``, where its ``**kwargs``
    go) that the parsed flags hold under the same name, plus ``given`` (what the command computes itself, e.g.
    ``progress=not args.quiet``). A flag's ``dest`` is the API parameter's name, so the one place a flag is declared
    (its command's ``add_arguments``) is also its mapping onto the API (tests/pipeline/test_cli.py checks every flag
    has a parameter)."""
    kwargs = {name: getattr(args, name) for name in parameters(function, *forwarded_to)
              if hasattr(args, name) and name not in given}
    return function(**kwargs, **given)
