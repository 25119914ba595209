"""Where backbone weights live, how a ``--weights`` value is resolved, and the error when they are missing.

Weights never live in git: they sit in a user cache directory (``$DAKD_CACHE_DIR`` overrides it) or wherever
the user points ``--weights NAME=PATH``. ``random`` is honoured only when asked for by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data.cache import cache_dir
from data.cache import sha256_file as file_sha256

RANDOM = "random"


class WeightsNotFound(FileNotFoundError):
    """Raised with a message that names the flag and the file to provide."""


def weights_dir() -> Path:
    return cache_dir() / "weights"


@dataclass(frozen=True)
class WeightsChoice:
    """A resolved weights source. ``path`` is None for random weights; ``id`` enters the extractor fingerprint."""

    path: Path | None
    id: str

    @property
    def is_random(self) -> bool:
        return self.path is None


def resolve(backbone: str, requested: str | None, default_files: list[Path], *, how_to_get: str) -> WeightsChoice:
    """Turn a ``--weights`` value into a file.

    requested: None (use the first existing default file), ``"random"``, or a path.
    default_files: where the set-up or the library's own download puts this backbone's weights.
    how_to_get: one sentence telling the user how to obtain the default file.
    """
    if requested == RANDOM:
        return WeightsChoice(None, RANDOM)
    if requested:
        path = Path(requested).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"weights for {backbone} not found at {path}: pass --weights {backbone}=PATH "
                                  f"with an existing file")
        return WeightsChoice(path, "sha256:" + file_sha256(path))
    for path in default_files:
        if path.is_file():
            return WeightsChoice(path, "sha256:" + file_sha256(path))
    looked = ", ".join(str(p) for p in default_files) or "(no default location)"
    raise WeightsNotFound(f"weights for {backbone} not found (looked in {looked}): pass --weights {backbone}=PATH, "
                          f"{how_to_get}, or --weights {backbone}=random to use untrained weights on purpose")
