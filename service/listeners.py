"""Starting a listener (the relay's, the admin server's) with an error that says which one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class ListenerError(OSError):
    """A listener (relay or admin) that could not start: address in use, no permission..."""


async def start_listener(
    name: str, host: str, port: int, start: Callable[[], Awaitable[None]]
) -> None:
    """Runs `start`; an OSError becomes a ListenerError naming the listener and its address."""
    try:
        await start()
    except OSError as error:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenerError(f"{name} listener on {where} could not start: {error}") from error
