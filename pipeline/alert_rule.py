"""The alert rule, its one home: a snippet is *above* when its score is at or above the threshold; an event opens
after ``open_after`` consecutive snippets above and closes after ``close_after`` consecutive snippets below, so one
noisy snippet neither raises an alert nor ends one.

:class:`AlertRule` is the rule as one frozen config object (threshold, ``open_after``, ``close_after``; the defaults
are :data:`OPEN_AFTER` and :data:`CLOSE_AFTER`). Every alert path takes it: ``dakd watch`` applies it one score at a
time (:meth:`AlertRule.stream` -> :class:`AlertStream`, through :class:`pipeline.watch.events.EventTracker`), ``dakd
detect`` reports its events on whole videos and ``dakd calibrate`` counts them as false alarms
(:meth:`AlertRule.events` / :meth:`AlertRule.count`, the same rule over an array, vectorised because calibration
counts events at every candidate threshold; ``tests/live/test_live_scoring.py`` checks it event for event against
:class:`AlertStream` on random sequences). So calibration's false-alarm count is what detect finds on the same
footage and scores, and what watch would raise on it. The overlay's colour and the score logs' ``above`` column use
:meth:`AlertRule.above`. The command line builds the rule from ``--threshold``, ``--open-after`` and
``--close-after`` (``pipeline.cli.parser.alert_rule``); calibration.json and detect's JSON keep the keys of
:meth:`AlertRule.to_json`.

Ties: a score counts as above when ``score >= threshold``, compared in float64 (:func:`at_or_above`) in every
path: the threshold is never cast to the scores' float32, which would round a calibrated threshold lying between
two scores (``pipeline.calibrate.calibrator``) onto one of them.

This module imports numpy only (the command line reads its defaults for ``--help``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

OPEN_AFTER = 2  # snippets above the threshold in a row that open an event (2 x 16 frames: 1.3 s at 25 fps)
CLOSE_AFTER = 3  # snippets below it in a row that close one (about 2 s at 25 fps)
OPEN = "open"  # AlertStream.update: this snippet completed the opening run
CLOSE = "close"  # ... it completed the closing run


def at_or_above(scores, threshold: float):
    """The tie rule of every alert path: ``score >= threshold`` in float64. A scalar gives a bool, an array ``[T]``
    a bool array ``[T]``."""
    if np.ndim(scores) == 0:
        return bool(float(scores) >= float(threshold))
    return np.asarray(scores, dtype=np.float64) >= float(threshold)


@dataclass(frozen=True)
class AlertRule:
    """The alert rule. ``threshold`` None means "not chosen yet": the API then takes the model's calibrated
    threshold (or the uncalibrated default) and applies :meth:`with_threshold`; applying a rule needs one. Raises
    ValueError when ``open_after`` or ``close_after`` is below 1 or the threshold is not a finite number."""

    threshold: float | None = None
    open_after: int = OPEN_AFTER
    close_after: int = CLOSE_AFTER

    def __post_init__(self) -> None:
        for name in ("open_after", "close_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a whole number of snippets, at least 1, got {value!r}")
        if self.threshold is not None and not (isinstance(self.threshold, (int, float, np.floating))
                                               and math.isfinite(self.threshold)):
            raise ValueError(f"the threshold must be a finite number, got {self.threshold!r}")

    def with_threshold(self, threshold: float) -> AlertRule:
        """The same rule at ``threshold``."""
        return replace(self, threshold=float(threshold))

    def _checked_threshold(self) -> float:
        if self.threshold is None:
            raise ValueError("this alert rule has no threshold yet: apply rule.with_threshold(t) first")
        return float(self.threshold)

    # -- applying it -------------------------------------------------------------------------------------------
    def above(self, scores):
        """:func:`at_or_above` at this rule's threshold: a bool for a scalar, a bool array ``[T]`` for ``[T]``."""
        return at_or_above(scores, self._checked_threshold())

    def stream(self) -> AlertStream:
        """The rule over a stream of scores, one at a time (what ``dakd watch`` runs)."""
        return AlertStream(self)

    def events(self, scores: np.ndarray) -> list[tuple[int, int]]:
        """Events of a score sequence ``[T]``: (first, last) snippet indices, inclusive, as :class:`AlertStream`
        gives them: first = the first of the ``open_after`` snippets that opened the event, last = its last snippet
        above the threshold (an event still open at the end ends there too).

        Vectorised over the runs of snippets above: once an event is open, any snippet above resets the closing
        count, so it closes exactly at the first run of ``close_after`` or more snippets below. Cutting the sequence
        at those long runs, each piece holds one event when it holds a run of ``open_after`` snippets above: from
        the start of its first such run to the piece's last snippet above.
        """
        above = self.above(np.asarray(scores).reshape(-1))
        if not above.any():
            return []
        edges = np.flatnonzero(np.diff(np.concatenate([[False], above, [False]]).astype(np.int8)))
        starts, ends = edges[::2], edges[1::2]  # the runs above, [start, end)
        piece = np.concatenate([[0], np.cumsum(starts[1:] - ends[:-1] >= self.close_after)])  # [runs], 0, 1, ...
        opening = (ends - starts) >= self.open_after  # runs long enough to open an event
        if not opening.any():
            return []
        pieces, first_opening = np.unique(piece[opening], return_index=True)  # pieces holding an event
        first = starts[opening][first_opening]
        last_run_of_piece = np.flatnonzero(np.diff(np.append(piece, piece[-1] + 1)))  # [pieces]: its last run
        last = ends[last_run_of_piece[pieces]] - 1
        return [(int(a), int(b)) for a, b in zip(first, last)]

    def count(self, videos: Iterable[np.ndarray]) -> int:
        """Events over several score sequences (the rule restarts with each, as it does per video)."""
        return sum(len(self.events(s)) for s in videos)

    # -- saying it ---------------------------------------------------------------------------------------------
    def describe(self) -> str:
        """``hysteresis: open after 2 snippets >= 0.43, close after 3 below``: the rule, for summary lines."""
        return (f"hysteresis: open after {self.open_after} snippet{'' if self.open_after == 1 else 's'} >= "
                f"{self._checked_threshold():.6g}, close after {self.close_after} below")

    def to_json(self) -> dict:
        """``{"threshold", "open_after", "close_after"}``: detect's ``alert_rule``."""
        return {"threshold": self._checked_threshold(), "open_after": int(self.open_after),
                "close_after": int(self.close_after)}


class AlertStream:
    """The rule over a stream of scores. After :meth:`update` returned :data:`OPEN`, ``start`` is the index of the
    first of the ``open_after`` snippets that opened the event; ``last_above`` is always the index of the latest
    snippet above the threshold; an event spans ``start .. last_above``."""

    def __init__(self, rule: AlertRule):
        rule._checked_threshold()
        self.rule = rule
        self.index = -1  # the last snippet seen
        self.active = False
        self.start: int | None = None
        self.last_above: int | None = None
        self._above_run = 0  # consecutive snippets above, ending at the last one
        self._below_run = 0

    def update(self, score: float) -> str | None:
        """One snippet's score -> :data:`OPEN` (this snippet completed the opening run), :data:`CLOSE` (it
        completed the closing run; the event ended at ``last_above``) or None."""
        self.index += 1
        if self.rule.above(score):
            self._above_run += 1
            self._below_run = 0
            self.last_above = self.index
        else:
            self._below_run += 1
            self._above_run = 0
        if not self.active and self._above_run >= self.rule.open_after:
            self.active = True
            self.start = self.index - self.rule.open_after + 1
            return OPEN
        if self.active and self._below_run >= self.rule.close_after:
            self.active = False
            return CLOSE
        return None
