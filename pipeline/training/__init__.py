"""Training: the engine of stages 2-3 and what it trains with (the command line is ``pipeline.train``, the typed API
``pipeline.api.train``).

The package, one concern per module (imports go one way, top to bottom; this file only re-exports):

- :mod:`~pipeline.training.data`: the pooled 32-segment training set in memory (:class:`SegmentData`), the
  stratified validation split and the epoch batches.
- :mod:`~pipeline.training.objectives`: the losses of the teacher, student and LA-Net runs, one objective per stage.
- :mod:`~pipeline.training.lightning_student`: the lightning student's snippet windows and objective.
- :mod:`~pipeline.training.engine`: a training run (:class:`Run`): feature selection, checkpoint choice on the
  validation split, resume and the run's manifest row.
"""

from pipeline.training.data import SegmentData, build_segment_data, epoch_batches, validation_split
from pipeline.training.engine import (FAILED, RESUME_KEYS, SEED_STRIDE, NonFiniteLoss, Run, Selection, TrainingSet,
                                      build_training_set, load_teachers, select_features, train_overrides,
                                      training_epochs, validation_video_scores)

__all__ = [
    "FAILED", "RESUME_KEYS", "SEED_STRIDE", "NonFiniteLoss", "Run", "SegmentData", "Selection", "TrainingSet",
    "build_segment_data", "build_training_set", "epoch_batches", "load_teachers", "select_features",
    "train_overrides", "training_epochs", "validation_split", "validation_video_scores",
]
