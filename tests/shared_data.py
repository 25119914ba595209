"""The one place tests reach the reference data that is not in the repository: ``../shared/data`` beside the
repository root, or the folder named by ``$DAKD_SHARED_DATA``. CI provides it; a clone may not have it, because
the UCSD footage may not be redistributed. Everything that may be redistributed is vendored under ``tests/fixtures``.

Tests that read it carry the ``real_data`` marker (``-m "not real_data"`` leaves them out)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA_ENV = "DAKD_SHARED_DATA"  # overrides the location, e.g. /nonexistent to act like a bare clone
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data of the root
CI_ENV = "CI"  # set (non-empty) in CI, which must provide the data: absent data is then a failure, not a skip


def shared_data_root() -> Path:
    """The reference data folder: ``$DAKD_SHARED_DATA`` if set, else ``../shared/data`` beside the repository."""
    override = os.environ.get(SHARED_DATA_ENV)
    return Path(override) if override else DEFAULT_SHARED_DATA


def shared_data(sub: str) -> Path:
    """A folder of the reference data: skipped outside CI when absent (UCSD footage may not be redistributed, so
    a clone does not carry it), a failure in CI (``CI`` set), which must provide it."""
    path = shared_data_root() / sub
    if not path.is_dir():
        if os.environ.get(CI_ENV):
            pytest.fail(f"{path} is missing; CI must provide the reference data there (or set {SHARED_DATA_ENV})")
        pytest.skip(f"{path} is absent and CI is unset: the reference data outside the repository (it holds UCSD "
                    f"footage, which may not be redistributed) is only required in CI; set {SHARED_DATA_ENV} to "
                    f"its folder to run this")
    return path
