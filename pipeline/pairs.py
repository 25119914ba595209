"""Two small text forms the API accepts beside typed values, parsed one way for the API and the command line:
``NAME=VALUE`` pairs (``{"i3d": "a.pt"}`` may also be given as ``["i3d=a.pt"]``) and comma-separated lists."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.errors import UsageError


def parse_pairs(values: Iterable[str], name: str, form: str = "NAME=VALUE", *, split_commas: bool = False,
                empty_value: bool = False) -> dict[str, str]:
    """The one ``NAME=VALUE`` parser: ``["i3d=a.pt", "clip=b.pt"]`` -> ``{"i3d": "a.pt", "clip": "b.pt"}`` (a
    later value for a name wins). ``split_commas``: one value may hold several pairs (``weights
    i3d=a.pt,s3d=b.pt``). Raises :class:`UsageError` naming ``name`` (the parameter, or a flag) and ``form``."""
    out: dict[str, str] = {}
    for value in values:
        for item in (value.split(",") if split_commas else [value]):
            key, sep, rest = (part.strip() for part in item.partition("="))
            if not sep or not key or not (rest or empty_value):
                quoted = f"`{name}`" if name.isidentifier() else name  # a parameter (UserError), or a flag as is
                raise UsageError(f"{quoted} takes {form}, got {item!r}")
            out[key] = rest
    return out


def split_list(text: str | None) -> list[str]:
    """``"i3d, s3d,"`` -> ``["i3d", "s3d"]``; None -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]
