"""``dakd``: one command for every stage (``dakd extract | train | evaluate | detect | calibrate | watch | export |
store | import | grid | fetch | demo``).

    dakd --help                  # the subcommands
    dakd extract VIDEOS --store S --backbones i3d,effnet_lite0
    dakd train teacher --store S --dataset ucf-crime --json

``dakd COMMAND ARGS`` is ``python -m pipeline.<command> ARGS``: the same parser (:mod:`pipeline.cli.commands`). The
command's module is imported only after the arguments parsed, so ``--help`` never loads torch. Each command module
of this package has ``add_arguments(parser)``, ``run(args) -> int`` (parse -> :mod:`pipeline.api` call -> print) and
``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import sys

from pipeline.cli.commands import ALIASES, COMMANDS, dakd_parser


def main(argv: list[str] | None = None) -> int:
    args = dakd_parser().parse_args(argv)
    command = ALIASES.get(args.command, args.command)
    return importlib.import_module(COMMANDS[command].module).run(args)


if __name__ == "__main__":
    sys.exit(main())
