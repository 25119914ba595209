"""Stage 1: videos -> cached per-snippet backbone features.

    dakd extract PATH... --backbones i3d,s3d,clip --store DIR [--crops N] [--weights NAME=PATH]
                 [--device auto] [--batch-size 8] [--frames-per-snippet k] [--dataset NAME]
                 [--timeline constant|decoded]
                 [--engine local|ray [--address A] [--workers N] [--cpus-per-worker C]]
    (or python -m pipeline.extract ...; the arguments are in pipeline.parsers, the work in pipeline.api.extract)

The engine (claiming, decoding, batching, writing) is :mod:`pipeline.extraction`, shared with the Ray engine;
this module is its command line. Data flow: a producer hashes each video, skips what the store already holds,
locks what it will compute, and decodes 16-frame snippets (resized while decoding); the consumer batches
snippets across videos, runs every backbone that still needs them, and writes each video's features atomically
as soon as its last snippet is through. Memory is bounded by a batch plus the queue.

A backbone's features never depend on what it is extracted beside: each backbone is decoded as it would be alone
(its own resize while decoding, :func:`decode_plan`), so backbones needing different decode sizes (i3d at 224,
s3d at 256, lowres at 64 x 64) decode the video once per size (:func:`decode_groups`), and a backbone's fingerprint
is the one it gets alone. Frames lie on the presentation timeline (``--timeline``, ``data.decode``): by default the
stream's constant-rate grid, which the fingerprint leaves out, so constant-rate files keep the fingerprints (and
features) of before; ``--timeline decoded`` (every decoded frame once) is recorded in it.

``--engine ray`` runs this same Extractor in one worker per GPU of a Ray cluster (``pipeline.ray_engine``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import importlib
from typing import TYPE_CHECKING

from extractors.registry import BACKBONES, build_backbone  # noqa: F401 - build_backbone: tests reach it here
from pipeline import api
from pipeline.cli import configure_logging, emit_json, error, print_failures, say  # noqa: F401 (re-exported)
from pipeline.defaults import ENGINES, EXIT_SOME_FAILED, EXTRACT_BACKBONES, VIEW_NAMES  # noqa: F401 (re-exported)
from pipeline.errors import UserError
from pipeline.parsers import parse_pairs, stage_parser

if TYPE_CHECKING:
    from pipeline.extraction import ExtractSettings

# The engine lives in pipeline.extraction (shared with the Ray engine), which imports torch; the names below are
# re-exported for the tests and benchmarks that reach them through this module, imported on first use
# (module __getattr__) so that the command names a bad input before torch loads.
_LAZY = {name: "pipeline.extraction" for name in (
    "DEFAULT_BATCH_SIZE", "DTYPES", "MAX_DECODE_WORKERS", "STAGE", "Extractor", "ExtractSettings", "Outcome",
    "backbone_fingerprint", "decode_groups", "extractor_fingerprint")}
_LAZY["VIEWS"] = "extractors.transforms"


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEFAULT_BACKBONES = EXTRACT_BACKBONES

log = logging.getLogger("pipeline.extract")


def parse_weights(values: list[str]) -> dict[str, str]:
    """``--weights`` values -> backbone -> path (``NAME=PATH``, several per value comma-separated). Raises
    UsageError (exit code 2)."""
    return parse_pairs(values, "--weights", "NAME=PATH (or NAME=random)", split_commas=True)


def parse_views(values: list[str], backbones: list[str]) -> dict[str, str]:
    """``--view`` values (``VIEW`` for every backbone, or ``NAME=VIEW``) -> backbone -> view. Raises UserError."""
    return api.parse_views(values, backbones, VIEW_NAMES)


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("extract")


def settings_kwargs(args: argparse.Namespace) -> dict:
    """The keywords of :func:`pipeline.api.extract_settings` that the flags give."""
    return dict(backbones=args.backbones, crops=args.crops, views=args.view, weights=args.weights,
                device=args.device, batch_size=args.batch_size, frames_per_snippet=args.frames_per_snippet,
                dtype=args.dtype, decoder=args.decoder, timeline=args.timeline, fps=args.fps,
                decode_resize=not args.no_decode_resize, decode_workers=args.decode_workers, force=args.force,
                decode_timeout_s=args.decode_timeout)


def settings_from_args(args: argparse.Namespace) -> ExtractSettings:
    """Checks the options that need no file: raises UserError with the message to print."""
    return api.extract_settings(**settings_kwargs(args))


def run(args: argparse.Namespace) -> int:
    """The command: flags -> :func:`pipeline.api.extract` -> one summary line (and the failures)."""
    configure_logging(args)
    try:
        result = api.extract(args.paths, store=args.store, dataset=args.dataset, engine=args.engine,
                             address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                             progress=not args.quiet, **settings_kwargs(args))
    except UserError as exc:  # flags, weights, inputs, the store's faults (what was written is kept)
        return error(exc)
    say(args, f"extract: {result.videos} videos: {result.extracted} extracted, {result.cached} cached, "
              f"{result.failed} failed; {result.frames} frames in {result.seconds:.1f} s "
              f"({result.frames / max(result.seconds, 1e-9):.1f} frames/s) with {','.join(result.backbones)} "
              f"{result.where}; store {args.store}")
    print_failures(result.failures)
    if result.missing:
        shown = ", ".join(result.missing[:10]) + (" ..." if len(result.missing) > 10 else "")
        print(f"  MISSING {len(result.missing)} {args.dataset} videos: {shown}", file=sys.stderr)
    emit_json(args, dataclasses.asdict(result))
    return EXIT_SOME_FAILED if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
