"""Deterministic synthetic surveillance videos with known anomalies, and a CLI that writes a small dataset.

The scene is a fixed camera looking at a plaza: sky and a row of building facades at the top, a textured
paved ground plane with a few static props, and a two-lane road band crossing it. Pedestrians (small
articulated figures: legs, torso, arms, head, with a gait cycle) walk along straight or piecewise-linear paths,
entering and leaving at the frame edges. Anomalies occupy known frame intervals ``[start, end)``:

``vehicle``  car-sized boxes cross the road band at high speed, one after another, for the whole interval.
``fight``    two pedestrians walk up to each other and jitter / flail violently around each other.
``fall``     a pedestrian topples over to horizontal and stays down (getting up in the last frames).
``scatter``  a crowd stands around a point; at ``start`` every pedestrian runs outward at high speed and
             leaves the frame before ``end``; nobody new enters until ``end``.
``fire``     a flickering orange/yellow fire with a glow that grows for the whole interval.

Outside the intervals the scene is only normal walking (and people standing while a crowd gathers).

Everything is derived from ``SyntheticSpec.seed`` through ``numpy.random.default_rng`` with a fixed stream tag
per component (background, each walker slot, each event, per-frame sensor noise / fire flicker), so the same
spec gives byte-identical frames, any frame can be rendered on its own (``SyntheticScene.render(t)``), and the
same seed with and without events gives the same background and the same walkers (except where a ``scatter``
makes them run).

Units: positions are pixels (x right, y down, pixel centres at integer coordinates); sizes are fractions of the
frame height ``H`` (``_FRAC`` constants) or of a figure's height (``_FIG`` constants); speeds are frame heights
per second (``_HPS``) and are converted with ``SyntheticSpec.fps``; durations are seconds (``_S``).

UCF-Crime annotation format (``Temporal_Anomaly_Annotation.txt``): one line per video,
``Name.mp4  Class  s1  e1  s2  e2  `` (fields separated by two spaces, and, exactly like the official file,
two trailing spaces). Ends are EXCLUSIVE, matching the ground-truth rule of method.md §7 (``gt[s:e] = 1``, the
rule the project applies to the official file too), so an event ``[start, end)`` is written as ``start  end``;
unused intervals are ``-1  -1``. ``data.datasets.read_ucf_annotation`` reads it back exactly.

The same labels are also written as ``labels.csv`` (``name,label,class,split,intervals``, intervals like
``120-200;340-400``, end exclusive), the CSV format that ``data.datasets.load_dataset(root)`` reads.

Command line (:mod:`pipeline.cli.synthetic`; ``python -m data.synthetic`` is the same)::

    dakd synthetic OUT_DIR --normal N --anomalous M [--seed S] [--frames F] [--size WxH] [--fps R]
                   [--scenes N] [--figure-height F] [--lossless] [--quiet]

The package, one concern a module, each importing only the ones above it:

``spec``        :class:`SyntheticSpec`, :class:`AnomalyEvent`, the anomaly kinds, the seeded random streams
``drawing``     colours, smooth noise, alpha masks and blending
``background``  the static plaza: sky, facades, paving, props, the road band
``figures``     pedestrians: tracks, gait, poses, sprites
``scene``       :class:`SyntheticScene`: walkers, the five anomaly kinds and sensor noise, frame by frame
``writer``      :func:`render_frames`, :func:`write_video` (PyAV, H.264 or lossless RGB H.264)
``events``      :func:`random_events`: anomaly intervals drawn inside a video
``dataset``     :func:`generate_dataset`: videos, the UCF-Crime annotation, ``split.csv``, ``labels.csv``

This module re-exports the public names, so ``from data.synthetic import generate_dataset`` works as before.
"""

from __future__ import annotations

from data.synthetic.dataset import (SyntheticDataset, SyntheticEntry, format_annotation_line, generate_dataset,
                                    video_seed)
from data.synthetic.events import random_events
from data.synthetic.figures import WALK_SPEED_RANGE_HPS
from data.synthetic.scene import SyntheticScene
from data.synthetic.spec import (ANOMALY_KINDS, CLASS_NAMES, GENERATOR_VERSION, NORMAL_CLASS, AnomalyEvent,
                                 SyntheticSpec)
from data.synthetic.writer import H264_OPTIONS, LOSSLESS_OPTIONS, render_frames, write_video

__all__ = [
    "GENERATOR_VERSION",
    "ANOMALY_KINDS", "CLASS_NAMES", "NORMAL_CLASS", "AnomalyEvent", "SyntheticSpec", "SyntheticScene",
    "SyntheticEntry", "SyntheticDataset", "render_frames", "write_video", "random_events", "generate_dataset",
    "format_annotation_line", "video_seed", "H264_OPTIONS", "LOSSLESS_OPTIONS", "WALK_SPEED_RANGE_HPS",
]
