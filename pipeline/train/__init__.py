"""Stages 2-3, ``dakd train``: the teacher, the student, LA-Net and the lightning student (the command line is
:mod:`pipeline.cli.train`, the typed API :func:`pipeline.api.train`).

The package, one concern per module (imports go one way, top to bottom; this file imports nothing, so
``python -m pipeline.train --help`` answers without loading torch):

- :mod:`~pipeline.train.data`: the pooled 32-segment training set in memory (:class:`SegmentData`), the
  stratified validation split and the epoch batches.
- :mod:`~pipeline.train.objectives`: the losses of the teacher, student and LA-Net runs, one objective per stage.
- :mod:`~pipeline.train.lightning_student`: the lightning student's snippet windows and objective.
- :mod:`~pipeline.train.trainer`: a training run (:class:`TrainingJob`): feature selection, checkpoint choice on the
  validation split, resume and the run's manifest row.
"""
