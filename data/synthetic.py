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

CLI::

    python -m data.synthetic OUT_DIR --normal N --anomalous M [--seed S] [--frames F] [--size WxH] [--fps R]
                             [--lossless] [--quiet]
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = [
    "ANOMALY_KINDS", "CLASS_NAMES", "NORMAL_CLASS", "AnomalyEvent", "SyntheticSpec", "SyntheticScene",
    "SyntheticEntry", "SyntheticDataset", "render_frames", "write_video", "random_events", "generate_dataset",
    "format_annotation_line", "video_seed", "main",
]

ANOMALY_KINDS = ("vehicle", "fight", "fall", "scatter", "fire")
CLASS_NAMES = {"vehicle": "Vehicle", "fight": "Fight", "fall": "Fall", "scatter": "Scatter", "fire": "Fire"}
NORMAL_CLASS = "Normal"

# ----------------------------------------------------------------------------------------------------------------
# Spec defaults and limits
DEFAULT_N_FRAMES = 320
DEFAULT_WIDTH = 320
DEFAULT_HEIGHT = 240
DEFAULT_FPS = 25.0
DEFAULT_N_WALKERS = 6
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

# ----------------------------------------------------------------------------------------------------------------
# Background layout (fractions of H unless noted; colours RGB 0..255)
HORIZON_FRAC = 0.30  # y of the building bases / top of the ground plane
SKY_TOP_COLOR = (150, 185, 215)
SKY_BOTTOM_COLOR = (205, 218, 230)
BUILDING_WIDTH_RANGE_W = (0.10, 0.28)  # fraction of W
BUILDING_GAP_RANGE_W = (0.0, 0.04)  # fraction of W between neighbouring facades
BUILDING_TOP_RANGE_FRAC = (0.02, 0.17)  # y of a facade's roof line
BUILDING_COLOR_RANGE = (85, 190)  # per-channel range of the facade base colour
BUILDING_COLOR_SPREAD = 25  # max per-channel deviation from grey, keeps facades muted
WINDOW_PITCH_FRAC = (0.055, 0.075)  # (x, y) window grid pitch
WINDOW_FILL = 0.55  # fraction of a grid cell covered by glass
WINDOW_COLOR = (55, 70, 90)
WINDOW_LIT_COLOR = (225, 205, 140)
WINDOW_LIT_PROB = 0.15
GROUND_COLOR = (150, 144, 130)
GROUND_NOISE_AMPLITUDE = 12.0  # intensity units, coarse octave; the fine octave gets half
GROUND_NOISE_CELLS_FRAC = (0.30, 0.05)  # coarse and fine octave cell sizes
TILE_PITCH_FRAC = 0.09
TILE_LINE_GAIN = 0.90  # brightness multiplier on paving joints
ROAD_BAND_FRAC = (0.56, 0.76)  # (top, bottom) of the asphalt
ROAD_COLOR = (74, 74, 80)
ROAD_NOISE_AMPLITUDE = 5.0
KERB_COLOR = (192, 190, 184)
KERB_WIDTH_FRAC = 0.012
LANE_MARK_COLOR = (228, 218, 150)
LANE_MARK_WIDTH_FRAC = 0.010
LANE_DASH_FRAC = (0.09, 0.07)  # (dash length, gap)
N_PROPS_RANGE = (2, 4)  # benches / planters on the ground, inclusive
PROP_SIZE_RANGE_FRAC = ((0.08, 0.18), (0.03, 0.06))  # (width range, height range)
PROP_COLORS = ((60, 95, 55), (110, 80, 55), (95, 95, 100))
PROP_TOP_GAIN = 1.25  # the top edge of a prop is lit

# ----------------------------------------------------------------------------------------------------------------
# Pedestrians. _FIG sizes are fractions of the figure height.
FIGURE_HEIGHT_FRAC = 0.10  # standing height of an average pedestrian
FIGURE_SCALE_RANGE = (0.88, 1.12)
LEG_LEN_FIG = 0.47
LEG_WIDTH_FIG = 0.12
TORSO_LEN_FIG = 0.32
TORSO_WIDTH_FIG = 0.24
ARM_LEN_FIG = 0.34
ARM_WIDTH_FIG = 0.085
NECK_FIG = 0.03
HEAD_RADIUS_FIG = 0.085
HAIR_OFFSET_FIG = 0.025  # hair disk sits this much above the face disk
SHADOW_RADII_FIG = (0.22, 0.06)
SHADOW_ALPHA = 0.35
SKIN_COLORS = ((235, 200, 170), (200, 150, 115), (150, 105, 75), (95, 65, 45))
HAIR_COLORS = ((30, 25, 20), (80, 55, 35), (150, 120, 70), (120, 120, 120))
SHIRT_COLOR_RANGE = (35, 235)
TROUSER_COLOR_RANGE = (20, 95)
WALK_SPEED_RANGE_HPS = (0.055, 0.095)
RUN_SPEED_HPS = 0.50
STRIDE_FIG = 0.80  # distance covered in one full gait cycle (two steps)
GAIT_REF_SPEED_FIG = 0.75  # figure heights / s at which the gait amplitude is 1
GAIT_AMPLITUDE_RANGE = (0.5, 2.0)  # clamp of speed / GAIT_REF_SPEED_FIG
LEG_SWING_RAD = 0.32
ARM_SWING_RAD = 0.30
RUN_LEAN_RAD = 0.12  # forward lean per unit of gait amplitude above 1
IDLE_STANCE_RAD = 0.10
IDLE_SWAY_RAD = 0.03
IDLE_SWAY_PERIOD_S = 2.5
IDLE_ARM_RAD = 0.05
SLEEVE_GAIN = 0.85  # sleeves are a slightly darker shade of the shirt
WALK_ZONE_FRAC = (HORIZON_FRAC + 0.10, 0.97)  # y range of feet for path waypoints
OFFSCREEN_MARGIN_FIG = 0.6  # feet this far outside the frame edge hide the whole figure sideways
WALK_X_RANGE_W = (0.1, 0.9)  # x range (fraction of W) of waypoints and bottom-edge entries
WAYPOINT_PROB = 0.5  # chance a trip has one intermediate waypoint (piecewise path)
BOTTOM_ENTRY_PROB = 0.2  # chance a trip enters / leaves through the bottom edge instead of a side
SPAWN_GAP_RANGE_S = (0.0, 4.0)  # pause of a walker slot between two trips
WARMUP_S = 20.0  # walkers are simulated from up to this long before frame 0, so frame 0 is mid-scene
FLEE_MIN_SIDEWAYS = 0.7  # a runner heading up (into the facades) turns to at least this sideways component
FLEE_UP_SQUASH = 0.5  # ... and keeps this fraction of its upward component

# ----------------------------------------------------------------------------------------------------------------
# Anomalies
VEHICLE_LENGTH_FRAC = 0.34
VEHICLE_HEIGHT_FRAC = 0.13
VEHICLE_SPEED_HPS = 1.20  # nominal; the actual speed makes whole crossings fill the interval exactly
VEHICLE_LANES = (0.75, 0.25)  # lane centre (fraction of the road band) for left-to-right, right-to-left
VEHICLE_LANE_OFFSET = 0.3  # car bottom below the lane centre, fraction of the car height
# Car drawing, side view: spans along the car as fractions of its length measured from the rear, heights as
# fractions of its height measured from its top.
VEHICLE_CABIN_SPAN = (0.22, 0.70)
VEHICLE_CABIN_HEIGHT = 0.45
VEHICLE_WINDOW_INSET = (0.04, 0.08)  # (along the length, from the roof)
VEHICLE_WINDOW_BOTTOM = 0.40
VEHICLE_BODY_SPAN = (0.40, 0.88)  # (top, bottom) of the body panel; the wheels stick out below
VEHICLE_WHEEL_RADIUS = 0.17
VEHICLE_WHEEL_POSITIONS = (0.2, 0.8)
VEHICLE_LIGHT_LENGTH = 0.04
VEHICLE_LIGHT_SPAN = (0.48, 0.62)
VEHICLE_SHADOW_SPAN = (0.88, 1.08)  # (top, bottom) of the ground shadow
VEHICLE_SHADOW_INSET = 0.03
VEHICLE_COLORS = ((200, 30, 35), (30, 60, 170), (235, 235, 235), (25, 25, 28), (230, 190, 30), (120, 125, 130))
VEHICLE_GLASS_COLOR = (60, 80, 100)
VEHICLE_WHEEL_COLOR = (18, 18, 18)
VEHICLE_HEADLIGHT_COLOR = (255, 250, 205)
VEHICLE_TAILLIGHT_COLOR = (230, 20, 20)
VEHICLE_CABIN_GAIN = 0.85
VEHICLE_SHADOW_ALPHA = 0.45
FIGHT_X_RANGE_W = (0.25, 0.75)  # where the fighters meet
FIGHT_SEPARATION_FIG = 0.38  # distance between the two fighters
FIGHT_JITTER_FIG = 0.12  # std of the per-frame position jitter
FIGHT_ORBIT_RAD = 0.9  # amplitude of the fighters' rotation around each other
FIGHT_ORBIT_PERIOD_S = 0.7
FIGHT_DEPTH_SQUASH = 0.4  # vertical compression of the orbit (ground-plane perspective)
FIGHT_TILT_RAD = 0.5
FIGHT_ARM_RANGE_RAD = (0.3, 2.3)
FIGHT_LEG_RAD = 0.6
FALL_X_RANGE_W = (0.2, 0.8)
FALL_S = 0.6  # toppling duration
RISE_S = 1.0  # getting-up duration at the end of the interval (only if the interval is long enough)
FALL_ARM_RAD = 1.2
FALL_LEG_RAD = 0.1
SCATTER_CROWD_SIZE = 4  # extra people who gather around the scatter point before the event
SCATTER_CROWD_RADIUS_FIG = (0.6, 2.2)
SCATTER_GATHER_RANGE_S = (0.5, 4.0)  # crowd members arrive this long before the event
SCATTER_CENTER_X_RANGE_W = (0.3, 0.7)
FIRE_RADIUS_RANGE_FRAC = (0.03, 0.11)  # base radius at the first / last frame of the interval
FIRE_TONGUES = 7
FIRE_BASE_FIELD = 0.5  # flame-field value of the burning base ellipse (orange in FIRE_PALETTE)
FIRE_TONGUE_HEIGHT_R = (1.0, 2.6)  # flame tongue height, in base radii
FIRE_TONGUE_WIDTH_R = (0.30, 0.55)
FIRE_FLICKER_RANGE = (0.6, 1.0)
FIRE_ALPHA_THRESHOLD = 0.30  # flame field value where flames start to be opaque
FIRE_ALPHA_SOFTNESS = 0.15
FIRE_PALETTE = ((0.30, (200, 40, 10)), (0.45, (255, 130, 20)), (0.75, (255, 220, 80)), (1.0, (255, 250, 200)))
FIRE_GLOW_RADIUS_R = 3.0
FIRE_GLOW_STRENGTH = 110.0
FIRE_GLOW_COLOR = (1.0, 0.55, 0.15)
FIRE_AMBIENT_STRENGTH = 10.0  # whole-frame orange flicker (camera auto-exposure reacting to the flames)
FIRE_X_RANGE_W = (0.15, 0.85)
FIRE_ROAD_CLEARANCE_FRAC = (0.02, 0.10)  # flame base at least this far above / below the road band
FIRE_PATCH_HALF_WIDTH_R = 1.8  # drawing window of the flames, in base radii
FIRE_PATCH_BELOW_R = 0.6
FIRE_TONGUE_SPREAD_R = 0.8  # max horizontal offset of a tongue from the centre
FIRE_BASE_HEIGHT_R = 0.4  # vertical radius of the burning base ellipse
FIRE_GLOW_SIGMA = 0.5  # Gaussian sigma of the glow, fraction of its radius

