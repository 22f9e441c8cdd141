from __future__ import annotations

import asyncio
import time

import pytest

from service.probes.rate_limit import ProbeRateLimiter


async def test_rows_are_paced_at_the_rate() -> None:
    limiter = ProbeRateLimiter(rate=200.0, concurrency=4)
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot(20):
            starts.append(time.monotonic())

    t0 = time.monotonic()
    await asyncio.gather(*(request() for _ in range(5)))
    # 5 requests of 20 rows at 200 rows/s: starts at 0, 0.1, 0.2, 0.3, 0.4 s.
    offsets = sorted(s - t0 for s in starts)
    assert offsets[0] < 0.1
    assert offsets[-1] >= 0.4 - 0.01
    gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    assert min(gaps) >= 0.1 - 0.01


async def test_concurrency_is_capped() -> None:
    limiter = ProbeRateLimiter(rate=1e9, concurrency=2)
    inflight = peak = 0

    async def request() -> None:
        nonlocal inflight, peak
        async with limiter.slot(1):
            inflight += 1
            peak = max(peak, inflight)
            await asyncio.sleep(0.01)
            inflight -= 1

    await asyncio.gather(*(request() for _ in range(8)))
    assert peak == 2


def test_bad_limits_are_named() -> None:
    with pytest.raises(ValueError, match="rate must be positive, got 0"):
        ProbeRateLimiter(rate=0, concurrency=1)
    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        ProbeRateLimiter(rate=1, concurrency=0)
