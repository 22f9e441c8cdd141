from __future__ import annotations

import asyncio

import pytest

from service.probes.rate_limit import ProbeRateLimiter


async def test_rows_are_paced_at_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    # A virtual clock: the limiter's sleeps advance it, so the schedule is exact and the test
    # does not depend on how busy the machine is.
    now = [100.0]
    real_sleep = asyncio.sleep

    async def virtual_sleep(seconds: float) -> None:
        now[0] += seconds
        await real_sleep(0)

    monkeypatch.setattr("service.probes.rate_limit.asyncio.sleep", virtual_sleep)
    limiter = ProbeRateLimiter(rate=200.0, concurrency=4, clock=lambda: now[0])
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot(20):
            starts.append(now[0])

    for _ in range(5):
        await request()
    # 5 requests of 20 rows at 200 rows/s: starts at 0, 0.1, 0.2, 0.3, 0.4 s.
    assert [round(s - 100.0, 9) for s in starts] == [0.0, 0.1, 0.2, 0.3, 0.4]


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