SENSOR_NOISE_STD = 1.5  # per-pixel, per-channel Gaussian noise, intensity units
# Sensor noise comes from a few pre-drawn padded noise images; each frame uses one of them at a random offset
# (drawn from a per-frame stream), which is ~10x cheaper than drawing fresh Gaussian noise every frame.
NOISE_BANK_SIZE = 2
NOISE_BANK_PAD = 32  # pixels of extra noise on each axis, the range of the per-frame offsets

# ----------------------------------------------------------------------------------------------------------------
# Random events, datasets, encoding
DEFAULT_MIN_EVENT_LEN = 40  # frames
DEFAULT_MAX_EVENT_LEN = 120
EVENT_EDGE_MARGIN = 0.10  # fraction of the video kept free of events at each end
EVENT_GAP = 0.08  # fraction of the video between two events
SECOND_EVENT_PROB = 0.25  # chance an anomalous dataset video holds two intervals of its class
DATASET_EVENT_LEN_FRACTION = (0.15, 0.40)  # event length range as fractions of the video length
TEST_FRACTION = 0.30
VIDEO_SUFFIX = "_synth"
ANNOTATION_FILE = "Temporal_Anomaly_Annotation.txt"
SPLIT_FILE = "split.csv"
LABELS_FILE = "labels.csv"  # data.datasets CSV format, read by load_dataset(root)
VIDEOS_DIR = "videos"
H264_CODEC = "libx264"
H264_PIX_FMT = "yuv420p"
# One encoder thread: x264's frame threads made the same frames encode to different bytes (and decoded pixels, up
# to 45 grey levels apart) in about a third of the runs on a loaded machine, so a regenerated dataset missed the
# feature cache and its numbers moved. A 320x240 video encodes fast enough single-threaded.
SINGLE_THREAD = {"x264-params": "threads=1"}
H264_OPTIONS = {"crf": "18", "preset": "veryfast", **SINGLE_THREAD}
LOSSLESS_CODEC = "libx264rgb"  # RGB H.264: decodes to exactly the rendered RGB frames
LOSSLESS_PIX_FMT = "rgb24"
# noise makes slower presets ~4x slower for ~10% smaller files
LOSSLESS_OPTIONS = {"qp": "0", "preset": "ultrafast", **SINGLE_THREAD}
FPS_MAX_DENOMINATOR = 1001


