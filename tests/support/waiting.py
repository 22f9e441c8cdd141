"""Waiting helpers for async tests: poll a condition with a deadline, and ask where we run."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def poll(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 30.0
) -> None:
    """Waits until `check()` (sync or async) is true; AssertionError naming `what` if never."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def on_event_loop() -> bool:
    """Whether the caller runs on an asyncio event loop (blocking work must not)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
