"""Fallback hook: in-band switch of new inference connections to the fallback upstream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.settings import FallbackHookSettings


class UpstreamSwitch(Protocol):
    """Implemented by the relay: route new connections, drain old ones once idle."""

    async def use_fallback(self) -> None:
        """Send new connections to the fallback upstream; close primary ones when idle."""
        ...

    async def use_primary(self) -> None:
        """Send new connections to the primary upstream; close fallback ones when idle."""
        ...


class FallbackHook:
    """Switch to the fallback upstream on firing, optionally back on resolve."""

    def __init__(self, settings: FallbackHookSettings, switch: UpstreamSwitch) -> None:
        self.settings = settings
        self._switch = switch

    @property
    def name(self) -> str:
        """The configured hook name."""
        return self.settings.name

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        """Switch to the fallback upstream."""
        return await _switch_upstream(
            "switch to fallback upstream", self._switch.use_fallback, dry_run=dry_run
        )

    async def resolve(self, event: AlertEvent, *, dry_run: bool) -> HookResult | None:
        """Switch back to the primary upstream when configured to."""
        if not self.settings.switch_back_on_resolve:
            return None
        return await _switch_upstream(
            "switch back to primary upstream", self._switch.use_primary, dry_run=dry_run
        )


async def _switch_upstream(
    action: str, switch: Callable[[], Awaitable[None]], *, dry_run: bool
) -> HookResult:
    """Call ``switch`` (unless dry) and report it as ``action``; its exception is a failed run."""
    if dry_run:
        return HookResult("dry_run", action, {})
    try:
        await switch()
    except Exception as exc:  # the relay's failure is recorded, never propagated
        return HookResult("failed", action, {"error": f"{type(exc).__name__}: {exc}"})
    return HookResult("success", action, {})
