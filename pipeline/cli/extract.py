"""``dakd extract``: videos -> cached per-snippet backbone features (the work: :mod:`pipeline.extract.extractor`, and
:mod:`pipeline.extract.ray_engine` for ``--engine ray``; the typed API: :func:`pipeline.api.extract`).

    dakd extract PATH... --backbones i3d,s3d,clip --store DIR [--crops N] [--view [NAME=]VIEW] [--weights NAME=PATH]
                 [--device auto] [--batch-size 8] [--frames-per-snippet k] [--dataset NAME]
                 [--timeline constant|decoded]
                 [--engine local|ray [--address A] [--workers N] [--cpus-per-worker C]]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from data.decode import BACKENDS, DECODE_RESIZE_FILTER, DEFAULT_TIMELINE, FRAME_FOLDER_FPS, TIMELINES
from data.datasets import registry as dataset_registry
from extractors.registry import BACKBONES, VIEWS
from extractors.views import CROP_COUNTS
from pipeline import api
from pipeline import defaults as d
from pipeline.cli.commands import stage_parser
from pipeline.cli.output import configure_logging, emit_json, error, print_failures, say
from pipeline.cli.parser import DEVICE_HELP, add_common, add_decode_timeout, add_store, call_api
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``dakd extract``."""
    p.add_argument("paths", nargs="+", help="video files, folders (searched recursively), folders of frames, "
                                            "or dataset roots with --dataset")
    add_store(p, "feature store folder (created if missing)")
    p.add_argument("--backbones", default=d.EXTRACT_BACKBONES,
                   help=f"comma-separated, from {', '.join(BACKBONES)} (default: {d.EXTRACT_BACKBONES})")
    p.add_argument("--crops", type=int, default=d.DEFAULT_CROPS, choices=CROP_COUNTS,
                   help="1 centre, 5 corners+centre, 10 with flips (default: 1)")
    p.add_argument("--view", dest="views", action="append", default=[], metavar="[NAME=]VIEW",
                   help=f"how frames become each backbone's input: {', '.join(VIEWS)} (crop: resize then "
                        "--crops crops, the published pipelines'; full: the whole frame, aspect kept, for i3d, s3d, "
                        "effnet_lite0, motion; squash: the whole frame resized to a square). VIEW alone applies to "
                        "every backbone, NAME=VIEW to one (repeatable; default with --crops 1: full for i3d, "
                        "effnet_lite0 and motion, squash for lowres, crop for the others; with 5 or 10 crops: "
                        "crop)")
    p.add_argument("--grid", dest="grids", action="append", default=[], metavar="[NAME=]GRID",
                   help="keep each snippet's last feature map as a grid of cells for spatial models and anomaly "
                        "maps: native (the backbone's own map, 7x11 for i3d on a 3:2 full view) or RxC (pooled to "
                        "R rows x C columns, to bound storage). The global feature is the cells' mean, so a grid "
                        "store serves global models too. GRID alone applies to every backbone, NAME=GRID to one "
                        "(repeatable; default: no grid, one global feature per snippet)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="weights file per backbone, or NAME=random for untrained weights (repeatable)")
    p.add_argument("--device", default=d.DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=d.EXTRACT_BATCH_SIZE,
                   help=f"snippets per forward pass, across videos (default: {d.EXTRACT_BATCH_SIZE})")
    p.add_argument("--frames-per-snippet", "--clip-frames", dest="frames_per_snippet", type=int,
                   default=d.DEFAULT_FRAMES_PER_SNIPPET, metavar="K",
                   help="frames per snippet embedded by the image backbones (clip, clip_b32, effnet_lite0), "
                        "averaged (default: 1, the centre frame; --clip-frames is the old spelling)")
    p.add_argument("--dtype", default=d.DTYPES[0], choices=d.DTYPES, help=f"stored dtype (default: {d.DTYPES[0]})")
    p.add_argument("--decoder", default="auto", choices=BACKENDS,
                   help="auto: decord, PyAV when decord cannot open a file (default: auto)")
    p.add_argument("--timeline", default=DEFAULT_TIMELINE, choices=TIMELINES,
                   help="constant: frames as a player shows them, on the stream's constant-rate grid (a gap in the "
                        "timestamps repeats the previous frame, duplicates are dropped, as ffmpeg -vsync cfr), the "
                        "timeline annotations and detect's alerts refer to; decoded: every decoded frame once, "
                        "whatever its timestamp. Constant-rate files give the same features either way "
                        f"(default: {DEFAULT_TIMELINE})")
    p.add_argument("--fps", type=float, default=FRAME_FOLDER_FPS,
                   help=f"frame rate of folders of frames (default: {FRAME_FOLDER_FPS})")
    p.add_argument("--no-decode-resize", dest="decode_resize", action="store_false",
                   help="decode at full size and resize in torch (slower on a CPU; default: resize while decoding "
                        f"with {DECODE_RESIZE_FILTER} to the size each backbone needs)")
    p.add_argument("--decode-workers", type=int, help="videos decoded at once (default: one per core, up to "
                   f"{d.MAX_DECODE_WORKERS}, when every backbone is decode-bound, i.e. lowres alone; else 1)")
    add_decode_timeout(p)
    p.add_argument("--dataset", choices=dataset_registry.DATASETS,
                   help=f"treat PATHS as the root of this dataset (its official lists): {dataset_registry.describe()}")
    p.add_argument("--force", action="store_true", help="recompute features the store already holds")
    p.add_argument("--engine", default=d.ENGINES[0], choices=d.ENGINES,
                   help="local: this process; ray: the videos spread over the workers of a Ray cluster (pip install "
                        "-e '.[ray]'), one per GPU, which send their features back to this process, the only one "
                        "opening --store; every machine must see the videos at the same paths (default: local)")
    p.add_argument("--address", help="with --engine ray: the cluster to join (host:6379, ray://host:10001 or auto; "
                                     "default: $RAY_ADDRESS if set, else a Ray instance started on this machine)")
    p.add_argument("--workers", type=int, help="with --engine ray: number of workers (default: one per GPU of the "
                                               "cluster; without GPUs, one per machine)")
    p.add_argument("--cpus-per-worker", type=int,
                   help="with --engine ray: CPUs each worker reserves, for decoding and torch threads (default: "
                        "the cluster's CPUs shared evenly between the workers)")
    add_common(p)


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("extract")


def run(args: argparse.Namespace) -> int:
    """The command: flags -> :func:`pipeline.api.extract` -> one summary line (and the failures)."""
    configure_logging(args)
    try:
        result = call_api(api.extract, args, api.check_extract_settings, progress=not args.quiet)
    except UserError as exc:  # flags, weights, inputs, the store's faults (what was written is kept)
        return error(exc, args=args)
    say(args, f"extract: {result.videos} videos: {result.extracted} extracted, {result.cached} cached, "
              f"{result.failed} failed; {result.frames} frames in {result.seconds:.1f} s "
              f"({result.frames / max(result.seconds, 1e-9):.1f} frames/s) with {','.join(result.backbones)} "
              f"{result.where}; store {args.store}")
    print_failures(result.failures, args)
    if result.missing:
        shown = ", ".join(result.missing[:10]) + (" ..." if len(result.missing) > 10 else "")
        print(f"  MISSING {len(result.missing)} {args.dataset} videos: {shown}", file=sys.stderr)
    emit_json(args, dataclasses.asdict(result))
    return EXIT_SOME_FAILED if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
