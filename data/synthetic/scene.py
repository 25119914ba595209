"""The random-access renderer of one spec (:class:`SyntheticScene`): background, walkers, the five anomaly
kinds (cars crossing, a fight, a fall, a crowd scattering, a fire) and sensor noise, frame by frame."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from data.synthetic.background import ROAD_BAND_FRAC, _render_background
from data.synthetic.drawing import _blend, _capsule_alpha, _color, _ellipse_alpha, _patch_grid, _rect_alpha
from data.synthetic.figures import (BOTTOM_ENTRY_PROB, FIGURE_SCALE_RANGE, FLEE_MIN_SIDEWAYS,
                                    FLEE_UP_SQUASH, OFFSCREEN_MARGIN_FIG, RUN_SPEED_HPS, SPAWN_GAP_RANGE_S,
                                    WALK_SPEED_RANGE_HPS, WALK_X_RANGE_W, WALK_ZONE_FRAC, WARMUP_S, WAYPOINT_PROB,
                                    _figure_bbox, _figure_points, _person_style, _render_figures, _Track,
                                    _TrackBuilder)
from data.synthetic.spec import (STREAM_BACKGROUND, STREAM_EVENTS, STREAM_FIRE_FLICKER, STREAM_SENSOR_NOISE,
                                 STREAM_WALKERS, AnomalyEvent, SyntheticSpec, _rng)

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
        self._bg = _render_background(_rng(spec.background_seed, STREAM_BACKGROUND), h, w)
        self.background = np.clip(self._bg + 0.5, 0, 255).astype(np.uint8)
        self.background.flags.writeable = False
        self._fig_h = spec.figure_height * h
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
