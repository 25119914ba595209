"""A rolling per-camera CSV of snippet scores for later review: ``<folder>/<camera>/scores-YYYY-MM-DD.csv``, one
file per UTC day of the snippets, flushed every row so a stopped process loses nothing; files older than
``keep_days`` are deleted when a new day's file starts. Its ``threshold`` and ``above`` columns are those of the
watch's alert rule (:class:`pipeline.alert_rule.AlertRule`).
"""

from __future__ import annotations

import csv
import logging
import re
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from pipeline.alert_rule import AlertRule
from pipeline.defaults import WATCH_KEEP_DAYS
from pipeline.watch.events import utc_iso

log = logging.getLogger("pipeline.watch.score_log")

KEEP_DAYS = WATCH_KEEP_DAYS  # days of score files kept per camera (today's included)
HEADER = ("snippet", "start_s", "end_s", "start_utc", "score", "threshold", "above", "event")
FILE_PATTERN = re.compile(r"^scores-(\d{4}-\d{2}-\d{2})\.csv$")
SCORE_DIGITS = 6  # decimals written for scores and clocks


class ScoreLog:
    """Thread-safe (one lock); normally written by the scoring thread only."""

    def __init__(self, folder: Path, camera: str, rule: AlertRule, *, keep_days: int = KEEP_DAYS):
        if keep_days < 1:
            raise ValueError(f"{camera}: keep_days must be at least 1, got {keep_days}")
        rule.above(0.0)  # a rule without a threshold fails here, not at the first snippet
        self.folder = Path(folder) / camera
        self.camera = camera
        self.rule = rule
        self.keep_days = int(keep_days)
        self._lock = threading.Lock()
        self._day: date | None = None
        self._file = None
        self._writer = None
        self.path: Path | None = None

    def write(self, snippet: int, start_s: float, end_s: float, start_utc: float, score: float,
              event_id: str | None) -> None:
        """One snippet: its index, clock interval, start as epoch seconds (which picks the UTC day's file), score
        and the id of the event it belongs to (or None); the threshold and ``above`` are the rule's."""
        threshold = self.rule.threshold
        day = datetime.fromtimestamp(start_utc, tz=timezone.utc).date()
        with self._lock:
            if day != self._day:
                self._roll(day)
            self._writer.writerow([int(snippet), f"{start_s:.{SCORE_DIGITS}f}", f"{end_s:.{SCORE_DIGITS}f}",
                                   utc_iso(start_utc), f"{score:.{SCORE_DIGITS}f}", f"{threshold:.{SCORE_DIGITS}f}",
                                   int(self.rule.above(score)), event_id or ""])
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = self._writer = None

    def _roll(self, day: date) -> None:
        if self._file is not None:
            self._file.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"scores-{day.isoformat()}.csv"
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="", encoding="utf-8", buffering=1)
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(HEADER)
        self._day = day
        self._prune(day)

    def _prune(self, today: date) -> None:
        oldest = today - timedelta(days=self.keep_days - 1)  # keep today and the keep_days - 1 before it
        for path in self.folder.iterdir():
            match = FILE_PATTERN.match(path.name)
            if match and date.fromisoformat(match.group(1)) < oldest:
                path.unlink(missing_ok=True)
                log.info("%s: deleted old score file %s (older than %d days)", self.camera, path, self.keep_days)
