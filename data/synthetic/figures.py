"""Pedestrians: their tracks (straight or piecewise-linear paths with a gait phase, entering and leaving at the
frame edges), their articulated poses (legs, torso, arms, head) and the sprites they are drawn with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data.synthetic.background import HORIZON_FRAC
from data.synthetic.drawing import _color

# ----------------------------------------------------------------------------------------------------------------
# Pedestrians. _FIG sizes are fractions of the figure height.
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
    # sum_i c_i w_i, accumulated layer by layer in a fixed order. Not np.matmul: BLAS picks its kernel and its
    # split across threads at run time, so the float32 sums (and after H.264 encoding, whole frames) differed
    # between processes of the same seed.
    paint = np.zeros((n, 3, ph, pw), np.float32)
    for i in range(N_FIGURE_LAYERS):
        paint += colors[:, i, :, None, None] * layers[:, i, None]
    return _FigureSprites(x0, y0, transmit, paint)


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
