"""The table of ``dakd``'s commands and the parsers built from it, without importing torch, torchvision or sklearn,
so that ``dakd --help`` and ``dakd COMMAND --help`` answer at once (``benchmarks/startup.py`` measures it).

Each row names the command's module in this package; that module declares the command's flags once
(``add_arguments``) and runs it (``run``). ``python -m pipeline.<package>`` (``pipeline/<package>/__main__.py``) builds
the same parser with :func:`stage_parser`.
"""

from __future__ import annotations

import argparse
import importlib
from typing import NamedTuple

from pipeline import defaults as d
from pipeline.cli.parser import FLAGS_ATTRIBUTE, Parser, flag_map


class Command(NamedTuple):
    """One ``dakd`` command: its module (``pipeline.cli.<name>``), the package ``python -m`` runs it as, its help."""

    module: str
    package: str
    summary: str


# The order is the order of ``dakd --help``.
COMMANDS: dict[str, Command] = {
    "extract": Command("pipeline.cli.extract", "pipeline.extract",
                       "stage 1: videos -> per-snippet backbone features in the store"),
    "train": Command("pipeline.cli.train", "pipeline.train",
                     "stages 2-3: train the teacher, distill a student, LA-Net, the lightning student"),
    "evaluate": Command("pipeline.cli.evaluate", "pipeline.evaluate",
                        "stage 4: frame-level metrics of runs on the test split"),
    "detect": Command("pipeline.cli.detect", "pipeline.detect",
                      "score new videos with a trained run (or an ONNX export)"),
    "calibrate": Command("pipeline.cli.calibrate", "pipeline.calibrate",
                         "the threshold of a target false-alarm rate on normal footage"),
    "watch": Command("pipeline.cli.watch", "pipeline.watch",
                     "score live camera streams as they arrive and raise alerts"),
    "export": Command("pipeline.cli.export", "pipeline.export", "a single-backbone run as ONNX graphs + TorchScript"),
    "store": Command("pipeline.cli.store", "pipeline.store",
                     "what a store holds; verify its files; repair its manifest"),
    "import": Command("pipeline.cli.import_features", "pipeline.import_features",
                      "community .npy feature lists into the store"),
    "grid": Command("pipeline.cli.grid", "pipeline.grid",
                    "baselines and ablations: train and evaluate a grid of variants"),
    "fetch": Command("pipeline.cli.fetch", "pipeline.fetch",
                     "set-up: real weights and sample footage into the user cache"),
    "demo": Command("pipeline.cli.demo", "pipeline.demo", "the whole chain on synthetic videos with real weights"),
    "synthetic": Command("pipeline.cli.synthetic", "data.synthetic",
                         "a synthetic surveillance dataset with known anomalies (videos + labels)"),
    "convert-i3d": Command("pipeline.cli.convert_i3d", "pipeline.cli.convert_i3d",
                           "DeepMind's I3D checkpoint -> the project's weights file (offline set-up)"),
}
ALIASES = {"import-features": "import"}  # the Docker entrypoint's names of before


def _description(summary: str) -> str:
    return f"{summary[0].upper()}{summary[1:]}. Exit codes: 0 ok, 1 some inputs failed, 2 user error."


def _add_arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The command's flags, and their map (dest -> flag) in the parsed namespace, for the error lines."""
    importlib.import_module(COMMANDS[command].module).add_arguments(p)
    p.set_defaults(**{FLAGS_ATTRIBUTE: flag_map(p)})


def stage_parser(command: str) -> argparse.ArgumentParser:
    """The parser of ``python -m pipeline.<package>`` for ``command`` (a key of :data:`COMMANDS`)."""
    row = COMMANDS[command]
    p = Parser(prog=f"python -m {row.package}", description=_description(row.summary))
    _add_arguments(command, p)
    return p


def dakd_parser() -> argparse.ArgumentParser:
    """``dakd COMMAND ...``: one subcommand per row of :data:`COMMANDS`, with the arguments of its module."""
    p = Parser(
        prog="dakd", description="Weakly-supervised video anomaly detection: extract -> train -> evaluate -> detect. "
        f"Every subcommand takes --quiet, --verbose and --json; --store defaults to ${d.STORE_ENV}. Exit codes: 0 "
        "ok, 1 some inputs failed, 2 user error.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command, row in COMMANDS.items():
        aliases = [a for a, target in ALIASES.items() if target == command]
        _add_arguments(command, sub.add_parser(command, aliases=aliases, help=row.summary,
                                               description=_description(row.summary)))
    return p
