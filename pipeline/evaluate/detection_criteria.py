"""The region- and track-based detection criteria (RBDC, TBDC) of Ramachandra & Jones, "Street Scene: A new dataset
and evaluation protocol for video anomaly detection" (WACV 2020), on per-frame anomaly maps against pixel masks.

Inputs, per video: ``maps`` float ``[T, H, W]`` (an anomaly map per frame, at the frame's size) and ``masks`` bool
``[T, H, W]`` (1 = an anomalous pixel, :mod:`data.pixel_masks`). For each threshold t of a sweep:

- **Predicted regions** of a frame: the 8-connected components of ``map >= t``.
- **Ground-truth regions** of a frame: the 8-connected components of its mask.
- A ground-truth region is **detected** when some predicted region of its frame overlaps it with IoU (pixels)
  ``>= beta`` (:data:`RBDC_BETA`); a predicted region is a **false positive** when its IoU with every
  ground-truth region of its frame is ``< beta`` (a region in a frame without anomaly always is).
- **Tracks**: one anomaly through time. A ground-truth region of frame f and one of frame f + 1 belong to the same
  track when they share a pixel; a track is a connected component of that relation (the 3-D components of the
  masks, 8-connected in the frame, linked in time only through the same pixel, :data:`TRACK_STRUCTURE`). So a
  track ends at a frame without its object, two objects that touch become one track, and an object that moves
  farther than its own extent between two frames starts a new one. A track is **detected** when at least
  ``alpha`` (:data:`TBDC_ALPHA`) of its regions are detected.
- **Curves**: the region detection rate (detected regions / all ground-truth regions) and the track detection rate
  (detected tracks / all tracks), each against the false positives per frame (false positive regions / all
  frames, normal frames included), one point per threshold.

RBDC and TBDC are the areas under those curves for false positives per frame from 0 to
:data:`MAX_FP_PER_FRAME` (1, as the paper reports them), divided by that range, so both lie in [0, 1]. The
thresholds are :data:`DETECTION_THRESHOLDS` values evenly spaced from the lowest to the highest map value (the sweep
of the authors' evaluation code); the point of a threshold above every value, no region and no false positive,
is added. A curve is read at its best: the rate at x false positives per frame is the best rate of a threshold
with at most x (a threshold with more false positives and fewer detections than another is passed over, which
matters because regions split and merge as the threshold moves), linear between the points that remain (a mix of
two thresholds reaches it) and flat after the last one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

RBDC_BETA = 0.1  # IoU at which a predicted region detects a ground-truth region (the paper's beta)
TBDC_ALPHA = 0.1  # share of a track's regions that must be detected for the track to be (the paper's alpha)
MAX_FP_PER_FRAME = 1.0  # the curves' area is taken over false positives per frame in [0, this] (the paper's range)
DETECTION_THRESHOLDS = 100  # thresholds of the sweep, evenly spaced from the lowest to the highest map value
REGION_STRUCTURE = np.ones((3, 3), bool)  # 8-connected regions, predicted and ground truth alike
TRACK_STRUCTURE = np.zeros((3, 3, 3), bool)  # [time, row, col]: 8-connected in a frame, the same pixel across frames
TRACK_STRUCTURE[1] = True
TRACK_STRUCTURE[0, 1, 1] = TRACK_STRUCTURE[2, 1, 1] = True


def ground_truth_tracks(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """bool ``[T, H, W]`` -> (int ``[T, H, W]`` track of every anomalous pixel, 1-based, 0 elsewhere; track count)."""
    tracks, n = ndimage.label(np.asarray(masks, bool), TRACK_STRUCTURE)
    return tracks, int(n)


def detection_thresholds(low: float, high: float, n: int = DETECTION_THRESHOLDS) -> np.ndarray:
    """``[n]`` thresholds evenly spaced over ``[low, high]`` (one when the maps are flat)."""
    if not np.isfinite(low) or not np.isfinite(high):
        raise ValueError(f"the maps hold a non-finite value (lowest {low}, highest {high})")
    return np.array([low]) if high <= low else np.linspace(low, high, n)


def area_under_curve(fp_per_frame: np.ndarray, rate: np.ndarray, max_fp: float = MAX_FP_PER_FRAME) -> float:
    """The area under ``rate`` against ``fp_per_frame`` (one point per threshold) over ``[0, max_fp]``, divided by
    ``max_fp``: the origin added, each false-positive level read at its best rate, linear between, flat after."""
    x = np.concatenate([[0.0], np.asarray(fp_per_frame, float)])
    y = np.concatenate([[0.0], np.asarray(rate, float)])
    order = np.lexsort((-y, x))  # by false positives, the best rate first among equals
    x, y = x[order], y[order]
    best_before = np.maximum.accumulate(y)
    keep = np.concatenate([[True], y[1:] > best_before[:-1]])  # drop every point another beats with no more FP
    x, y = x[keep], y[keep]
    if x[-1] < max_fp:
        x, y = np.append(x, max_fp), np.append(y, y[-1])
    inside = x < max_fp
    x, y = np.append(x[inside], max_fp), np.append(y[inside], np.interp(max_fp, x, y))
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / max_fp)


@dataclass(frozen=True)
class DetectionCurves:
    """The sweep's result: per threshold ``[K]`` (ascending), ``fp_per_frame``, ``region_rate`` and ``track_rate``
    (NaN without any ground-truth region or track), over ``frames`` frames holding ``regions`` ground-truth regions
    in ``tracks`` tracks; ``rbdc`` and ``tbdc`` their normalised areas (NaN when undefined)."""

    thresholds: np.ndarray
    fp_per_frame: np.ndarray
    region_rate: np.ndarray
    track_rate: np.ndarray
    frames: int
    regions: int
    tracks: int
    max_fp: float = MAX_FP_PER_FRAME

    @property
    def rbdc(self) -> float:
        return area_under_curve(self.fp_per_frame, self.region_rate, self.max_fp) if self.regions else float("nan")

    @property
    def tbdc(self) -> float:
        return area_under_curve(self.fp_per_frame, self.track_rate, self.max_fp) if self.tracks else float("nan")


@dataclass(frozen=True)
class _Truth:
    """The ground-truth regions of a run of anomalous frames that share one map: ``R`` regions in ``frames`` frames,
    their flat pixel indices ``pixels`` ``[P]`` (within a frame) with the region of each ``region_of`` ``[P]``, and
    per region its size, frame (0-based in the run) and track (0-based in the video), each ``[R]``."""

    pixels: np.ndarray
    region_of: np.ndarray
    sizes: np.ndarray
    frame_of: np.ndarray
    track_of: np.ndarray
    frames: int

    @classmethod
    def of(cls, masks: np.ndarray, tracks: np.ndarray) -> _Truth:
        """bool ``[F, H, W]`` masks (each with an anomalous pixel) and their int ``[F, H, W]`` tracks (1-based)."""
        pixels, region_of, frame_of, track_of = [], [], [], []
        for f, (mask, frame_tracks) in enumerate(zip(masks, tracks)):
            labels, n = ndimage.label(mask, REGION_STRUCTURE)
            labels, frame_tracks = labels.ravel(), frame_tracks.ravel()
            for g in range(1, n + 1):
                inside = np.flatnonzero(labels == g)
                pixels.append(inside)
                region_of.append(np.full(len(inside), len(frame_of)))
                frame_of.append(f)
                track_of.append(frame_tracks[inside[0]] - 1)  # a frame's region lies in one track
        sizes = np.array([len(p) for p in pixels], np.int64)
        return cls(np.concatenate(pixels), np.concatenate(region_of), sizes, np.array(frame_of, np.int64),
                   np.array(track_of, np.int64), len(masks))


@dataclass(frozen=True)
class _Regions:
    """The predicted regions of one map at one threshold: int ``[H * W]`` labels (1-based) and their areas ``[n]``."""

    labels: np.ndarray
    areas: np.ndarray

    def judge(self, truth: _Truth, beta: float) -> tuple[np.ndarray, int]:
        """-> (bool ``[R]``: which of the ground-truth regions of ``truth`` these regions detect, how many of these
        regions are false positives, summed over the frames of ``truth``)."""
        n = len(self.areas)
        if not n:
            return np.zeros(len(truth.sizes), bool), 0
        overlap = np.bincount(truth.region_of * (n + 1) + self.labels[truth.pixels],
                              minlength=len(truth.sizes) * (n + 1)).reshape(len(truth.sizes), n + 1)[:, 1:]
        hit = overlap / (self.areas + truth.sizes[:, None] - overlap) >= beta  # [R, n] IoU; 10 / 100 == 0.1
        matched = np.zeros((truth.frames, n), np.int64)
        np.add.at(matched, truth.frame_of, hit)
        return hit.any(axis=1), truth.frames * n - int(np.count_nonzero(matched))


def _sweep(frame_map: np.ndarray, thresholds: np.ndarray) -> Iterator[_Regions]:
    """float ``[H, W]`` -> the regions of ``frame_map >= t`` for each ascending threshold t, one at a time. A
    threshold that keeps the same pixels as the one below it reuses its labelling (the pixels above only shrink, so
    equal counts mean equal sets): a flat or two-valued map is labelled once or twice, not once per threshold."""
    kept, regions = -1, None
    for t in thresholds:
        above = frame_map >= t
        count = int(above.sum())
        if count != kept:
            labels, n = ndimage.label(above, REGION_STRUCTURE)
            regions = _Regions(labels.ravel(), np.bincount(labels.ravel(), minlength=n + 1)[1:])
            kept = count
        yield regions


class DetectionCounter:
    """RBDC / TBDC counts accumulated video by video (so the caller holds one video's frame maps at a time) over a
    fixed ascending threshold sweep ``[K]``; :meth:`curves` gives the result."""

    def __init__(self, thresholds: np.ndarray, *, beta: float = RBDC_BETA, alpha: float = TBDC_ALPHA):
        self.thresholds = np.asarray(thresholds, float)
        if self.thresholds.ndim != 1 or not len(self.thresholds) or np.any(np.diff(self.thresholds) < 0):
            raise ValueError(f"thresholds must be a non-empty ascending [K] array, got {self.thresholds}")
        self.beta, self.alpha = beta, alpha
        k = len(self.thresholds)
        self.false_positives = np.zeros(k, np.int64)
        self.detected_regions = np.zeros(k, np.int64)
        self.detected_tracks = np.zeros(k, np.int64)
        self.frames = self.regions = self.tracks = 0

    def add(self, maps: np.ndarray, masks: np.ndarray, name: str = "video") -> None:
        """One video: ``maps`` float ``[T, H, W]``, ``masks`` bool ``[T, H, W]``. A run of consecutive frames with
        the same map (a snippet's map repeated over its frames) is thresholded and labelled once, one threshold at
        a time (memory: one labelling, not one per threshold)."""
        maps, masks = np.asarray(maps), np.asarray(masks, bool)
        if maps.ndim != 3 or maps.shape != masks.shape:
            raise ValueError(f"{name}: maps {maps.shape} and masks {masks.shape} must both be [T, H, W]")
        tracks, n_tracks = ground_truth_tracks(masks)
        track_regions = np.zeros(n_tracks, np.int64)
        track_hits = np.zeros((len(self.thresholds), n_tracks), np.int64)
        start = 0
        while start < len(maps):
            end = start + 1
            while end < len(maps) and np.array_equal(maps[end], maps[start]):
                end += 1
            anomalous = start + np.flatnonzero(masks[start:end].any(axis=(1, 2)))
            truth = _Truth.of(masks[anomalous], tracks[anomalous]) if len(anomalous) else None
            if truth is not None:
                self.regions += len(truth.sizes)
                np.add.at(track_regions, truth.track_of, 1)
            for k, regions in enumerate(_sweep(maps[start], self.thresholds)):
                self.false_positives[k] += (end - start - len(anomalous)) * len(regions.areas)
                if truth is not None:
                    detected, false_positives = regions.judge(truth, self.beta)
                    self.false_positives[k] += false_positives
                    self.detected_regions[k] += int(detected.sum())
                    np.add.at(track_hits[k], truth.track_of, detected.astype(np.int64))
            self.frames += end - start
            start = end
        if n_tracks:
            # a division, not alpha * regions: 3 / 30 is the double 0.1, while 0.1 * 30 exceeds 3
            self.detected_tracks += (track_hits / track_regions >= self.alpha).sum(axis=1)
            self.tracks += n_tracks

    def curves(self, max_fp: float = MAX_FP_PER_FRAME) -> DetectionCurves:
        """The curves so far (``fp_per_frame`` NaN before any frame)."""
        def rate(hits: np.ndarray, total: int) -> np.ndarray:
            return hits / total if total else np.full(len(hits), np.nan)
        return DetectionCurves(self.thresholds, rate(self.false_positives, self.frames),
                               rate(self.detected_regions, self.regions), rate(self.detected_tracks, self.tracks),
                               self.frames, self.regions, self.tracks, max_fp)


def rbdc_tbdc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, thresholds: np.ndarray | None = None,
              beta: float = RBDC_BETA, alpha: float = TBDC_ALPHA,
              max_fp: float = MAX_FP_PER_FRAME) -> DetectionCurves:
    """RBDC and TBDC of per-video frame maps (float ``[T, H, W]`` each) against their masks (bool ``[T, H, W]``).
    ``thresholds`` (ascending) default to :data:`DETECTION_THRESHOLDS` evenly spaced over every map's values."""
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} videos of maps for {len(masks)} videos of masks")
    if thresholds is None:
        values = [m for m in maps if np.size(m)]
        low = min((float(np.min(m)) for m in values), default=0.0)
        thresholds = detection_thresholds(low, max((float(np.max(m)) for m in values), default=0.0))
    counter = DetectionCounter(thresholds, beta=beta, alpha=alpha)
    for i, (video_maps, video_masks) in enumerate(zip(maps, masks)):
        counter.add(video_maps, video_masks, name=f"video {i}")
    return counter.curves(max_fp)

