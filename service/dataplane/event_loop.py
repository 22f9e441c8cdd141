"""Which event loop `outrider serve` runs on (settings.dataplane.event_loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal


def loop_factory(name: Literal["asyncio", "uvloop"]) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory for `asyncio.Runner(loop_factory=...)`.

    uvloop is opt-in: on this 2-core machine it did not measurably lower the relay's
    latency or CPU per request (benchmarks/proxy_overhead.py runs both side by side).
    """
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        try:
            import uvloop
        except ImportError as err:
            raise RuntimeError(
                "event_loop: uvloop needs the 'fast' extra (pip install outrider[fast])"
            ) from err
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise ValueError(f"event_loop must be one of ['asyncio', 'uvloop'], got {name!r}")
