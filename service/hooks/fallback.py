"""Fallback hook: in-band switch of new inference connections to the fallback upstream."""

from __future__ import annotations

from typing import Protocol

from service.hooks.actions import HookResult
from service.hooks.events import AlertEvent
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
        action = "switch to fallback upstream"
        if dry_run:
            return HookResult("dry_run", action, {})
        try:
            await self._switch.use_fallback()
        except Exception as exc:  # the relay's failure is recorded, never propagated
            return HookResult("failed", action, {"error": f"{type(exc).__name__}: {exc}"})
        return HookResult("success", action, {})

    async def resolve(self, event: AlertEvent, *, dry_run: bool) -> HookResult | None:
        """Switch back to the primary upstream when configured to."""
        if not self.settings.switch_back_on_resolve:
            return None
        action = "switch back to primary upstream"
        if dry_run:
            return HookResult("dry_run", action, {})
        try:
            await self._switch.use_primary()
        except Exception as exc:  # the relay's failure is recorded, never propagated
            return HookResult("failed", action, {"error": f"{type(exc).__name__}: {exc}"})
        return HookResult("success", action, {})
