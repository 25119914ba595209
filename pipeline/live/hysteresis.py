"""Alerts from snippet scores with hysteresis: an event opens after ``open_after`` consecutive snippets at or above
the threshold and closes after ``close_after`` consecutive snippets below it, so one noisy snippet neither raises
an alert nor ends one. The same rule runs live (:class:`Hysteresis`, one snippet at a time) and offline
(:func:`hysteresis_events`, which calibration counts false alarms with), so the two always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPEN_AFTER = 2  # snippets above the threshold in a row that open an event (2 x 16 frames: 1.3 s at 25 fps)
CLOSE_AFTER = 3  # snippets below it in a row that close one (about 2 s at 25 fps)


@dataclass(frozen=True)
class HysteresisConfig:
    """A snippet is *above* when its score is at or above ``threshold``."""

    threshold: float
    open_after: int = OPEN_AFTER
    close_after: int = CLOSE_AFTER

    def __post_init__(self) -> None:
        if self.open_after < 1 or self.close_after < 1:
            raise ValueError(f"open_after and close_after must be at least 1, got {self.open_after} and "
                             f"{self.close_after}")


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
        above = bool(score >= self.config.threshold)
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
    """Events of a score sequence ``[T]``: (first, last) snippet indices, inclusive, last = the event's last snippet
    above the threshold (an event still open at the end ends there too)."""
    rule = Hysteresis(config)
    events = []
    for score in np.asarray(scores, dtype=np.float64):
        if rule.update(score) == "close":
            events.append((rule.start, rule.last_above))
    if rule.active:
        events.append((rule.start, rule.last_above))
    return events
