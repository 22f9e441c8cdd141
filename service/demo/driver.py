"""Drives demo traffic through outrider at a steady rate, phase after phase."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import grpc

from service.demo.traffic import PHASES, TrafficGenerator
from service.oip.client import InferenceClient

BATCH_ROWS = 4


@dataclass
class TrafficStats:
    """What the client saw: counts and recent latencies (seconds), per phase."""

    phase: str = PHASES[0].name
    phase_progress: float = 0.0
    sent: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=5000))

    def record(self, started: float, latency: float) -> None:
        self.sent += 1
        self.recent.append((started, latency))

    def window(self, seconds: float) -> list[float]:
        cutoff = time.monotonic() - seconds
        return [lat for at, lat in self.recent if at >= cutoff]


async def drive(
    target: str,
    generator: TrafficGenerator,
    stats: TrafficStats,
    *,
    duration: float,
    rate: float,
    concurrency: int = 4,
) -> None:
    """Sends `rate` requests/s for `duration` seconds, split into the demo's phases."""
    async with InferenceClient(target, timeout=5.0) as client:
        start = time.monotonic()
        boundaries: list[tuple[str, float, float]] = []
        at = 0.0
        for phase in PHASES:
            boundaries.append((phase.name, at, at + phase.share * duration))
            at += phase.share * duration

        def current(elapsed: float) -> tuple[str, float]:
            for name, begin, end in boundaries:
                if elapsed < end:
                    return name, (elapsed - begin) / max(end - begin, 1e-9)
            return boundaries[-1][0], 1.0

        interval = concurrency / rate

        async def worker(offset: float) -> None:
            next_at = start + offset
            while True:
                now = time.monotonic()
                elapsed = now - start
                if elapsed >= duration:
                    return
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                next_at += interval
                phase, progress = current(time.monotonic() - start)
                stats.phase, stats.phase_progress = phase, progress
                pixels = generator.batch(phase, progress, BATCH_ROWS)
                sent_at = time.monotonic()
                try:
                    await client.infer("demo", {"pixels": pixels})
                except grpc.aio.AioRpcError as error:
                    stats.failed += 1
                    code = error.code().name
                    stats.errors[code] = stats.errors.get(code, 0) + 1
                    continue
                stats.record(sent_at, time.monotonic() - sent_at)

        await asyncio.gather(*(worker(i * interval / concurrency) for i in range(concurrency)))