# ================================================================================================================
# Public data types


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

    def __post_init__(self):
        object.__setattr__(self, "events", tuple(self.events))
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.width < MIN_FRAME_SIZE or self.height < MIN_FRAME_SIZE:
            raise ValueError(f"frame size must be at least {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE}, "
                             f"got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.n_walkers < 0:
            raise ValueError(f"n_walkers must be >= 0, got {self.n_walkers}")
        for ev in self.events:
            if not isinstance(ev, AnomalyEvent):
                raise TypeError(f"events must be AnomalyEvent instances, got {ev!r}")
            if ev.end > self.n_frames:
                raise ValueError(f"event {ev} ends after the video ({self.n_frames} frames)")

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


# ================================================================================================================
# Small helpers


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _color(c) -> np.ndarray:
    return np.asarray(c, np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """float32 ``[h, w]`` smooth value noise (about unit std at the grid nodes), grid spacing ``cell`` pixels."""
    cell = max(float(cell), 1.0)
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    fy, fx = np.arange(h) / cell, np.arange(w) / cell
    iy, ix = fy.astype(np.int64), fx.astype(np.int64)
    ty, tx = (fy - iy).astype(np.float32), (fx - ix).astype(np.float32)
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)  # smoothstep
    top = grid[np.ix_(iy, ix)] * (1 - tx) + grid[np.ix_(iy, ix + 1)] * tx
    bottom = grid[np.ix_(iy + 1, ix)] * (1 - tx) + grid[np.ix_(iy + 1, ix + 1)] * tx
    return top * (1 - ty)[:, None] + bottom * ty[:, None]


def _blend(patch: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    """In place: ``patch = patch * (1 - alpha) + color * alpha``; patch float32 [h, w, 3], alpha [h, w]."""
    patch += alpha[..., None] * (color - patch)


def _capsule_alpha(X, Y, ax, ay, bx, by, radius):
    """Anti-aliased coverage [h, w] of the capsule (segment a-b thickened by ``radius``) at pixel centres X, Y."""
    dx, dy = bx - ax, by - ay
    px, py = X - ax, Y - ay
    l2 = dx * dx + dy * dy
    if l2 > 1e-9:
        t = np.clip((px * dx + py * dy) * (1.0 / l2), 0.0, 1.0)
        px = px - t * dx
        py = py - t * dy
    return np.clip(radius + 0.5 - np.sqrt(px * px + py * py), 0.0, 1.0)


def _rect_alpha(X, Y, x0, y0, x1, y1):
    """Anti-aliased coverage of the axis-aligned box [x0, x1] x [y0, y1]."""
    ax = np.clip(np.minimum(X - x0, x1 - X) + 0.5, 0.0, 1.0)
    ay = np.clip(np.minimum(Y - y0, y1 - Y) + 0.5, 0.0, 1.0)
    return ax * ay


def _ellipse_alpha(X, Y, cx, cy, rx, ry):
    """Soft-edged coverage of an ellipse (about one pixel of edge softness)."""
    d = np.sqrt(((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2)
    return np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0)


def _patch_grid(x0, y0, x1, y1, width, height):
    """Integer pixel window covering [x0, x1] x [y0, y1] clipped to the frame, and its X [1, w] / Y [h, 1]
    coordinate grids; None when the window is empty."""
    ix0, iy0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    ix1, iy1 = min(int(math.ceil(x1)) + 1, width), min(int(math.ceil(y1)) + 1, height)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    X = np.arange(ix0, ix1, dtype=np.float32)[None, :]
    Y = np.arange(iy0, iy1, dtype=np.float32)[:, None]
    return (slice(iy0, iy1), slice(ix0, ix1)), X, Y


# ================================================================================================================
# Background


def _render_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """float32 ``[h, w, 3]`` static scene: sky, facades with windows, paved ground, road band, props."""
    img = np.empty((h, w, 3), np.float32)
    Y = np.arange(h, dtype=np.float32)[:, None]
    X = np.arange(w, dtype=np.float32)[None, :]
    horizon = int(round(HORIZON_FRAC * h))

    # sky gradient
    t = (Y[:horizon] / max(horizon - 1, 1))[..., None]
    img[:horizon] = (_color(SKY_TOP_COLOR) * (1 - t) + _color(SKY_BOTTOM_COLOR) * t)

    # facades
    x = -rng.uniform(0, BUILDING_WIDTH_RANGE_W[1] * w)
    pitch_x, pitch_y = WINDOW_PITCH_FRAC[0] * h, WINDOW_PITCH_FRAC[1] * h
    while x < w:
        bw = rng.uniform(*BUILDING_WIDTH_RANGE_W) * w
        top = int(round(rng.uniform(*BUILDING_TOP_RANGE_FRAC) * h))
        grey = rng.uniform(*BUILDING_COLOR_RANGE)
        base = np.clip(grey + rng.uniform(-BUILDING_COLOR_SPREAD, BUILDING_COLOR_SPREAD, 3), 0, 255)
        xa, xb = max(int(round(x)), 0), min(int(round(x + bw)), w)
        if xb > xa and horizon > top:
            region = img[top:horizon, xa:xb]
            region[:] = base.astype(np.float32)
            lx = X[:, xa:xb] - x - 0.5 * pitch_x * (1 - WINDOW_FILL)
            ly = Y[top:horizon] - top - pitch_y * 0.6
            col_idx = np.floor(lx / pitch_x)
            row_idx = np.floor(ly / pitch_y)
            inside = (lx >= 0) & (ly >= 0) & (lx < bw - pitch_x * 0.5) & (ly < horizon - top - pitch_y * 1.2)
            glass = inside & (lx - col_idx * pitch_x < WINDOW_FILL * pitch_x) & \
                (ly - row_idx * pitch_y < WINDOW_FILL * pitch_y)
            n_rows, n_cols = int(row_idx.max()) + 2, int(col_idx.max()) + 2
            lit_table = rng.random((max(n_rows, 1), max(n_cols, 1))) < WINDOW_LIT_PROB
            lit = lit_table[np.clip(row_idx, 0, None).astype(int), np.clip(col_idx, 0, None).astype(int)]
            region[glass & ~lit] = _color(WINDOW_COLOR)
            region[glass & lit] = _color(WINDOW_LIT_COLOR)
        x += bw + rng.uniform(*BUILDING_GAP_RANGE_W) * w

    # paved ground: smooth two-octave noise and paving joints
    gh = h - horizon
    noise = (_smooth_noise(rng, gh, w, GROUND_NOISE_CELLS_FRAC[0] * h) * GROUND_NOISE_AMPLITUDE
             + _smooth_noise(rng, gh, w, GROUND_NOISE_CELLS_FRAC[1] * h) * GROUND_NOISE_AMPLITUDE * 0.5)
    ground = _color(GROUND_COLOR) + noise[..., None]
    tile = max(TILE_PITCH_FRAC * h, 3.0)
    joints = ((np.mod(Y[horizon:] - horizon, tile) < 1.0) | (np.mod(X, tile) < 1.0))
    ground[joints] *= TILE_LINE_GAIN
    img[horizon:] = ground

    # road band with kerbs and a dashed centre line
    r0, r1 = int(round(ROAD_BAND_FRAC[0] * h)), int(round(ROAD_BAND_FRAC[1] * h))
    road = _color(ROAD_COLOR) + (_smooth_noise(rng, r1 - r0, w, GROUND_NOISE_CELLS_FRAC[1] * h)
                                 * ROAD_NOISE_AMPLITUDE)[..., None]
    img[r0:r1] = road
    kerb = max(int(round(KERB_WIDTH_FRAC * h)), 1)
    img[r0:r0 + kerb] = _color(KERB_COLOR)
    img[r1 - kerb:r1] = _color(KERB_COLOR)
    mid = 0.5 * (r0 + r1)
    half_mark = max(LANE_MARK_WIDTH_FRAC * h * 0.5, 0.5)
    dash, gap = LANE_DASH_FRAC[0] * h, LANE_DASH_FRAC[1] * h
    ys = slice(int(math.floor(mid - half_mark)), int(math.ceil(mid + half_mark)))
    on = np.mod(X[0] + rng.uniform(0, dash + gap), dash + gap) < dash
    img[ys, on] = _color(LANE_MARK_COLOR)

    # static props (benches / planters), outside the road band
    for _ in range(int(rng.integers(N_PROPS_RANGE[0], N_PROPS_RANGE[1] + 1))):
        pw = rng.uniform(*PROP_SIZE_RANGE_FRAC[0]) * h
        ph = rng.uniform(*PROP_SIZE_RANGE_FRAC[1]) * h
        lo, hi = (horizon + ph + 2, r0 - 2) if rng.random() < 0.5 else (r1 + ph + 2, h - 2)
        y_bottom = rng.uniform(lo, max(lo, hi))  # (tiny frames: the prop may end up clipped)
        px = rng.uniform(0, max(w - pw, 0))
        colour = _color(PROP_COLORS[int(rng.integers(len(PROP_COLORS)))])
        ya, yb = int(round(y_bottom - ph)), int(round(y_bottom))
        xa, xb = int(round(px)), int(round(px + pw))
        ya, yb, xa, xb = max(ya, 0), min(yb, h), max(xa, 0), min(xb, w)
        if yb > ya and xb > xa:
            img[ya:yb, xa:xb] = colour
            img[ya:ya + max(1, (yb - ya) // 4), xa:xb] = np.minimum(colour * PROP_TOP_GAIN, 255)
    return np.clip(img, 0, 255)


# ================================================================================================================
# Pedestrian tracks


@dataclass
class _Track:
    """One person's appearance from frame ``t0`` for ``len(xy)`` frames. ``xy`` feet position [L, 2] px;
    ``tilt`` body angle [L] rad (0 upright, +-pi/2 lying); ``legs`` / ``arms`` [L, 2] limb angles rad relative
    to hanging straight down (positive swings toward -x for an upright body); ``event`` [L] index of the
    event the person takes part in on that frame, -1 for normal behaviour."""

    t0: int
    xy: np.ndarray
    tilt: np.ndarray
    legs: np.ndarray
    arms: np.ndarray
    event: np.ndarray
    height: float
    colors: dict

    @property
    def t1(self) -> int:
        return self.t0 + len(self.xy)


class _TrackBuilder:
    """Appends per-frame poses (one entry per video frame) for one person, starting next to ``start``."""

    def __init__(self, start, height: float, fps: float):
        self.start = np.asarray(start, np.float64)
        self.pos = self.start.copy()
        self.h = float(height)
        self.fps = float(fps)
        self.phase = 0.0
        self._chunks: list[tuple[np.ndarray, ...]] = []

    def __len__(self) -> int:
        return sum(len(c[0]) for c in self._chunks)

    def append(self, xy, tilt, legs, arms, phase, event):
        n = len(xy)
        self._chunks.append((np.asarray(xy, np.float64).reshape(n, 2), np.asarray(tilt, np.float64).reshape(n),
                             np.asarray(legs, np.float64).reshape(n, 2), np.asarray(arms, np.float64).reshape(n, 2),
                             np.asarray(phase, np.float64).reshape(n), np.full(n, event, np.int16)))
        if n:
            self.pos = self._chunks[-1][0][-1].copy()
            self.phase = float(self._chunks[-1][4][-1])

    def walk_to(self, target, speed_px: float, event: int = -1) -> None:
        """Straight walk (or run) to ``target`` at about ``speed_px`` pixels per frame, arriving exactly."""
        target = np.asarray(target, np.float64)
        delta = target - self.pos
        dist = float(np.hypot(*delta))
        n = max(1, int(math.ceil(dist / max(speed_px, 1e-6))))
        k = np.arange(1, n + 1, dtype=np.float64)
        xy = self.pos + delta[None, :] * (k / n)[:, None]
        step = dist / n
        phase = self.phase + 2 * math.pi * step * k / (STRIDE_FIG * self.h)
        amp = float(np.clip(step * self.fps / self.h / GAIT_REF_SPEED_FIG, *GAIT_AMPLITUDE_RANGE)) if dist else 0.0
        s = np.sin(phase)
        legs = np.stack([LEG_SWING_RAD * amp * s, -LEG_SWING_RAD * amp * s], 1)
        arms = np.stack([-ARM_SWING_RAD * amp * s, ARM_SWING_RAD * amp * s], 1)
        lean = RUN_LEAN_RAD * max(amp - 1.0, 0.0) * (1.0 if delta[0] >= 0 else -1.0)
        self.append(xy, np.full(n, lean), legs, arms, phase, event)

    def hold(self, n: int, event: int = -1) -> None:
        """Stand still for ``n`` frames with a slight sway."""
        if n <= 0:
            return
        k = np.arange(n, dtype=np.float64)
        sway = IDLE_SWAY_RAD * np.sin(2 * math.pi * k / (IDLE_SWAY_PERIOD_S * self.fps) + self.phase)
        legs = np.tile([IDLE_STANCE_RAD, -IDLE_STANCE_RAD], (n, 1))
        arms = np.tile([IDLE_ARM_RAD, -IDLE_ARM_RAD], (n, 1))
        self.append(np.tile(self.pos, (n, 1)), sway, legs, arms, np.full(n, self.phase), event)

    def truncate(self, n: int) -> None:
        """Keep only the first ``n`` frames (the builder continues from the pose of frame n-1)."""
        if not self._chunks:
            return
        cat = [np.concatenate(parts) for parts in zip(*self._chunks)]
        self._chunks = [tuple(a[:n] for a in cat)]
        if n > 0:
            self.pos = cat[0][n - 1].copy()
            self.phase = float(cat[4][n - 1])
        else:
            self.pos, self.phase = self.start.copy(), 0.0

    def build(self, t0: int, colors: dict) -> _Track:
        xy, tilt, legs, arms, _phase, event = (np.concatenate(parts) for parts in zip(*self._chunks))
        return _Track(int(t0), xy, tilt, legs, arms, event, self.h, colors)


def _figure_points(x: float, y: float, tilt: float, legs, arms, h: float) -> dict:
    """Joints of a figure with feet at (x, y), as (x, y) float tuples: feet, hip, shoulder, head, foot0/1,
    hand0/1, plus the unit body axis ``up``."""
    ux, uy = math.sin(tilt), -math.cos(tilt)  # body axis, pointing from the feet to the head

    def limb(ox, oy, angle, length):  # the downward axis (-ux, -uy) rotated by ``angle``
        c, s = math.cos(angle), math.sin(angle)
        return ox + (-ux * c + uy * s) * length, oy + (-ux * s - uy * c) * length

    leg_len = LEG_LEN_FIG * h
    lift = leg_len * math.cos(max(abs(legs[0]), abs(legs[1])))
    hip = (x + ux * lift, y + uy * lift)
    torso = TORSO_LEN_FIG * h
    shoulder = (hip[0] + ux * torso, hip[1] + uy * torso)
    neck = (NECK_FIG + HEAD_RADIUS_FIG) * h
    head = (shoulder[0] + ux * neck, shoulder[1] + uy * neck)
    arm_len = ARM_LEN_FIG * h
    return {
        "feet": (x, y), "hip": hip, "shoulder": shoulder, "head": head, "up": (ux, uy),
        "foot0": limb(*hip, legs[0], leg_len), "foot1": limb(*hip, legs[1], leg_len),
        "hand0": limb(*shoulder, arms[0], arm_len), "hand1": limb(*shoulder, arms[1], arm_len),
    }


def _figure_bbox(p: dict, h: float) -> tuple[float, float, float, float]:
    pts = [p[k] for k in ("foot0", "foot1", "hip", "shoulder", "head", "hand0", "hand1")]
    xs, ys = [q[0] for q in pts], [q[1] for q in pts]
    pad = max(TORSO_WIDTH_FIG, 2 * HEAD_RADIUS_FIG) * h * 0.5 + 1.0
    return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


@dataclass
class _FigureSprites:
    """Rendered figures of one frame, all on patches of one common size [ph, pw]: patch i covers pixels
    ``x0[i]:x0[i]+pw`` and ``y0[i]:y0[i]+ph`` (unclipped). Pasting figure i: ``img = img * transmit[i] +
    paint[i]`` (see :meth:`paste`)."""

    x0: np.ndarray  # int [n]
    y0: np.ndarray  # int [n]
    transmit: np.ndarray  # float32 [n, ph, pw]: fraction of the background that shows through
    paint: np.ndarray  # float32 [n, 3, ph, pw]: premultiplied colour laid over it

    def paste(self, img: np.ndarray, i: int) -> None:
        height, width = img.shape[:2]
        ph, pw = self.transmit.shape[1:]
        x0, y0 = int(self.x0[i]), int(self.y0[i])
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + pw, width), min(y0 + ph, height)
        if xa >= xb or ya >= yb:
            return
        src = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        region = img[ya:yb, xa:xb]
        region *= self.transmit[i][src][..., None]
        region += self.paint[i][(slice(None),) + src].transpose(1, 2, 0)


N_FIGURE_SEGMENTS = 7  # two legs, torso, two arms, hair disk, face disk
N_FIGURE_LAYERS = 6  # shadow, trousers, shirt, sleeves, hair, face (bottom to top)


def _render_figures(poses: list[tuple]) -> _FigureSprites:
    """Vectorised rendering of all figures of a frame.

    ``poses``: list of ``(x, y, tilt, legs, arms, height, layer_colors)`` with feet at (x, y) px and
    ``layer_colors`` float32 [N_FIGURE_LAYERS, 3]. Each figure is anti-aliased capsules (legs, torso, arms),
    disks (hair, face) and a soft ground shadow, composited bottom to top with the 'over' operator.
    """
    n = len(poses)
    seg = np.empty((n, N_FIGURE_SEGMENTS, 5), np.float32)  # ax, ay, bx, by, radius
    shadow = np.empty((n, 4), np.float32)  # cx, cy, rx, ry
    boxes = np.empty((n, 4), np.float64)
    colors = np.empty((n, N_FIGURE_LAYERS, 3), np.float32)
    for i, (x, y, tilt, legs, arms, h, layer_colors) in enumerate(poses):
        p = _figure_points(x, y, tilt, legs, arms, h)
        x0, y0, x1, y1 = _figure_bbox(p, h)
        cx = 0.5 * (x0 + x1)
        sx = max(SHADOW_RADII_FIG[0] * h, 0.5 * (x1 - x0) - 1.0, 0.75)
        sy = max(SHADOW_RADII_FIG[1] * h, 0.75)
        shadow[i] = (cx, y, sx, sy)
        boxes[i] = (min(x0, cx - sx), y0, max(x1, cx + sx), max(y1, y + sy))
        ux, uy = p["up"]
        hip, sh, head = p["hip"], p["shoulder"], p["head"]
        lw, aw, tw = LEG_WIDTH_FIG * h * 0.5, ARM_WIDTH_FIG * h * 0.5, TORSO_WIDTH_FIG * h * 0.5
        r = HEAD_RADIUS_FIG * h
        hair = (head[0] + ux * HAIR_OFFSET_FIG * h, head[1] + uy * HAIR_OFFSET_FIG * h)
        seg[i] = [
            (*hip, *p["foot0"], lw), (*hip, *p["foot1"], lw),
            (hip[0] + ux * tw * 0.6, hip[1] + uy * tw * 0.6, sh[0] - ux * tw * 0.4, sh[1] - uy * tw * 0.4, tw),
            (*sh, *p["hand0"], aw), (*sh, *p["hand1"], aw),
            (*hair, *hair, r), (*head, *head, 0.85 * r),
        ]
        colors[i] = layer_colors
    x0 = np.floor(boxes[:, 0]).astype(np.int64)
    y0 = np.floor(boxes[:, 1]).astype(np.int64)
    pw = int((np.ceil(boxes[:, 2]) - x0).max()) + 1 if n else 1
    ph = int((np.ceil(boxes[:, 3]) - y0).max()) + 1 if n else 1
    X = (x0[:, None] + np.arange(pw)).astype(np.float32)[:, None, None, :]  # [n, 1, 1, pw]
    Y = (y0[:, None] + np.arange(ph)).astype(np.float32)[:, None, :, None]  # [n, 1, ph, 1]

    ax, ay, bx, by, rad = (seg[:, :, j, None, None] for j in range(5))  # each [n, S, 1, 1]
    dx, dy = bx - ax, by - ay
    inv_l2 = 1.0 / np.maximum(dx * dx + dy * dy, 1e-9)
    px, py = X - ax, Y - ay  # [n, S, 1, pw], [n, S, ph, 1]
    t = np.clip((px * dx + py * dy) * inv_l2, 0.0, 1.0)  # [n, S, ph, pw]
    ex, ey = px - t * dx, py - t * dy
    cover = np.clip(rad + 0.5 - np.sqrt(ex * ex + ey * ey), 0.0, 1.0)

    layers = np.empty((n, N_FIGURE_LAYERS, ph, pw), np.float32)
    scx, scy, srx, sry = (shadow[:, j, None, None] for j in range(4))
    dist = np.sqrt(((X[:, 0] - scx) / srx) ** 2 + ((Y[:, 0] - scy) / sry) ** 2)
    layers[:, 0] = np.clip((1.0 - dist) * np.minimum(srx, sry) + 0.5, 0.0, 1.0) * SHADOW_ALPHA
    np.maximum(cover[:, 0], cover[:, 1], out=layers[:, 1])
    layers[:, 2] = cover[:, 2]
    np.maximum(cover[:, 3], cover[:, 4], out=layers[:, 3])
    layers[:, 4:] = cover[:, 5:]
    # over-compositing: result = bg * prod_j(1 - a_j) + sum_i c_i a_i prod_{j > i}(1 - a_j)
    transmit = 1.0 - layers[:, -1]  # running prod_{j > i}(1 - a_j), from the top layer down
    for i in range(N_FIGURE_LAYERS - 2, -1, -1):
        opaque = 1.0 - layers[:, i]
        layers[:, i] *= transmit  # layer i's weight a_i prod_{j > i}(1 - a_j)
        transmit *= opaque
    paint = np.matmul(colors.transpose(0, 2, 1), layers.reshape(n, N_FIGURE_LAYERS, ph * pw))
    return _FigureSprites(x0, y0, transmit, paint.reshape(n, 3, ph, pw))


def _person_style(rng: np.random.Generator, base_height: float) -> tuple[float, dict]:
    height = base_height * rng.uniform(*FIGURE_SCALE_RANGE)
    shirt = rng.uniform(*SHIRT_COLOR_RANGE, 3)
    colors = {
        "shirt": _color(shirt), "sleeve": _color(shirt * SLEEVE_GAIN),
        "trousers": _color(rng.uniform(*TROUSER_COLOR_RANGE, 3)),
        "skin": _color(SKIN_COLORS[int(rng.integers(len(SKIN_COLORS)))]),
        "hair": _color(HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))]),
    }
    # colour per drawing layer of _draw_figure: shadow (black), trousers, shirt, sleeves, hair, face
    colors["layers"] = np.stack([np.zeros(3, np.float32), colors["trousers"], colors["shirt"], colors["sleeve"],
                                 colors["hair"], colors["skin"]])
    return height, colors


# ================================================================================================================
# Scene


@dataclass(frozen=True)
class _Car:
    event: int
    t0: int
    n: int  # frames of this crossing
    direction: int  # +1 left-to-right, -1 right-to-left
    y_bottom: float
    length: float
    height: float
    color: tuple


@dataclass(frozen=True)
class _Fire:
    event: int
    start: int
    end: int
    cx: float
    cy: float  # base of the flames


class SyntheticScene:
    """Random-access renderer of one :class:`SyntheticSpec`.

    ``background``: uint8 ``[H, W, 3]`` static scene without people or noise. ``render(t)``: uint8
    ``[H, W, 3]`` RGB frame ``t``. ``anomaly_boxes(t)``: spatial ground truth of the events active at ``t``.
    """

    def __init__(self, spec: SyntheticSpec):
        self.spec = spec
        h, w = spec.height, spec.width
        self._bg = _render_background(_rng(spec.seed, STREAM_BACKGROUND), h, w)
        self.background = np.clip(self._bg + 0.5, 0, 255).astype(np.uint8)
        self.background.flags.writeable = False
        self._fig_h = FIGURE_HEIGHT_FRAC * h
        self._margin = OFFSCREEN_MARGIN_FIG * self._fig_h * FIGURE_SCALE_RANGE[1]
        self._walk_y = (WALK_ZONE_FRAC[0] * h, WALK_ZONE_FRAC[1] * h)
        self._road = (ROAD_BAND_FRAC[0] * h, ROAD_BAND_FRAC[1] * h)
        self._tracks: list[_Track] = []
        self._cars: list[_Car] = []
        self._fires: list[_Fire] = []
        self._scatters: list[tuple[int, int, np.ndarray, int]] = []  # (start, end, centre, event index)

        for i, ev in enumerate(spec.events):
            rng = _rng(spec.seed, STREAM_EVENTS, i)
            getattr(self, f"_setup_{ev.kind}")(i, ev, rng)
        for slot in range(spec.n_walkers):
            self._setup_walker(_rng(spec.seed, STREAM_WALKERS, slot))

        self._noise = None
        if SENSOR_NOISE_STD > 0:  # with the +0.5 that makes the uint8 cast round to nearest
            self._noise = _rng(spec.seed, STREAM_SENSOR_NOISE).standard_normal(
                (NOISE_BANK_SIZE, h + NOISE_BANK_PAD, w + NOISE_BANK_PAD, 3), dtype=np.float32)
            self._noise *= SENSOR_NOISE_STD
            self._noise += 0.5

        self._t0 = np.array([t.t0 for t in self._tracks], np.int64)
        self._t1 = np.array([t.t1 for t in self._tracks], np.int64)

    # ------------------------------------------------------------------ geometry helpers
    def _px_per_frame(self, speed_hps: float) -> float:
        return speed_hps * self.spec.height / self.spec.fps

    def _frames(self, seconds: float) -> int:
        return int(round(seconds * self.spec.fps))

    def _edge_point(self, rng, side: str) -> np.ndarray:
        """A point just outside the frame on ``side`` ('left', 'right', 'bottom') where feet are hidden."""
        w, h = self.spec.width, self.spec.height
        if side == "bottom":
            x = rng.uniform(WALK_X_RANGE_W[0] * w, WALK_X_RANGE_W[1] * w)
            return np.array([x, h + self._fig_h * FIGURE_SCALE_RANGE[1] + 1])
        x = -self._margin if side == "left" else w + self._margin
        return np.array([x, rng.uniform(*self._walk_y)])

    def _zone_point(self, rng, x_range_w=WALK_X_RANGE_W) -> np.ndarray:
        w = self.spec.width
        return np.array([rng.uniform(x_range_w[0] * w, x_range_w[1] * w), rng.uniform(*self._walk_y)])

    def _random_side(self, rng, exclude: str | None = None) -> str:
        if rng.random() < BOTTOM_ENTRY_PROB and exclude != "bottom":
            return "bottom"
        sides = [s for s in ("left", "right") if s != exclude]
        return sides[int(rng.integers(len(sides)))]

    def _walk_speed(self, rng) -> float:
        return self._px_per_frame(rng.uniform(*WALK_SPEED_RANGE_HPS))

    def _arrive(self, rng, builder: _TrackBuilder, spot, speed: float) -> None:
        """Walk from the builder's edge start to ``spot``, sometimes via one waypoint."""
        if rng.random() < WAYPOINT_PROB:
            builder.walk_to(self._zone_point(rng), speed)
        builder.walk_to(spot, speed)

    def _flee_target(self, q: np.ndarray, centre: np.ndarray, rng) -> np.ndarray:
        """Exit point (left, right or bottom edge) on the ray from ``centre`` through ``q`` (bent sideways when
        it would head into the buildings)."""
        w, h = self.spec.width, self.spec.height
        d = q - centre
        n = float(np.hypot(*d))
        d = d / n if n > 1e-6 else np.array([math.cos(a := rng.uniform(0, 2 * math.pi)), math.sin(a)])
        if d[1] < 0:  # heading up into the facades: run mostly sideways
            d = np.array([math.copysign(max(abs(d[0]), FLEE_MIN_SIDEWAYS), d[0] if d[0] != 0 else 1.0),
                          d[1] * FLEE_UP_SQUASH])
        x_exit = w + self._margin if d[0] > 0 else -self._margin
        y_exit = h + self._fig_h * FIGURE_SCALE_RANGE[1] + 1
        t_side = (x_exit - q[0]) / d[0] if abs(d[0]) > 1e-9 else math.inf
        t_bottom = (y_exit - q[1]) / d[1] if d[1] > 1e-9 else math.inf
        if t_bottom < t_side:
            return q + d * max(t_bottom, 0.0)
        return np.array([x_exit, float(np.clip(q[1] + d[1] * max(t_side, 0.0), self._walk_y[0], y_exit))])

    def _run_away(self, builder: _TrackBuilder, centre, end: int, now: int, event: int, rng) -> None:
        """Append a run from the builder's position out of the frame, leaving before frame ``end``."""
        target = self._flee_target(builder.pos, centre, rng)
        dist = float(np.hypot(*(target - builder.pos)))
        speed = max(self._px_per_frame(RUN_SPEED_HPS), dist / max(end - now, 1))
        builder.walk_to(target, speed, event=event)

    def _add(self, builder: _TrackBuilder, t0: int, colors: dict) -> None:
        if len(builder):
            self._tracks.append(builder.build(t0, colors))

    # ------------------------------------------------------------------ normal walkers
    def _setup_walker(self, rng) -> None:
        n = self.spec.n_frames
        t = -int(rng.uniform(0, WARMUP_S * self.spec.fps))
        while t < n:
            for s, e, _c, _i in self._scatters:  # nobody enters while a scatter is going on
                if s <= t < e:
                    t = e + self._frames(rng.uniform(*SPAWN_GAP_RANGE_S))
            if t >= n:
                break
            height, colors = _person_style(rng, self._fig_h)
            side_in = self._random_side(rng)
            side_out = self._random_side(rng, exclude=side_in)
            b = _TrackBuilder(self._edge_point(rng, side_in), height, self.spec.fps)
            speed = self._walk_speed(rng)
            if rng.random() < WAYPOINT_PROB:
                b.walk_to(self._zone_point(rng), speed)
            b.walk_to(self._edge_point(rng, side_out), speed)
            end = t + len(b)
            hits = [sc for sc in self._scatters if t <= sc[0] < end]
            if hits:
                s, e, centre, idx = min(hits, key=lambda sc: sc[0])
                b.truncate(s - t)
                self._run_away(b, centre, e, s, idx, rng)
                end = max(t + len(b), e)
            self._add(b, t, colors)
            t = end + self._frames(rng.uniform(*SPAWN_GAP_RANGE_S))

    # ------------------------------------------------------------------ events
    def _setup_vehicle(self, i: int, ev: AnomalyEvent, rng) -> None:
        w, h = self.spec.width, self.spec.height
        length, height = VEHICLE_LENGTH_FRAC * h, VEHICLE_HEIGHT_FRAC * h
        nominal = (w + length) / self._px_per_frame(VEHICLE_SPEED_HPS)
        duration = len(ev)
        n_cross = max(1, int(round(duration / nominal)))
        bounds = np.linspace(0, duration, n_cross + 1).round().astype(int)
        direction = 1 if rng.random() < 0.5 else -1
        r0, r1 = self._road
        for k in range(n_cross):
            lane_centre = r0 + (r1 - r0) * VEHICLE_LANES[0 if direction > 0 else 1]
            colour = VEHICLE_COLORS[int(rng.integers(len(VEHICLE_COLORS)))]
            self._cars.append(_Car(i, ev.start + int(bounds[k]), int(bounds[k + 1] - bounds[k]), direction,
                                   lane_centre + VEHICLE_LANE_OFFSET * height, length, height, colour))
            direction = -direction

    def _car_box(self, car: _Car, t: int):
        v = (self.spec.width + car.length) / car.n
        front = (t - car.t0 + 0.5) * v
        if car.direction > 0:
            x0 = front - car.length
        else:
            x0 = self.spec.width - front
        return x0, car.y_bottom - car.height, x0 + car.length, car.y_bottom

    def _setup_fight(self, i: int, ev: AnomalyEvent, rng) -> None:
        fps = self.spec.fps
        meet = self._zone_point(rng, FIGHT_X_RANGE_W)
        builders, colors = [], []
        for side, sign in (("left", -1.0), ("right", 1.0)):
            height, col = _person_style(rng, self._fig_h)
            b = _TrackBuilder(self._edge_point(rng, side), height, fps)
            self._arrive(rng, b, meet + np.array([sign * 0.5 * FIGHT_SEPARATION_FIG * self._fig_h, 0.0]),
                         self._walk_speed(rng))
            builders.append(b)
            colors.append(col)
        n = len(ev)
        k = np.arange(n, dtype=np.float64)
        angle = FIGHT_ORBIT_RAD * np.sin(2 * math.pi * k / (FIGHT_ORBIT_PERIOD_S * fps))
        half = 0.5 * FIGHT_SEPARATION_FIG * self._fig_h
        offset = np.stack([half * np.cos(angle), half * FIGHT_DEPTH_SQUASH * np.sin(angle)], 1)
        t0s = []
        for b, sign in zip(builders, (-1.0, 1.0)):
            t0s.append(ev.start - len(b))
            jitter = rng.normal(0.0, FIGHT_JITTER_FIG * self._fig_h, (n, 2))
            tilt = rng.uniform(-FIGHT_TILT_RAD, FIGHT_TILT_RAD, n)
            # arms point at the opponent: for the left fighter (sign -1) toward +x, i.e. negative angles
            arms = sign * rng.uniform(*FIGHT_ARM_RANGE_RAD, (n, 2))
            legs = rng.uniform(-FIGHT_LEG_RAD, FIGHT_LEG_RAD, (n, 2))
            b.append(meet + sign * offset + jitter, tilt, legs, arms, np.full(n, b.phase), i)
        for b, side, t0, col in zip(builders, ("left", "right"), t0s, colors):
            b.walk_to(self._edge_point(rng, side), self._walk_speed(rng))
            self._add(b, t0, col)

    def _setup_fall(self, i: int, ev: AnomalyEvent, rng) -> None:
        fps = self.spec.fps
        spot = self._zone_point(rng, FALL_X_RANGE_W)
        height, colors = _person_style(rng, self._fig_h)
        side = self._random_side(rng)
        b = _TrackBuilder(self._edge_point(rng, side), height, fps)
        self._arrive(rng, b, spot, self._walk_speed(rng))
        t0 = ev.start - len(b)
        n = len(ev)
        n_fall = min(max(self._frames(FALL_S), 1), n)
        n_rise = min(self._frames(RISE_S), (n - n_fall) // 3)
        n_lie = n - n_fall - n_rise
        direction = 1.0 if rng.random() < 0.5 else -1.0
        down = direction * math.pi / 2
        prog = (np.arange(1, n_fall + 1) / n_fall) ** 2  # accelerating topple
        rise = np.arange(1, n_rise + 1) / max(n_rise, 1)
        rise = rise * rise * (3 - 2 * rise)
        tilt = np.concatenate([down * prog, np.full(n_lie, down), down * (1 - rise)])
        flail = np.concatenate([prog, np.ones(n_lie), 1 - rise])
        arms = np.stack([FALL_ARM_RAD * flail, -FALL_ARM_RAD * flail], 1) * direction
        legs = np.stack([FALL_LEG_RAD * flail, -FALL_LEG_RAD * flail], 1)
        b.append(np.tile(spot, (n, 1)), tilt, legs, arms, np.full(n, b.phase), i)
        b.walk_to(self._edge_point(rng, self._random_side(rng)), self._walk_speed(rng))
        self._add(b, t0, colors)

    def _setup_scatter(self, i: int, ev: AnomalyEvent, rng) -> None:
        fps = self.spec.fps
        centre = self._zone_point(rng, SCATTER_CENTER_X_RANGE_W)
        self._scatters.append((ev.start, ev.end, centre, i))
        for _ in range(SCATTER_CROWD_SIZE):
            height, colors = _person_style(rng, self._fig_h)
            a = rng.uniform(0, 2 * math.pi)
            r = rng.uniform(*SCATTER_CROWD_RADIUS_FIG) * self._fig_h
            slot = centre + np.array([r * math.cos(a), r * math.sin(a) * FIGHT_DEPTH_SQUASH])
            slot[1] = np.clip(slot[1], *self._walk_y)
            b = _TrackBuilder(self._edge_point(rng, self._random_side(rng)), height, fps)
            self._arrive(rng, b, slot, self._walk_speed(rng))
            wait = self._frames(rng.uniform(*SCATTER_GATHER_RANGE_S))
            b.hold(wait)
            t0 = ev.start - len(b)
            self._run_away(b, centre, ev.end, ev.start, i, rng)
            self._add(b, t0, colors)

    def _setup_fire(self, i: int, ev: AnomalyEvent, rng) -> None:
        h = self.spec.height
        r0, r1 = self._road
        above, below = FIRE_ROAD_CLEARANCE_FRAC[0] * h, FIRE_ROAD_CLEARANCE_FRAC[1] * h
        bands = [(self._walk_y[0], r0 - above), (r1 + below, self._walk_y[1] - above)]
        bands = [b for b in bands if b[1] > b[0]] or [self._walk_y]
        band = bands[int(rng.integers(len(bands)))]
        cx = rng.uniform(FIRE_X_RANGE_W[0], FIRE_X_RANGE_W[1]) * self.spec.width
        self._fires.append(_Fire(i, ev.start, ev.end, cx, rng.uniform(*band)))

    def _fire_radius(self, fire: _Fire, t: int) -> float:
        g = (t - fire.start + 1) / (fire.end - fire.start)
        lo, hi = FIRE_RADIUS_RANGE_FRAC
        return (lo + (hi - lo) * g) * self.spec.height

    def _fire_box(self, fire: _Fire, t: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) px window that contains every flame tongue of frame t (not the glow)."""
        r = self._fire_radius(fire, t)
        top = (FIRE_TONGUE_HEIGHT_R[1] + FIRE_BASE_HEIGHT_R) * r
        return (fire.cx - FIRE_PATCH_HALF_WIDTH_R * r, fire.cy - top,
                fire.cx + FIRE_PATCH_HALF_WIDTH_R * r, fire.cy + FIRE_PATCH_BELOW_R * r)

    # ------------------------------------------------------------------ rendering
    def _active_tracks(self, t: int) -> list[_Track]:
        idx = np.nonzero((self._t0 <= t) & (t < self._t1))[0]
        return [self._tracks[j] for j in idx]

    def _draw_car(self, img: np.ndarray, car: _Car, t: int) -> None:
        x0, y0, x1, y1 = self._car_box(car, t)
        L, Hc = car.length, car.height
        grid = _patch_grid(x0 - 2, y0, x1 + 2, y0 + VEHICLE_SHADOW_SPAN[1] * Hc, img.shape[1], img.shape[0])
        if grid is None:
            return
        sl, X, Y = grid
        patch = img[sl]
        body = _color(car.color)

        def along(a, b):  # span [a, b] (fractions of the length from the rear) -> x interval
            return (x0 + a * L, x0 + b * L) if car.direction > 0 else (x1 - b * L, x1 - a * L)

        shadow = _rect_alpha(X, Y, x0 + VEHICLE_SHADOW_INSET * L, y0 + VEHICLE_SHADOW_SPAN[0] * Hc,
                             x1 - VEHICLE_SHADOW_INSET * L, y0 + VEHICLE_SHADOW_SPAN[1] * Hc)
        patch *= (1 - shadow * VEHICLE_SHADOW_ALPHA)[..., None]
        c0, c1 = along(*VEHICLE_CABIN_SPAN)
        _blend(patch, _rect_alpha(X, Y, c0, y0, c1, y0 + VEHICLE_CABIN_HEIGHT * Hc), body * VEHICLE_CABIN_GAIN)
        wx, wy = VEHICLE_WINDOW_INSET[0] * L, VEHICLE_WINDOW_INSET[1] * Hc
        _blend(patch, _rect_alpha(X, Y, c0 + wx, y0 + wy, c1 - wx, y0 + VEHICLE_WINDOW_BOTTOM * Hc),
               _color(VEHICLE_GLASS_COLOR))
        _blend(patch, _rect_alpha(X, Y, x0, y0 + VEHICLE_BODY_SPAN[0] * Hc, x1, y0 + VEHICLE_BODY_SPAN[1] * Hc),
               body)
        wr = VEHICLE_WHEEL_RADIUS * Hc
        for pos in VEHICLE_WHEEL_POSITIONS:
            cx = along(pos, pos)[0]
            _blend(patch, _capsule_alpha(X, Y, cx, y1 - wr, cx, y1 - wr, wr), _color(VEHICLE_WHEEL_COLOR))
        ly0, ly1 = y0 + VEHICLE_LIGHT_SPAN[0] * Hc, y0 + VEHICLE_LIGHT_SPAN[1] * Hc
        hx = along(1 - VEHICLE_LIGHT_LENGTH, 1)
        tx = along(0, VEHICLE_LIGHT_LENGTH)
        _blend(patch, _rect_alpha(X, Y, hx[0], ly0, hx[1], ly1), _color(VEHICLE_HEADLIGHT_COLOR))
        _blend(patch, _rect_alpha(X, Y, tx[0], ly0, tx[1], ly1), _color(VEHICLE_TAILLIGHT_COLOR))

    def _draw_fire(self, img: np.ndarray, fire: _Fire, t: int) -> None:
        rng = _rng(self.spec.seed, STREAM_FIRE_FLICKER, fire.event, t)
        r = self._fire_radius(fire, t)
        flicker = rng.uniform(*FIRE_FLICKER_RANGE)
        growth = (t - fire.start + 1) / (fire.end - fire.start)
        glow_col = _color(FIRE_GLOW_COLOR)
        img += (FIRE_AMBIENT_STRENGTH * growth * flicker) * glow_col
        rg = FIRE_GLOW_RADIUS_R * r
        gy = fire.cy - r
        grid = _patch_grid(fire.cx - rg, gy - rg, fire.cx + rg, gy + rg, img.shape[1], img.shape[0])
        if grid is not None:
            sl, X, Y = grid
            d2 = ((X - fire.cx) ** 2 + (Y - gy) ** 2) / (2 * (FIRE_GLOW_SIGMA * rg) ** 2)
            img[sl] += (FIRE_GLOW_STRENGTH * flicker * np.exp(-d2))[..., None] * glow_col
        grid = _patch_grid(*self._fire_box(fire, t), img.shape[1], img.shape[0])
        if grid is None:
            return
        sl, X, Y = grid
        field_ = _ellipse_alpha(X, Y, fire.cx, fire.cy, r, FIRE_BASE_HEIGHT_R * r) * FIRE_BASE_FIELD
        for _ in range(FIRE_TONGUES):
            ox = rng.uniform(-FIRE_TONGUE_SPREAD_R, FIRE_TONGUE_SPREAD_R) * r
            height = r * rng.uniform(*FIRE_TONGUE_HEIGHT_R) * flicker
            width = r * rng.uniform(*FIRE_TONGUE_WIDTH_R)
            dx = (X - (fire.cx + ox)) / width
            dy = (Y - (fire.cy - 0.5 * height)) / (0.55 * height)
            field_ = np.maximum(field_, np.exp(-(dx * dx + dy * dy)))
        alpha = np.clip((field_ - FIRE_ALPHA_THRESHOLD) / FIRE_ALPHA_SOFTNESS, 0.0, 1.0)
        stops = np.array([s for s, _ in FIRE_PALETTE], np.float32)
        cols = np.array([c for _, c in FIRE_PALETTE], np.float32)
        colour = np.stack([np.interp(field_, stops, cols[:, ch]) for ch in range(3)], -1).astype(np.float32)
        patch = img[sl]
        patch += alpha[..., None] * (colour - patch)

    def render_float(self, t: int) -> np.ndarray:
        """float32 ``[H, W, 3]`` frame ``t`` before sensor noise and quantisation."""
        if not 0 <= t < self.spec.n_frames:
            raise IndexError(f"frame {t} outside [0, {self.spec.n_frames})")
        img = self._bg.copy()
        w, h = self.spec.width, self.spec.height
        poses, items = [], []
        for tr in self._active_tracks(t):
            k = t - tr.t0
            x, y = tr.xy[k]
            reach = tr.height * 1.2  # farther than any limb or shadow reaches from the feet
            if -reach < x < w + reach and -reach < y < h + reach:
                items.append((float(y), 0, len(poses)))
                poses.append((x, y, tr.tilt[k], tr.legs[k], tr.arms[k], tr.height, tr.colors["layers"]))
        sprites = _render_figures(poses) if poses else None
        for car in self._cars:
            if car.t0 <= t < car.t0 + car.n:
                items.append((car.y_bottom, 1, car))
        items.sort(key=lambda it: (it[0], it[1]))  # painter's order: farther (higher) objects first
        for _y, kind, obj in items:
            if kind == 0:
                sprites.paste(img, obj)
            else:
                self._draw_car(img, obj, t)
        for fire in self._fires:
            if fire.start <= t < fire.end:
                self._draw_fire(img, fire, t)
        return img

    def render(self, t: int) -> np.ndarray:
        """uint8 ``[H, W, 3]`` RGB frame ``t`` (deterministic; independent of render order)."""
        img = self.render_float(t)
        if self._noise is None:
            img += 0.5  # round to nearest on the uint8 cast
        else:
            k, dy, dx = _rng(self.spec.seed, STREAM_SENSOR_NOISE, t).integers(
                0, (NOISE_BANK_SIZE, NOISE_BANK_PAD + 1, NOISE_BANK_PAD + 1))
            img += self._noise[k, dy:dy + self.spec.height, dx:dx + self.spec.width]
        np.clip(img, 0, 255, out=img)
        return img.astype(np.uint8)

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self.spec.n_frames):
            yield self.render(t)

    def anomaly_boxes(self, t: int) -> list[tuple[str, int, int, int, int]]:
        """Spatial ground truth at frame ``t``: ``(kind, x0, y0, x1, y1)`` per active event, pixel box clipped to
        the frame (x1/y1 exclusive). Events with nothing visible (e.g. a scatter after everyone left) give no
        box."""
        w, h = self.spec.width, self.spec.height
        boxes: dict[int, list[float]] = {}

        def grow(i, box):
            b = boxes.setdefault(i, [math.inf, math.inf, -math.inf, -math.inf])
            b[0], b[1] = min(b[0], box[0]), min(b[1], box[1])
            b[2], b[3] = max(b[2], box[2]), max(b[3], box[3])

        for tr in self._active_tracks(t):
            k = t - tr.t0
            if tr.event[k] >= 0:
                p = _figure_points(*tr.xy[k], tr.tilt[k], tr.legs[k], tr.arms[k], tr.height)
                grow(int(tr.event[k]), _figure_bbox(p, tr.height))
        for car in self._cars:
            if car.t0 <= t < car.t0 + car.n:
                grow(car.event, self._car_box(car, t))
        for fire in self._fires:
            if fire.start <= t < fire.end:
                grow(fire.event, self._fire_box(fire, t))
        out = []
        for i in sorted(boxes):
            x0, y0, x1, y1 = boxes[i]
            x0, y0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
            x1, y1 = min(int(math.ceil(x1)) + 1, w), min(int(math.ceil(y1)) + 1, h)
            if x1 > x0 and y1 > y0:
                out.append((self.spec.events[i].kind, x0, y0, x1, y1))
        return out


# ================================================================================================================
# Rendering and encoding


def render_frames(spec: SyntheticSpec) -> Iterator[np.ndarray]:
    """Yields ``spec.n_frames`` frames, uint8 ``[H, W, 3]`` RGB, one per frame index; deterministic in ``spec``."""
    yield from SyntheticScene(spec)


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)


def write_video(spec: SyntheticSpec, path, *, lossless: bool = False, codec_options=None) -> Path:
    """Render ``spec`` and encode it with PyAV, one frame at a time (never holding the whole video).

    Default: H.264 (``libx264``, ``yuv420p``, :data:`H264_OPTIONS`), needs even width and height.
    ``lossless=True``: RGB H.264 (``libx264rgb``, ``rgb24``, ``qp=0``), whose decoded RGB frames equal the
    rendered frames exactly (PyAV and decord); works in ``.mp4`` and ``.mkv``. ``codec_options`` (str -> str)
    override the defaults. The stream's frame rate is ``spec.fps``. Returns the path.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if lossless:
        codec, pix_fmt, options = LOSSLESS_CODEC, LOSSLESS_PIX_FMT, dict(LOSSLESS_OPTIONS)
    else:
        codec, pix_fmt, options = H264_CODEC, H264_PIX_FMT, dict(H264_OPTIONS)
        if spec.width % 2 or spec.height % 2:
            raise ValueError(f"H.264 {H264_PIX_FMT} needs an even frame size, got {spec.width}x{spec.height} "
                             f"(use an even size or lossless=True)")
    options.update({str(k): str(v) for k, v in (codec_options or {}).items()})
    rate = _fps_fraction(spec.fps)
    time_base = Fraction(rate.denominator, rate.numerator)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, pix_fmt
        stream.time_base = time_base
        for i, frame in enumerate(render_frames(spec)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, time_base
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# ================================================================================================================
# Random events


def random_events(rng, n_frames: int, n_events: int = 1, kinds: Sequence[str] = ANOMALY_KINDS,
                  min_len: int = DEFAULT_MIN_EVENT_LEN, max_len: int = DEFAULT_MAX_EVENT_LEN
                  ) -> tuple[AnomalyEvent, ...]:
    """``n_events`` non-overlapping events sorted by start, kinds drawn uniformly from ``kinds``.

    ``rng``: a ``numpy.random.Generator`` or an int seed. Lengths are uniform in ``[min_len, max_len]`` frames,
    reduced when the video is too short: :data:`EVENT_EDGE_MARGIN` of the video is kept free at each end and
    :data:`EVENT_GAP` between events. Raises ValueError if not even 1-frame events fit.
    """
    rng = np.random.default_rng(rng)
    kinds = tuple(kinds)
    if not kinds or any(k not in ANOMALY_KINDS for k in kinds):
        raise ValueError(f"kinds must be a non-empty subset of {ANOMALY_KINDS}, got {kinds}")
    if n_events < 0 or min_len < 1 or max_len < min_len:
        raise ValueError(f"need n_events >= 0 and 1 <= min_len <= max_len, got {n_events}, {min_len}, {max_len}")
    if n_events == 0:
        return ()
    margin, gap = int(EVENT_EDGE_MARGIN * n_frames), int(EVENT_GAP * n_frames)
    avail = n_frames - 2 * margin - (n_events - 1) * gap
    if avail < n_events:
        raise ValueError(f"{n_events} events do not fit in {n_frames} frames")
    hi = min(max_len, avail // n_events)
    lo = min(min_len, hi)
    lengths = rng.integers(lo, hi + 1, size=n_events)
    slack = int(avail - lengths.sum())
    cuts = np.sort(rng.integers(0, slack + 1, size=n_events))
    extra = np.diff(np.concatenate([[0], cuts, [slack]]))
    kind_idx = rng.integers(len(kinds), size=n_events)
    events, pos = [], margin
    for j in range(n_events):
        pos += int(extra[j])
        events.append(AnomalyEvent(kinds[int(kind_idx[j])], pos, pos + int(lengths[j])))
        pos += int(lengths[j]) + gap
    return tuple(events)


# ================================================================================================================
# Datasets and annotations



@dataclass(frozen=True)
class SyntheticEntry:
    """One generated video: file ``name`` (e.g. ``Fight001_synth.mp4``), absolute ``path``, ``label`` 0/1,
    UCF-style ``class_name`` (``Normal`` or a :data:`CLASS_NAMES` value), ``events``, ``split`` (train/test)
    and the per-video ``seed``."""

    name: str
    path: Path
    label: int
    class_name: str
    events: tuple[AnomalyEvent, ...]
    split: str
    seed: int


@dataclass(frozen=True)
class SyntheticDataset:
    """Result of :func:`generate_dataset`; ``entries`` in generation order (normal videos first)."""

    root: Path
    entries: tuple[SyntheticEntry, ...]
    annotation_path: Path
    split_path: Path
    labels_path: Path  # labels.csv in data.datasets' CSV format: load_dataset(root) reads it

    def by_split(self, split: str) -> tuple[SyntheticEntry, ...]:
        return tuple(e for e in self.entries if e.split == split)


def video_seed(seed: int, index: int, anomalous: bool) -> int:
    """Seed of dataset video ``index`` (counted separately for normal and anomalous videos)."""
    return int(np.random.SeedSequence([int(seed), STREAM_VIDEO_SEED, int(anomalous), int(index)])
               .generate_state(1, np.uint32)[0])


def format_annotation_line(name: str, class_name: str, events: Sequence[AnomalyEvent]) -> str:
    """UCF-Crime annotation line (no newline): ``name  class  s1  e1  s2  e2  `` with EXCLUSIVE ends
    (``e = end``, method.md §7's ``gt[s:e] = 1``), ``-1  -1`` for unused intervals, two trailing spaces like the
    official file."""
    if len(events) > 2:
        raise ValueError(f"{name}: the UCF-Crime format holds at most 2 intervals, got {len(events)}")
    nums: list[int] = []
    for ev in events:
        nums += [ev.start, ev.end]
    nums += [-1] * (4 - len(nums))
    return "  ".join([name, class_name, *map(str, nums)]) + "  "


def _assign_splits(entries: list[tuple[str, int, str]], seed: int) -> dict[str, str]:
    """Deterministic stratified split: per label, classes shuffled and interleaved round-robin, the first
    ``round(TEST_FRACTION * n)`` (at least 1 and at most n-1 when n >= 2) go to test."""
    rng = _rng(seed, STREAM_SPLIT)
    split: dict[str, str] = {}
    for label in (0, 1):
        by_class: dict[str, list[str]] = {}
        for name, lab, cls in entries:
            if lab == label:
                by_class.setdefault(cls, []).append(name)
        classes = sorted(by_class)
        classes = [classes[j] for j in rng.permutation(len(classes))]
        queues = [[by_class[c][j] for j in rng.permutation(len(by_class[c]))] for c in classes]
        order: list[str] = []
        while any(queues):
            for q in queues:
                if q:
                    order.append(q.pop(0))
        n = len(order)
        n_test = int(round(TEST_FRACTION * n))
        if n >= 2:
            n_test = min(max(n_test, 1), n - 1)
        for j, name in enumerate(order):
            split[name] = "test" if j < n_test else "train"
    return split


def generate_dataset(out_dir, *, n_normal: int, n_anomalous: int, seed: int = 0,
                     n_frames: int = DEFAULT_N_FRAMES, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
                     fps: float = DEFAULT_FPS, lossless: bool = False, progress: bool = False) -> SyntheticDataset:
    """Write a UCF-Crime-like synthetic dataset under ``out_dir``:

    - ``videos/Normal_Videos_XXX_synth.mp4`` and ``videos/<Kind>XXX_synth.mp4`` (Kind in :data:`CLASS_NAMES`,
      XXX a 3-digit per-class counter from 001); anomalous classes are balanced (shuffled round-robin);
      each anomalous video holds 1 interval (2 with probability :data:`SECOND_EVENT_PROB`) of its class;
    - ``Temporal_Anomaly_Annotation.txt`` (UCF-Crime format, exclusive ends, see :func:`format_annotation_line`);
    - ``split.csv``: header ``name,label,class,split``, deterministic stratified ~70/30 train/test;
    - ``labels.csv``: header ``name,label,class,split,intervals`` (intervals ``s-e;s-e``, end exclusive), the
      CSV format of ``data.datasets``, so ``load_dataset(out_dir)`` loads the generated dataset.

    Each video's seed is :func:`video_seed` ``(seed, index, anomalous)``. Event lengths are
    :data:`DATASET_EVENT_LEN_FRACTION` of ``n_frames``. ``progress`` shows a tqdm bar.
    """
    root = Path(out_dir)
    vid_dir = root / VIDEOS_DIR
    if n_normal < 0 or n_anomalous < 0:
        raise ValueError("n_normal and n_anomalous must be >= 0")
    min_len = max(1, int(round(DATASET_EVENT_LEN_FRACTION[0] * n_frames)))
    max_len = max(min_len, int(round(DATASET_EVENT_LEN_FRACTION[1] * n_frames)))

    plan: list[tuple[str, int, str, SyntheticSpec]] = []
    for j in range(n_normal):
        s = video_seed(seed, j, False)
        spec = SyntheticSpec(n_frames, width, height, fps, DEFAULT_N_WALKERS, (), s)
        plan.append((f"Normal_Videos_{j + 1:03d}{VIDEO_SUFFIX}.mp4", 0, NORMAL_CLASS, spec))
    kind_rng = _rng(seed, STREAM_DATASET_KINDS)
    counters = {k: 0 for k in ANOMALY_KINDS}
    kinds_order: list[str] = []
    for j in range(n_anomalous):
        if j % len(ANOMALY_KINDS) == 0:
            cycle = [ANOMALY_KINDS[q] for q in kind_rng.permutation(len(ANOMALY_KINDS))]
        kinds_order.append(cycle[j % len(ANOMALY_KINDS)])
    for j, kind in enumerate(kinds_order):
        s = video_seed(seed, j, True)
        ev_rng = _rng(seed, STREAM_DATASET_EVENTS, j)
        n_ev = 2 if ev_rng.random() < SECOND_EVENT_PROB else 1
        try:
            events = random_events(ev_rng, n_frames, n_ev, (kind,), min_len, max_len)
        except ValueError:
            events = random_events(ev_rng, n_frames, 1, (kind,), min_len, max_len)
        counters[kind] += 1
        spec = SyntheticSpec(n_frames, width, height, fps, DEFAULT_N_WALKERS, events, s)
        plan.append((f"{CLASS_NAMES[kind]}{counters[kind]:03d}{VIDEO_SUFFIX}.mp4", 1, CLASS_NAMES[kind], spec))

    splits = _assign_splits([(name, label, cls) for name, label, cls, _ in plan], seed)
    if not lossless and (width % 2 or height % 2):
        raise ValueError(f"H.264 {H264_PIX_FMT} needs an even frame size, got {width}x{height} "
                         f"(use an even size or lossless)")
    vid_dir.mkdir(parents=True, exist_ok=True)
    iterator = plan
    if progress:
        from tqdm import tqdm
        iterator = tqdm(plan, desc="synthetic videos", unit="video")
    entries = []
    for name, label, cls, spec in iterator:
        path = write_video(spec, vid_dir / name, lossless=lossless)
        entries.append(SyntheticEntry(name, path.resolve(), label, cls, spec.events, splits[name], spec.seed))

    ann_path = root / ANNOTATION_FILE
    ann_path.write_text("".join(format_annotation_line(e.name, e.class_name, e.events) + "\n" for e in entries),
                        encoding="utf-8")
    split_path = root / SPLIT_FILE
    with split_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["name", "label", "class", "split"])
        for e in entries:
            writer.writerow([e.name, e.label, e.class_name, e.split])
    labels_path = root / LABELS_FILE
    with labels_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["name", "label", "class", "split", "intervals"])
        for e in entries:
            writer.writerow([e.name, e.label, e.class_name, e.split,
                             ";".join(f"{ev.start}-{ev.end}" for ev in e.events)])
    return SyntheticDataset(root.resolve(), tuple(entries), ann_path.resolve(), split_path.resolve(),
                            labels_path.resolve())


# ================================================================================================================
# CLI


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m data.synthetic OUT_DIR --normal N --anomalous M ...``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic",
        description="Write a synthetic UCF-Crime-like dataset (videos, Temporal_Anomaly_Annotation.txt, "
                    "split.csv, labels.csv) with known anomalies: " + ", ".join(ANOMALY_KINDS) + ".")
    parser.add_argument("out_dir", help="output folder (created if missing)")
    parser.add_argument("--normal", type=int, required=True, help="number of normal videos")
    parser.add_argument("--anomalous", type=int, required=True, help="number of anomalous videos")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--frames", type=int, default=DEFAULT_N_FRAMES,
                        help=f"frames per video (default: {DEFAULT_N_FRAMES})")
    parser.add_argument("--size", type=_parse_size, default=(DEFAULT_WIDTH, DEFAULT_HEIGHT),
                        help=f"frame size WxH (default: {DEFAULT_WIDTH}x{DEFAULT_HEIGHT})")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frame rate (default: {DEFAULT_FPS:g})")
    parser.add_argument("--lossless", action="store_true", help="lossless RGB H.264 instead of yuv420p H.264")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    width, height = args.size
    t0 = time.perf_counter()
    try:
        ds = generate_dataset(args.out_dir, n_normal=args.normal, n_anomalous=args.anomalous, seed=args.seed,
                              n_frames=args.frames, width=width, height=height, fps=args.fps,
                              lossless=args.lossless, progress=not args.quiet)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_test = len(ds.by_split("test"))
    print(f"wrote {len(ds.entries)} videos ({args.normal} normal, {args.anomalous} anomalous; {width}x{height}, "
          f"{args.frames} frames @ {args.fps:g} fps, {'lossless ' if args.lossless else ''}H.264; "
          f"{len(ds.entries) - n_test} train / {n_test} test) to {ds.root} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
