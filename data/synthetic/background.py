"""The static background of the plaza: sky, building facades with windows, the paved ground plane with its
tiles and props, and the two-lane road band."""

from __future__ import annotations

import math

import numpy as np

from data.synthetic.drawing import _color, _smooth_noise

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
