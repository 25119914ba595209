"""A watchdog over an iterator that may hang (a decoder stuck on a broken file, a read from a disk or network share
that never returns): each item is fetched in a helper thread, and an item that takes longer than a timeout raises
:class:`Stalled` in the caller, which can then fail that one input by name and go on with the rest.

Only the time the helper spends fetching an item counts: the caller asks for the next item when it wants it (one
request, one item), so a consumer busy elsewhere (a forward pass) never looks like a stalled producer, and the
helper never decodes ahead concurrently with the caller. A hung helper cannot be killed (Python threads cannot):
it is a daemon thread, abandoned; if its call ever returns, it closes the iterator and ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

# Default for a decode that makes no progress (no snippet for this long): far above any real snippet's decoding
# (16 frames of 4K video take under 2 s on one core), short enough that one hung file does not hold a batch for long.
# The command line's --decode-timeout shows it (pipeline.defaults.DECODE_STALL_TIMEOUT_S).
DECODE_STALL_TIMEOUT_S = 60.0

T = TypeVar("T")


class Stalled(Exception):
    """The watched iterator produced nothing for ``timeout_s`` seconds."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        super().__init__(f"no progress for {timeout_s:g} s")


def watched(items: Iterator[T], timeout_s: float, *, name: str = "watched") -> Iterator[T]:
    """Yields the items of ``items``, each fetched in a helper thread (named ``name``); raises :class:`Stalled` when
    one takes longer than ``timeout_s`` seconds, and re-raises what the iterator raises. Closing this generator
    closes ``items`` (in the helper, which owns it) unless the helper is hung."""
    requests: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            while requests.get():
                try:
                    results.put((True, next(items)))
                except StopIteration:
                    results.put((False, None))
                    return
                except BaseException as exc:  # handed to the caller, raised there
                    results.put((False, exc))
                    return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    helper = threading.Thread(target=work, name=name, daemon=True)
    helper.start()
    stalled = False
    try:
        while True:
            requests.put(True)
            try:
                more, value = results.get(timeout=timeout_s)
            except queue.Empty:
                stalled = True
                raise Stalled(timeout_s) from None
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        requests.put(False)  # the helper ends (and closes the iterator) at its next request, if it ever gets there
        if not stalled:  # it is idle, waiting for that request: let it close the iterator before the caller goes on
            helper.join()
