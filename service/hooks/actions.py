"""What a hook reports back: the action it took (or would take) and how it went."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from service.alerting.events import AlertEvent

#: Outcomes a hook itself reports.
HookOutcome = Literal["success", "noop", "refused", "failed", "dry_run"]
#: Outcomes the dispatcher adds when it decides not to run a hook.
Outcome = Literal[
    "success", "noop", "refused", "failed", "dry_run", "cooldown", "rate_limited", "duplicate"
]
OUTCOMES: tuple[Outcome, ...] = (
    "success",
    "noop",
    "refused",
    "failed",
    "dry_run",
    "cooldown",
    "rate_limited",
    "duplicate",
)


@dataclass(frozen=True)
class HookResult:
    """One hook run: ``action`` says what was (or would be) done, ``detail`` the evidence."""

    outcome: HookOutcome
    action: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class Hook(Protocol):
    """A rollback lever. Implementations never raise for expected failures: they report them."""

    @property
    def name(self) -> str:
        """The configured hook name."""
        ...

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        """Act on a firing alert (or, with ``dry_run``, say what would be done)."""
        ...

    async def resolve(self, event: AlertEvent, *, dry_run: bool) -> HookResult | None:
        """Act on a resolved alert; None when this hook does nothing on resolve."""
        ...
