"""``dakd export RUN --store DIR [--out DIR] [--weights NAME=PATH] [--frame-size WxH] [--max-snippets N]``: a
single-backbone run as ONNX graphs + TorchScript (the work: :mod:`pipeline.export.exporter`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import api
from pipeline import defaults as d
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, say
from pipeline.cli.parser import add_common, add_store, call_api
from pipeline.detect.onnx_scorer import BACKBONE_ONNX, EXPORT_JSON, HEAD_ONNX, TORCHSCRIPT_FILE
from pipeline.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd export``."""
    p.add_argument("run", help="run key prefix (6+ characters) or run folder")
    add_store(p, "the store holding the run")
    p.add_argument("--out", help="output folder (default: <run folder>/export)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file of the backbone, as for extract")
    p.add_argument("--frame-size", metavar="WIDTHxHEIGHT",
                   help="frame size of the videos to score, for a backbone that takes the whole frame (view full): "
                        "the graph is traced for it (default: the size of most of the run's training videos)")
    p.add_argument("--max-snippets", type=int, default=d.DEFAULT_MAX_SNIPPETS,
                   help="longest video (in snippets) the export accepts; the head's attention holds heads x T^2 "
                        f"floats per map (default: {d.DEFAULT_MAX_SNIPPETS})")
    add_common(p, json_help="print export.json's content (files, check, tolerance) as JSON on stdout")


def summary_line(run_key: str, backbone: str, out: Path, info: dict) -> str:
    """The command's one line: what was written where, the length range (a spatial run's: its maps' grid), and the
    check's largest differences (of the scores and maps)."""
    diffs, files = info["max_abs_diff"], ", ".join((TORCHSCRIPT_FILE, BACKBONE_ONNX, HEAD_ONNX, EXPORT_JSON))
    maps = f"; scores and {info['grid'][0]}x{info['grid'][1]} maps" if info.get("grid") else ""
    what = "score and map" if maps else "score"
    return (f"export: run {run_key[:12]} ({backbone}) -> {out}: {files}; T in [1, {info['T_range'][1]}]{maps}; "
            f"checked on {len(info['check'])} inputs, max |{what} - eager| torchscript {diffs['torchscript']:.2g}, "
            f"onnx {diffs['onnx']:.2g} (tolerance {info['tolerance']['max_abs_diff_scores']:g})")


def parse_frame_size(text: str | None) -> tuple[int, int] | None:
    """``"238x158"`` -> (238, 158); None stays None. Raises UserError."""
    if text is None:
        return None
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise UserError(f"--frame-size takes WIDTHxHEIGHT in pixels (e.g. 238x158), got {text!r}")
    return int(width), int(height)


def run(args: argparse.Namespace) -> int:
    """The command: flags -> :func:`pipeline.api.export` -> one summary line."""
    configure_logging(args)
    try:
        result = call_api(api.export, args, frame_size=parse_frame_size(args.frame_size))
    except UserError as exc:
        return error(exc, args=args)
    say(args, summary_line(result.run, result.backbone, result.out, result.info))
    emit_json(args, {"run": result.run, "out": str(result.out), **result.info})
    return 0


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("export")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
