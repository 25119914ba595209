"""Posting events to a webhook without ever slowing the cameras: :class:`WebhookSender` queues each payload and a
daemon thread POSTs it as JSON, retrying failures with exponential backoff. The queue is bounded and drops its
OLDEST payload when full, so a dead receiver neither blocks the scoring thread nor grows memory.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
import urllib.error
import urllib.request

log = logging.getLogger("pipeline.watch.webhook")

QUEUE_SIZE = 1000  # payloads waiting to be sent; beyond it the oldest is dropped
RETRIES = 3  # extra attempts after a failed POST before the payload is dropped
BACKOFF_S = 1.0  # wait before the first retry; doubled for each further one
TIMEOUT_S = 10.0  # per-request timeout (connect + response)
CLOSE_TIMEOUT_S = 10.0  # how long close() drains the queue before it gives up


class WebhookSender:
    """``send(payload)`` never blocks. Counters: ``sent``, ``failed`` (given up after the retries), ``dropped``
    (pushed out of a full queue or left unsent at close)."""

    def __init__(self, url: str, *, queue_size: int = QUEUE_SIZE, retries: int = RETRIES,
                 backoff_s: float = BACKOFF_S, timeout_s: float = TIMEOUT_S):
        if queue_size < 1:
            raise ValueError(f"webhook {url}: queue_size must be at least 1, got {queue_size}")
        self.url = url
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self.sent = self.failed = self.dropped = 0
        self._queue: collections.deque[dict] = collections.deque()
        self._queue_size = int(queue_size)
        self._cond = threading.Condition()
        self._stop = threading.Event()  # set by close(): the thread stops waiting (retries are cut short)
        self._closing = False
        self._busy = False  # a payload is being posted
        self._thread = threading.Thread(target=self._run, name=f"webhook {url}", daemon=True)
        self._thread.start()

    def send(self, payload: dict) -> None:
        """Queue one JSON-serialisable payload (never blocks; drops the oldest queued one when the queue is full)."""
        with self._cond:
            if self._closing:
                self.dropped += 1
                log.warning("webhook %s: closed, payload dropped", self.url)
                return
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.dropped += 1
                log.warning("webhook %s: queue full (%d), oldest payload dropped (%d dropped so far)", self.url,
                            self._queue_size, self.dropped)
            self._queue.append(payload)
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + int(self._busy)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Send what can be sent within ``timeout_s``, then stop; what is left counts as dropped."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, min(0.1, deadline - time.monotonic())))
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self.dropped += left
        if left:
            log.warning("webhook %s: %d payloads left unsent at close", self.url, left)
        log.info("webhook %s: %d sent, %d failed, %d dropped", self.url, self.sent, self.failed, self.dropped)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set() and not self._closing:
                    self._cond.wait()
                if self._stop.is_set() or (self._closing and not self._queue):
                    return
                payload = self._queue.popleft()
                self._busy = True
            ok = False
            try:
                ok = self._post_with_retries(payload)
            finally:
                with self._cond:
                    if ok:
                        self.sent += 1
                    else:
                        self.failed += 1
                    self._busy = False
                    self._cond.notify_all()

    def _post_with_retries(self, payload: dict) -> bool:
        data = json.dumps(payload).encode("utf-8")
        for attempt in range(self.retries + 1):
            try:
                self._post(data)
                return True
            except (urllib.error.URLError, OSError, ValueError) as error:  # refused, 5xx, timeout, bad URL
                if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                    log.warning("webhook %s: HTTP %d, payload not retried", self.url, error.code)
                    return False
                if attempt == self.retries or self._stop.is_set():
                    log.warning("webhook %s: POST failed after %d attempts (%s), payload dropped", self.url,
                                attempt + 1, error)
                    return False
                wait = self.backoff_s * 2 ** attempt
                log.info("webhook %s: POST failed (%s), retry %d/%d in %.1f s", self.url, error, attempt + 1,
                         self.retries, wait)
                if self._stop.wait(wait):
                    log.warning("webhook %s: stopped during retries, payload dropped", self.url)
                    return False
        return False

    def _post(self, data: bytes) -> None:
        request = urllib.request.Request(self.url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()
