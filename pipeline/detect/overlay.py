"""A copy of a video with its anomaly score drawn as a bar along the bottom edge (``pipeline.detect --overlay``) and,
for a spatial run, its anomaly map as a heatmap with the current event's box (:mod:`pipeline.detect.maps`).

Frames are decoded, drawn on and encoded one at a time, so memory does not grow with the video's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_write
from pipeline.detect.maps import heatmap_overlay
from pipeline.alert_rule import AlertRule

BAR_HEIGHT_FRACTION = 0.06  # of the frame height
BAR_MIN_HEIGHT = 6  # pixels
BAR_BACKGROUND = (40, 40, 40)
BAR_NORMAL = (60, 180, 75)  # score below the threshold
BAR_ANOMALOUS = (230, 25, 75)  # score at or above the threshold
THRESHOLD_MARK = (255, 255, 255)
OVERLAY_CODEC = "libx264"
OVERLAY_OPTIONS = {"crf": "20", "preset": "veryfast"}


def draw_score_bar(frame: np.ndarray, score: float, rule: AlertRule) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> the same frame (modified in place) with a bar ``score * W`` wide at the bottom,
    green below the rule's threshold and red at or above it (:meth:`AlertRule.above`), and a white tick where the
    threshold lies."""
    threshold = rule.threshold
    h, w = frame.shape[:2]
    bar = max(BAR_MIN_HEIGHT, int(round(h * BAR_HEIGHT_FRACTION)))
    filled = int(round(min(max(score, 0.0), 1.0) * w))
    frame[h - bar:, :] = BAR_BACKGROUND
    frame[h - bar:, :filled] = BAR_ANOMALOUS if rule.above(score) else BAR_NORMAL
    tick = min(int(round(threshold * w)), w - 1)
    frame[h - bar:, tick] = THRESHOLD_MARK
    return frame


def write_overlay(source: Path, dest: Path, frame_scores: np.ndarray, *, fps: float, rule: AlertRule,
                  timeline: str | None = None, cell_maps: np.ndarray | None = None,
                  boxes: Sequence[tuple[int, int, tuple[int, int, int, int]]] = ()) -> Path:
    """Re-encode ``source`` (H.264) with a score bar on every frame, coloured by ``rule``. ``frame_scores`` ``[N]``:
    one score per frame of ``timeline`` (``data.decode``; None: the default, the constant-rate grid the scores were
    made on, so the copy is a constant-rate file at ``fps``); frames beyond it (a decoder that finds more) keep the
    last score. ``cell_maps`` ``[T_snippets, rows, cols]`` (a spatial run's maps): frame j shows snippet
    ``min(j // 16, T - 1)``'s map as a heatmap (:func:`pipeline.detect.maps.heatmap_overlay`), under the bar;
    ``boxes``: ``(first frame, end frame, (x0, y0, x1, y1))`` per event, its box drawn on frames ``[first, end)``.
    Returns ``dest``."""
    import av

    from data.decode import DEFAULT_TIMELINE, SNIPPET_FRAMES, open_video

    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)

    def encode(f) -> None:
        with open_video(source, timeline=timeline or DEFAULT_TIMELINE) as video, \
                av.open(f, mode="w", format="mp4") as out:
            stream = None
            index = 0
            for snippet in video.snippets(1):  # one frame at a time
                frame = snippet[0]
                h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2  # yuv420p needs even sizes
                if stream is None:
                    stream = out.add_stream(OVERLAY_CODEC, rate=rate, options=dict(OVERLAY_OPTIONS))
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                score = float(frame_scores[min(index, len(frame_scores) - 1)])
                image = np.ascontiguousarray(frame[:h, :w])
                if cell_maps is not None:
                    box = next((b for first, end, b in boxes if first <= index < end), None)
                    image = heatmap_overlay(image, cell_maps[min(index // SNIPPET_FRAMES, len(cell_maps) - 1)],
                                            box=box)
                image = draw_score_bar(image, score, rule)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    out.mux(packet)
                index += 1
            if stream is not None:
                for packet in stream.encode(None):
                    out.mux(packet)

    return atomic_write(dest, encode)
