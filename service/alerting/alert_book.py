"""Which received alerts are firing now, so the Flagger and Argo gates can see them too."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol

from service.alerting.events import AlertEvent


class AlertView(Protocol):
    """Currently firing alerts (the alert engine and the book below implement it)."""

    def firing(self) -> list[AlertEvent]:
        """Alerts firing now."""
        ...


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class FiringAlertBook:
    """Keeps the latest firing event per alert instance; a resolved event removes it.

    An alert whose ``ends_at`` has passed without a resolve (the sender went away) is
    dropped, as Alertmanager itself would consider it resolved.
    """

    def __init__(self, *, now: Callable[[], datetime] = _utc_now) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._firing: dict[str, AlertEvent] = {}

    def observe(self, event: AlertEvent) -> None:
        """Record a firing or resolved event."""
        with self._lock:
            if event.status == "firing":
                self._firing[event.incident_key] = event
            else:
                self._firing.pop(event.incident_key, None)

    def firing(self) -> list[AlertEvent]:
        """Alerts firing now, oldest first."""
        now = self._now()
        with self._lock:
            expired = [
                key
                for key, event in self._firing.items()
                if event.ends_at is not None and event.ends_at <= now
            ]
            for key in expired:
                del self._firing[key]
            return list(self._firing.values())


class CombinedAlertView:
    """Firing alerts of several views (e.g. the in-process engine and received alerts)."""

    def __init__(self, *views: AlertView) -> None:
        self._views = views

    def firing(self) -> list[AlertEvent]:
        """Every view's firing alerts, in view order."""
        return [alert for view in self._views for alert in view.firing()]

