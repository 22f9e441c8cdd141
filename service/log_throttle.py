"""At most one log line per key per interval, with a count of the ones held back.

Used where one fault repeats on every request or connection (an unreachable upstream, a
tensor that does not fit a signal): the metric counts each one, the log says it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class LogThrottle:
    """Lets one log line per key through per `interval` seconds; not thread-safe."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def due(self, key: Hashable) -> int | None:
        """None to stay quiet; else how many were held back since the last line."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
