"""Random anomaly intervals: non-overlapping :class:`AnomalyEvent` s drawn inside a video, with free margins at
both ends and gaps between them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data.synthetic.spec import ANOMALY_KINDS, AnomalyEvent

DEFAULT_MIN_EVENT_LEN = 40  # frames
DEFAULT_MAX_EVENT_LEN = 120
EVENT_EDGE_MARGIN = 0.10  # fraction of the video kept free of events at each end
EVENT_GAP = 0.08  # fraction of the video between two events


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
