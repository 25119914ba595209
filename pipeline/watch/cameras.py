"""The cameras of a watch, from the command line (``[NAME=]SOURCE``) or a YAML file::

    - name: gate
      source: rtsp://10.0.0.5/stream1
      options: {rtsp_transport: tcp}
    - name: rehearsal
      source: recordings/monday.mp4
      realtime: true
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pipeline.watch.sources import Camera

DEFAULT_NAME = "cam{n}"  # a camera given without NAME=: cam1, cam2, ... in the order given
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # camera names become file and folder names
YAML_KEYS = {"name", "source", "realtime", "follow", "format", "options"}


class CameraListError(ValueError):
    """A camera list that cannot be used; the message names the file or argument and the fix."""


def _checked_name(name: str, where: str) -> str:
    if not NAME_PATTERN.match(name):
        raise CameraListError(f"{where}: camera name {name!r} is not usable as a file name: use letters, digits, "
                              "'_', '-' and '.' (at most 64)")
    return name


def parse_source(text: str, n: int, *, realtime: bool = False, follow: bool = False, format: str | None = None,
                 options: dict | None = None) -> Camera:
    """``NAME=SOURCE`` or ``SOURCE`` (named ``cam<n>``). A URL's own ``=`` (``rtsp://h/s?a=b``) is not a name: a
    name comes before any ``:`` or ``/``."""
    name, sep, rest = text.partition("=")
    if sep and rest and not any(c in name for c in ":/\\?&"):
        return Camera(_checked_name(name, text), rest, realtime, follow, format, dict(options or {}))
    return Camera(DEFAULT_NAME.format(n=n), text, realtime, follow, format, dict(options or {}))


def load_cameras(path: str | Path, *, realtime: bool = False, follow: bool = False, format: str | None = None,
                 options: dict | None = None) -> list[Camera]:
    """The cameras of a YAML list; the keyword arguments are the defaults of keys a camera leaves out."""
    import yaml

    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CameraListError(f"{path} cannot be read as YAML ({type(exc).__name__}: {exc}): write a list of "
                              "cameras, each {name: ..., source: ...}") from None
    if not isinstance(content, list) or not content:
        raise CameraListError(f"{path} holds no list of cameras: write a YAML list, each {{name: ..., source: ...}}")
    cameras = []
    for i, item in enumerate(content, start=1):
        where = f"{path}, camera {i}"
        if not isinstance(item, dict) or not isinstance(item.get("source"), str):
            raise CameraListError(f"{where}: each camera needs a source: {{name: gate, source: rtsp://...}}")
        unknown = set(item) - YAML_KEYS
        if unknown:
            raise CameraListError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a camera takes "
                                  f"{', '.join(sorted(YAML_KEYS))}")
        opts = {**(options or {}), **{str(k): str(v) for k, v in (item.get("options") or {}).items()}}
        cameras.append(Camera(_checked_name(str(item.get("name") or DEFAULT_NAME.format(n=i)), where),
                              item["source"], bool(item.get("realtime", realtime)), bool(item.get("follow", follow)),
                              item.get("format", format), opts))
    return cameras


def cameras_from(sources: Sequence[str], cameras_file: str | Path | None = None, **defaults) -> list[Camera]:
    """The YAML file's cameras, then the command line's; names must differ."""
    out = load_cameras(cameras_file, **defaults) if cameras_file else []
    out += [parse_source(s, len(out) + 1, **defaults) for s in sources]
    if not out:
        raise CameraListError("no camera given: pass sources ([NAME=]SOURCE...) or a `cameras` YAML file")
    names = [c.name for c in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CameraListError(f"camera name(s) given twice: {', '.join(twice)}: name them NAME=SOURCE")
    return out
