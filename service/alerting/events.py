"""The alert event every hook receives, whatever produced the alert."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

AlertStatus = Literal["firing", "resolved"]
ALERT_STATUSES: tuple[AlertStatus, ...] = ("firing", "resolved")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class AlertEvent:
    """One alert transition (firing or resolved) handed to the hook dispatcher.

    In-process alerts and Alertmanager notifications are both converted into this, so hooks
    never see where an alert came from. ``fingerprint`` plus ``starts_at`` identify one
    alert instance; ``incident_id`` is set when outrider's incident store opened an incident.
    """

    name: str
    severity: str
    status: AlertStatus
    model: str = ""
    version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    fingerprint: str = ""
    incident_id: int | None = None
    incident_url: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("AlertEvent.name must not be empty")
        if self.status not in ALERT_STATUSES:
            raise ValueError(
                f"AlertEvent.status must be one of {ALERT_STATUSES}, got {self.status!r}"
            )
        # Read-only views: one event is shared by every hook, none may change it for the others.
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "annotations", _frozen(self.annotations))
        object.__setattr__(self, "evidence", _frozen(self.evidence))

    @property
    def incident_key(self) -> str:
        """Identifies the incident this event belongs to, for one-action-per-incident rules.

        An outrider incident id wins; otherwise the alert instance (fingerprint and start time,
        falling back to name, model and version) stands for the incident.
        """
        if self.incident_id is not None:
            return f"incident:{self.incident_id}"
        started = self.starts_at.isoformat() if self.starts_at else ""
        ident = self.fingerprint or f"{self.name}/{self.model}/{self.version}"
        return f"alert:{ident}@{started}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (times as RFC 3339 strings)."""
        return {
            "name": self.name,
            "severity": self.severity,
            "status": self.status,
            "model": self.model,
            "version": self.version,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "fingerprint": self.fingerprint,
            "incident_id": self.incident_id,
            "incident_url": self.incident_url,
            "evidence": dict(self.evidence),
        }
