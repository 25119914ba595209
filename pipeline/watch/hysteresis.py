"""Alerts from snippet scores with hysteresis: an event opens after ``open_after`` consecutive snippets at or above
the threshold and closes after ``close_after`` consecutive snippets below it, so one noisy snippet neither raises
an alert nor ends one.

This module is the one place the rule lives. ``dakd watch`` runs it live (:class:`Hysteresis`, one snippet at a
time, through :class:`pipeline.watch.events.EventTracker`); ``dakd detect`` reports its events on whole videos and
``dakd calibrate`` counts them as false alarms (:func:`hysteresis_events`, the same rule over an array, vectorised
because calibration counts events at every candidate threshold; a test checks it event for event against
:class:`Hysteresis`). So calibration's false-alarm count is what detect finds on the same footage and scores.

Ties: a score counts as above when ``score >= threshold``, compared in float64 (:func:`at_or_above`) in every
path (events, overlay colour, score logs): the threshold is never cast to the scores' float32, which would round
a calibrated threshold lying between two scores (``pipeline.calibrate.calibrator``) onto one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPEN_AFTER = 2  # snippets above the threshold in a row that open an event (2 x 16 frames: 1.3 s at 25 fps)
CLOSE_AFTER = 3  # snippets below it in a row that close one (about 2 s at 25 fps)


def at_or_above(scores, threshold: float):
    """The tie rule of every alert path: ``score >= threshold`` in float64. A scalar gives a bool, an array ``[T]``
    a bool array ``[T]``."""
    if np.ndim(scores) == 0:
        return bool(float(scores) >= float(threshold))
    return np.asarray(scores, dtype=np.float64) >= float(threshold)


@dataclass(frozen=True)
class HysteresisConfig:
    """A snippet is *above* when its score is at or above ``threshold`` (:func:`at_or_above`)."""

    threshold: float
    open_after: int = OPEN_AFTER
    close_after: int = CLOSE_AFTER

    def __post_init__(self) -> None:
        if self.open_after < 1 or self.close_after < 1:
            raise ValueError(f"open_after and close_after must be at least 1, got {self.open_after} and "
                             f"{self.close_after}")

    def describe(self) -> str:
        """``hysteresis: open after 2 snippets >= 0.43, close after 3 below``: the rule, for summary lines."""
        return (f"hysteresis: open after {self.open_after} snippet{'' if self.open_after == 1 else 's'} >= "
                f"{self.threshold:.6g}, close after {self.close_after} below")

    def to_json(self) -> dict:
        return {"threshold": float(self.threshold), "open_after": int(self.open_after),
                "close_after": int(self.close_after)}


class Hysteresis:
    """The rule over a stream of scores. After :meth:`update` returned ``"open"``, ``start`` is the index of the
    first of the ``open_after`` snippets that opened the event; ``last_above`` is always the index of the latest
    snippet above the threshold; an event spans ``start .. last_above``."""

    def __init__(self, config: HysteresisConfig):
        self.config = config
        self.index = -1  # the last snippet seen
        self.active = False
        self.start: int | None = None
        self.last_above: int | None = None
        self._above_run = 0  # consecutive snippets above, ending at the last one
        self._below_run = 0

    def update(self, score: float) -> str | None:
        """One snippet's score -> ``"open"`` (this snippet completed the opening run), ``"close"`` (it completed
        the closing run; the event ended at ``last_above``) or None."""
        self.index += 1
        above = at_or_above(score, self.config.threshold)
        if above:
            self._above_run += 1
            self._below_run = 0
            self.last_above = self.index
        else:
            self._below_run += 1
            self._above_run = 0
        if not self.active and self._above_run >= self.config.open_after:
            self.active = True
            self.start = self.index - self.config.open_after + 1
            return "open"
        if self.active and self._below_run >= self.config.close_after:
            self.active = False
            return "close"
        return None


def hysteresis_events(scores: np.ndarray, config: HysteresisConfig) -> list[tuple[int, int]]:
    """Events of a score sequence ``[T]``: (first, last) snippet indices, inclusive, as :class:`Hysteresis` gives
    them: first = the first of the ``open_after`` snippets that opened the event, last = its last snippet above the
    threshold (an event still open at the end ends there too).

    Vectorised over the runs of snippets above: once an event is open, any snippet above resets the closing count,
    so it closes exactly at the first run of ``close_after`` or more snippets below. Cutting the sequence at those
    long runs, each piece holds one event when it holds a run of ``open_after`` snippets above: from the start of
    its first such run to the piece's last snippet above.
    """
    above = at_or_above(np.asarray(scores).reshape(-1), config.threshold)
    if not above.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[False], above, [False]]).astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]  # the runs above, [start, end)
    piece = np.concatenate([[0], np.cumsum(starts[1:] - ends[:-1] >= config.close_after)])  # [runs], 0, 1, ...
    opening = (ends - starts) >= config.open_after  # runs long enough to open an event
    if not opening.any():
        return []
    pieces, first_opening = np.unique(piece[opening], return_index=True)  # pieces holding an event
    first = starts[opening][first_opening]
    last_run_of_piece = np.flatnonzero(np.diff(np.append(piece, piece[-1] + 1)))  # [pieces]: index of its last run
    last = ends[last_run_of_piece[pieces]] - 1
    return [(int(a), int(b)) for a, b in zip(first, last)]


def count_events(videos, config: HysteresisConfig) -> int:
    """Events over several score sequences (the rule restarts with each, as it does per video)."""
    return sum(len(hysteresis_events(s, config)) for s in videos)
