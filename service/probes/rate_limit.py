"""Pacing of probe traffic: a rows-per-second limit and a cap on requests in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class ProbeRateLimiter:
    """Spaces probe requests so rows flow at most at `rate` per second, `concurrency` at once.

    Pacing (each request waits until its rows' share of time is free) rather than a burst
    bucket: the model server sees a steady trickle, which is what keeps production p99 flat.
    """

    def __init__(
        self,
        rate: float,
        concurrency: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.rate = rate
        self.concurrency = concurrency
        self._clock = clock
        self._next_free = 0.0
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(concurrency)

    async def _pace(self, rows: int) -> None:
        async with self._lock:
            now = self._clock()
            start = max(now, self._next_free)
            self._next_free = start + rows / self.rate
        if start > now:
            await asyncio.sleep(start - now)

    @asynccontextmanager
    async def slot(self, rows: int) -> AsyncIterator[None]:
        """Waits for the pace and a free slot, then holds the slot for one request."""
        await self._pace(rows)
        async with self._slots:
            yield
