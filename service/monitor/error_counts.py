"""Counters for skipped monitoring work, with warnings logged at most once a minute per key.

Kept as plain thread-safe counts (not prometheus objects) so the scrape-time collector can
export them next to detector state, and each pipeline (and each test) owns its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from service.log_throttle import LogThrottle

_log = structlog.get_logger("outrider.monitor")

LabelKey = tuple[str, ...]


class ThrottledCounter:
    """Counts events per label tuple and logs a warning per key at most every `interval` s."""

    def __init__(
        self,
        event: str,
        label_names: tuple[str, ...],
        *,
        interval: float = 60.0,
        log: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.event = event
        self.label_names = label_names
        self.interval = interval
        self.log = log
        self._counts: dict[LabelKey, float] = {}
        self._throttle = LogThrottle(interval, clock)
        self._lock = threading.Lock()

    def inc(self, labels: LabelKey, amount: float = 1.0, detail: str = "") -> None:
        """Adds `amount` under `labels`; logs when this key has been quiet for `interval`."""
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.event}: expected labels {self.label_names}, got {labels}")
        with self._lock:
            self._counts[labels] = self._counts.get(labels, 0.0) + amount
            should_log = self.log and self._throttle.due(labels) is not None
            total = self._counts[labels]
        if should_log:
            fields = dict(zip(self.label_names, labels, strict=True))
            _log.warning(self.event, total=total, detail=detail, **fields)

    def counts(self) -> dict[LabelKey, float]:
        """A copy of the counts so far."""
        with self._lock:
            return dict(self._counts)

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._counts.get(tuple(labels), 0.0)
