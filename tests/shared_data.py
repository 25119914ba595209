"""The reference data beside the repository (``../shared/data``), which CI provides and a clone may not have."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data of the repo root


def shared_data(sub: str) -> Path:
    """A folder of the reference data: skipped outside CI when absent (UCSD footage may not be redistributed, so
    a clone does not carry it), a failure in CI (``CI`` set), which must provide it."""
    path = SHARED_DATA / sub
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing; CI must provide the reference data at ../shared/data")
        pytest.skip(f"{path} is absent and CI is unset: the reference data ../shared/data is only required in CI")
    return path
