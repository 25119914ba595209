"""Real footage fetched from a package registry: OpenCV's sample videos from Debian's ``opencv-doc`` package.

``vtest.avi`` (768x576, 10 fps, 795 frames, MS-MPEG4v3 in AVI; a fixed elevated camera over walking pedestrians)
is the project's small real default. Licence: Apache-2.0 and BSD-3-Clause (OpenCV). Files are cached in the
user cache dir and checked against their sha256.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from data.cache import cache_dir, sha256_file

DEBIAN_PACKAGE = "opencv-doc"
MEMBER_DIR = "./usr/share/doc/opencv-doc/examples/data/"
INSTALLED_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
SHA256 = {
    "vtest.avi": "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
}


class AssetError(RuntimeError):
    pass


def assets_dir() -> Path:
    return cache_dir() / "assets"


def _download_deb(dest: Path) -> Path:
    """``apt-get download opencv-doc`` into dest (running ``apt-get update`` once if the lists are empty)."""
    for attempt in range(2):
        proc = subprocess.run(["apt-get", "download", DEBIAN_PACKAGE], cwd=dest, capture_output=True, text=True)
        debs = list(dest.glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if proc.returncode == 0 and debs:
            return debs[0]
        if attempt == 0:
            subprocess.run(["apt-get", "update"], capture_output=True, text=True)
    raise AssetError(f"could not download Debian's {DEBIAN_PACKAGE} ({proc.stderr.strip()[-300:]}): install it "
                     f"with `apt-get install {DEBIAN_PACKAGE}` or place the file in {assets_dir()}")


def _extract(deb: Path, names: list[str], dest: Path) -> None:
    """Stream the .deb's file tree through ``dpkg-deb --fsys-tarfile`` and keep only the named members."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    wanted = {MEMBER_DIR + n: n for n in names}
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if member.name in wanted and member.isfile():
                src = tar.extractfile(member)
                tmp = dest / f".{wanted[member.name]}.part"
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out)
                os.replace(tmp, dest / wanted[member.name])
    proc.wait()


def opencv_sample(name: str = "vtest.avi") -> Path:
    """Path to one of OpenCV's sample videos, fetching ``opencv-doc`` from Debian once if needed."""
    if name not in SHA256:
        raise KeyError(f"unknown sample {name!r}: one of {', '.join(SHA256)}")
    cached = assets_dir() / name
    for candidate in (cached, INSTALLED_DIR / name):
        if candidate.is_file() and sha256_file(candidate) == SHA256[name]:
            return candidate
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        deb = _download_deb(Path(tmp))
        _extract(deb, list(SHA256), cached.parent)
    if not cached.is_file() or sha256_file(cached) != SHA256[name]:
        raise AssetError(f"{cached}: missing or wrong checksum after extracting {DEBIAN_PACKAGE}")
    return cached
