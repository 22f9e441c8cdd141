"""Answers for deployment controllers: Flagger rollback/promotion gates, Argo web metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.alerting.events import AlertEvent

#: Severities that make Flagger roll back.
ROLLBACK_SEVERITIES = frozenset({"critical"})
#: Severities that hold a promotion (and make the Argo metric not ok).
BLOCKING_SEVERITIES = frozenset({"critical", "warning"})


class GateRequestError(ValueError):
    """The controller's request does not name a target."""


@dataclass(frozen=True)
class Target:
    """The model (and optionally version) a controller asks about."""

    model: str
    version: str = ""


def flagger_target(document: Any) -> Target:
    """Target of a Flagger webhook call: metadata.model / metadata.version, else the canary name.

    Flagger POSTs ``{"name", "namespace", "phase", "checksum", "metadata": {...}}``.
    """
    if not isinstance(document, dict):
        raise GateRequestError("payload: expected a JSON object")
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise GateRequestError("metadata: expected an object")
    model = metadata.get("model") or document.get("name")
    if not isinstance(model, str) or not model:
        raise GateRequestError("name: missing (or set metadata.model)")
    version = metadata.get("version", "")
    if not isinstance(version, str):
        raise GateRequestError("metadata.version: expected a string")
    return Target(model, version)


def firing_for(alerts: Sequence[AlertEvent], target: Target) -> list[AlertEvent]:
    """Firing alerts about the target model (and version, when one is given)."""
    return [
        alert
        for alert in alerts
        if alert.status == "firing"
        and alert.model == target.model
        and (not target.version or alert.version == target.version)
    ]


def _summary(alert: AlertEvent) -> dict[str, Any]:
    return {
        "alert": alert.name,
        "severity": alert.severity,
        "model": alert.model,
        "version": alert.version,
        "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
        "incident_id": alert.incident_id,
        "incident_url": alert.incident_url,
    }


@dataclass(frozen=True)
class GateVerdict:
    """``passed`` maps to 2xx for the controller; ``alerts`` explain the answer."""

    passed: bool
    alerts: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """JSON body for the answer."""
        return {"passed": self.passed, "alerts": self.alerts}


def rollback_verdict(alerts: Sequence[AlertEvent], target: Target) -> GateVerdict:
    """Passed (Flagger rolls back) while a critical alert fires for the target."""
    critical = [a for a in firing_for(alerts, target) if a.severity in ROLLBACK_SEVERITIES]
    return GateVerdict(bool(critical), [_summary(a) for a in critical])


def promotion_verdict(alerts: Sequence[AlertEvent], target: Target) -> GateVerdict:
    """Passed (Flagger promotes) only while no critical or warning alert fires for the target."""
    blocking = [a for a in firing_for(alerts, target) if a.severity in BLOCKING_SEVERITIES]
    return GateVerdict(not blocking, [_summary(a) for a in blocking])


def argo_metric(alerts: Sequence[AlertEvent], target: Target) -> dict[str, Any]:
    """The Argo Rollouts web metric: ``ok`` unless a critical/warning alert fires; all firing."""
    firing = firing_for(alerts, target)
    blocking = [a for a in firing if a.severity in BLOCKING_SEVERITIES]
    return {
        "ok": not blocking,
        "model": target.model,
        "version": target.version,
        "firing": [_summary(a) for a in firing],
    }
