"""Where every hook action and its outcome is recorded (the incident store implements it)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol


class ActionRecorder(Protocol):
    """Records one action on an incident; must persist before returning (never lose actions).

    Called from a worker thread, so implementations must be thread-safe.
    """

    def record_action(
        self, incident_id: int | None, hook: str, action: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        """Record that ``hook`` took (or decided about) ``action`` with ``outcome``."""
        ...


@dataclass(frozen=True)
class RecordedAction:
    """One row held by :class:`InMemoryActionRecorder`."""

    incident_id: int | None
    hook: str
    action: str
    outcome: str
    detail: dict[str, Any]


class InMemoryActionRecorder:
    """An :class:`ActionRecorder` keeping actions in a list, for tests and dry runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: list[RecordedAction] = []

    def record_action(
        self, incident_id: int | None, hook: str, action: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        """Append the action."""
        with self._lock:
            self._actions.append(RecordedAction(incident_id, hook, action, outcome, dict(detail)))

    @property
    def actions(self) -> list[RecordedAction]:
        """A copy of every recorded action, oldest first."""
        with self._lock:
            return list(self._actions)
