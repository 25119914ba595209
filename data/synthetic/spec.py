"""The spec of one synthetic video (:class:`SyntheticSpec`, its :class:`AnomalyEvent` intervals), the anomaly
kinds, and the seeded random streams every other module of the package draws from (:func:`_rng`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANOMALY_KINDS = ("vehicle", "fight", "fall", "scatter", "fire")
CLASS_NAMES = {"vehicle": "Vehicle", "fight": "Fight", "fall": "Fall", "scatter": "Scatter", "fire": "Fire"}
NORMAL_CLASS = "Normal"

# ----------------------------------------------------------------------------------------------------------------
# Spec defaults and limits
# Raised whenever the same arguments would write other bytes (a world recorded with another version is rewritten
# by the demo). 2: no B-frames and figure colours summed without BLAS, so the same seed gives the same bytes.
GENERATOR_VERSION = 2
DEFAULT_N_FRAMES = 320
DEFAULT_WIDTH = 320
DEFAULT_HEIGHT = 240
DEFAULT_FPS = 25.0
DEFAULT_N_WALKERS = 6
DEFAULT_FIGURE_HEIGHT = 0.10  # a pedestrian's standing height as a fraction of the frame height (a far camera)
MAX_FIGURE_HEIGHT = 0.5
MIN_FRAME_SIZE = 16  # pixels, smallest width / height accepted

# Random stream tags: default_rng([seed, TAG, ...]) gives each component its own independent stream.
STREAM_BACKGROUND = 1
STREAM_WALKERS = 2
STREAM_EVENTS = 3
STREAM_SENSOR_NOISE = 4
STREAM_FIRE_FLICKER = 5
STREAM_VIDEO_SEED = 6
STREAM_DATASET_EVENTS = 7
STREAM_SPLIT = 8
STREAM_DATASET_KINDS = 9
STREAM_SCENE_SEED = 10


@dataclass(frozen=True)
class AnomalyEvent:
    """One anomaly: ``kind`` in :data:`ANOMALY_KINDS`, frames ``start`` (0-based, inclusive) to ``end``
    (exclusive)."""

    kind: str
    start: int
    end: int

    def __post_init__(self):
        if self.kind not in ANOMALY_KINDS:
            raise ValueError(f"unknown anomaly kind {self.kind!r}: choose one of {', '.join(ANOMALY_KINDS)}")
        if not (0 <= self.start < self.end):
            raise ValueError(f"event {self.kind}: need 0 <= start < end, got [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that defines one synthetic video. Sizes in pixels, ``fps`` in frames per second; ``events``
    must lie inside ``[0, n_frames)``. Same spec -> byte-identical frames."""

    n_frames: int = DEFAULT_N_FRAMES
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    fps: float = DEFAULT_FPS
    n_walkers: int = DEFAULT_N_WALKERS
    events: tuple[AnomalyEvent, ...] = ()
    seed: int = 0
    # The camera: the seed of the static background (facades, road, props). None: ``seed``, so every video is
    # its own scene; several videos of one camera share a scene seed and differ only in what moves.
    scene_seed: int | None = None
    figure_height: float = DEFAULT_FIGURE_HEIGHT  # standing height of an average pedestrian, fraction of H

    def __post_init__(self):
        object.__setattr__(self, "events", tuple(self.events))
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.width < MIN_FRAME_SIZE or self.height < MIN_FRAME_SIZE:
            raise ValueError(f"frame size must be at least {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE}, "
                             f"got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not 0 < self.figure_height <= MAX_FIGURE_HEIGHT:
            raise ValueError(f"figure_height must be in (0, {MAX_FIGURE_HEIGHT}], got {self.figure_height}")
        if self.n_walkers < 0:
            raise ValueError(f"n_walkers must be >= 0, got {self.n_walkers}")
        for ev in self.events:
            if not isinstance(ev, AnomalyEvent):
                raise TypeError(f"events must be AnomalyEvent instances, got {ev!r}")
            if ev.end > self.n_frames:
                raise ValueError(f"event {ev} ends after the video ({self.n_frames} frames)")

    @property
    def background_seed(self) -> int:
        return self.seed if self.scene_seed is None else self.scene_seed

    @property
    def label(self) -> int:
        """1 if the video contains an anomaly, else 0."""
        return int(bool(self.events))

    def frame_labels(self) -> np.ndarray:
        """uint8 ``[n_frames]``: 1 on frames inside any event interval."""
        labels = np.zeros(self.n_frames, np.uint8)
        for ev in self.events:
            labels[ev.start:ev.end] = 1
        return labels


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])
