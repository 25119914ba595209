"""Stage 4, ``dakd evaluate``: the evaluation of runs, and the scoring and metrics it shares with detect, export and
grid (the command line is :mod:`pipeline.cli.evaluate`, the typed API ``pipeline.api.evaluate``).

The package, one concern per module (imports go one way, top to bottom):

- :mod:`~pipeline.evaluate.scoring`: every snippet of a video scored by a trained model (crops averaged).
- :mod:`~pipeline.evaluate.metrics`: the frame-level metrics, as pure functions (:class:`VideoScores`).
- :mod:`~pipeline.evaluate.evaluator`: a run evaluated on its test videos (:func:`evaluate_run`), its files
  written, runs grouped by everything but the seed.
- :mod:`~pipeline.evaluate.plots`: the ROC, PR and per-video score plots.
- :mod:`~pipeline.evaluate.detection_criteria`: RBDC and TBDC (Ramachandra & Jones) of frame maps against pixel
  masks.
- :mod:`~pipeline.evaluate.localization`: where, not only when: the pointing game and pixel AUC of cell maps
  against pixel masks, and the localisation report of all four metrics (no model returns maps yet: issue 22).

This file imports nothing, so ``python -m pipeline.evaluate --help`` answers without loading torch.
"""
