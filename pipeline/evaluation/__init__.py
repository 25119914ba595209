"""Evaluation: the engine of stage 4 and the scoring and metrics it shares with detect, export and grid (the command
line is ``pipeline.evaluate``, the typed API ``pipeline.api.evaluate``).

The package, one concern per module (imports go one way, top to bottom):

- :mod:`~pipeline.evaluation.scoring`: every snippet of a video scored by a trained model (crops averaged).
- :mod:`~pipeline.evaluation.metrics`: the frame-level metrics, as pure functions (:class:`VideoScores`).
- :mod:`~pipeline.evaluation.engine`: a run evaluated on its test videos (:func:`evaluate_run`), its files
  written, runs grouped by everything but the seed.

This file re-exports the engine's names lazily (PEP 562): ``pipeline.plots`` imports
``pipeline.evaluation.metrics``, which runs this file first, and the engine imports ``pipeline.plots``, so an eager
import here would find ``pipeline.plots`` half made whenever it is imported before this package.
"""

from __future__ import annotations

import importlib

# name -> the module of this package that defines it
_EXPORTS = {
    **dict.fromkeys(("CODE_VERSION", "REPORTED", "SHORT_KEY", "STAGE", "differing_keys", "evaluate_run",
                     "group_identity", "group_summaries", "scoring_extractions", "summarize"), "engine"),
    **dict.fromkeys(("VideoScores", "frame_metrics", "pr_points", "roc_points"), "metrics"),
    **dict.fromkeys(("align_snippets", "score_snippets"), "scoring"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the module that defines ``name`` on first use (an unknown name is an AttributeError, so that
    ``from pipeline.evaluation import scoring`` still finds the submodule)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
