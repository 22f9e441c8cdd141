"""Alert instances and their transitions as values, and their conversion to alert events.

An `AlertTransition` is what the rule engine produces and the outbox delivers. It turns
into a JSON-ready record and back (`to_record` / `from_record`), so an outbox may keep
transitions on disk, and into the `AlertEvent` the hooks receive.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Literal

from service.alerting.events import AlertEvent
from service.alerting.readings import Reading, ReadingKey, reading_evidence

AlertState = Literal["inactive", "pending", "firing"]
TransitionKind = Literal["pending", "firing", "resolved", "inactive"]
"""Where an instance went: `inactive` is a pending alert whose condition cleared."""

STATE_VALUES: Mapping[AlertState, int] = MappingProxyType(
    {"inactive": 0, "pending": 1, "firing": 2}
)
_STATES: tuple[AlertState, ...] = ("inactive", "pending", "firing")
_TRANSITIONS: tuple[TransitionKind, ...] = ("pending", "firing", "resolved", "inactive")


@dataclass(frozen=True, slots=True)
class AlertInstance:
    """A snapshot of one alert instance: which rule, which stream, where it stands."""

    alert: str
    severity: str
    state: AlertState
    key: ReadingKey
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    active_since: float
    """When the condition last became true (start of pending)."""
    fired_at: float | None
    value: float | None
    """The value the condition looked at on the last evaluation (score, p-value, ...)."""

    @property
    def fingerprint(self) -> str:
        """A stable id of the instance (alert name and labels), the same across restarts."""
        canonical = json.dumps([self.alert, sorted(self.labels.items())], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_record(self) -> dict[str, Any]:
        """This instance as JSON-ready values."""
        return {
            "alert": self.alert,
            "severity": self.severity,
            "state": self.state,
            "key": list(self.key),
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "active_since": self.active_since,
            "fired_at": self.fired_at,
            "value": self.value,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AlertInstance:
        """The instance `to_record` wrote; raises ValueError on anything else."""
        state = record["state"]
        if state not in _STATES:
            raise ValueError(f"alert state {state!r}")
        model, version, signal, detector = (str(part) for part in record["key"])
        return cls(
            alert=str(record["alert"]),
            severity=str(record["severity"]),
            state=state,
            key=ReadingKey(model, version, signal, detector),
            labels=MappingProxyType({str(k): str(v) for k, v in record["labels"].items()}),
            annotations=MappingProxyType(
                {str(k): str(v) for k, v in record["annotations"].items()}
            ),
            active_since=float(record["active_since"]),
            fired_at=_optional(record["fired_at"]),
            value=_optional(record["value"]),
        )


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One instance moving from one state to another at time `at`."""

    instance: AlertInstance
    from_state: AlertState
    to_state: TransitionKind
    at: float
    reading: Reading | None
    """The latest reading of the instance's stream when it moved (None after a restore)."""

    @property
    def delivery_id(self) -> str:
        """Names this transition uniquely (instance, where it went, when), for an outbox."""
        return f"{self.instance.fingerprint}:{self.to_state}:{self.at!r}"

    def evidence(self) -> dict[str, Any]:
        """What the reading said at transition time, for the incident record."""
        return reading_evidence(self.reading, self.instance.value)

    def to_alert_event(
        self, *, incident_id: int | None = None, incident_url: str | None = None
    ) -> AlertEvent | None:
        """The hooks' view of this transition; None for pending and cancelled-pending moves."""
        if self.to_state not in ("firing", "resolved"):
            return None
        return alert_event(
            self.instance,
            "firing" if self.to_state == "firing" else "resolved",
            ends_at=self.at if self.to_state == "resolved" else None,
            evidence=self.evidence(),
            incident_id=incident_id,
            incident_url=incident_url,
        )

    def to_record(self) -> dict[str, Any]:
        """This transition as JSON-ready values (what a durable outbox stores)."""
        reading = self.reading
        return {
            "instance": self.instance.to_record(),
            "from_state": self.from_state,
            "to_state": self.to_state,
            "at": self.at,
            "reading": None if reading is None else _reading_record(reading),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AlertTransition:
        """The transition `to_record` wrote; raises ValueError (or KeyError) on anything else."""
        from_state, to_state = record["from_state"], record["to_state"]
        if from_state not in _STATES or to_state not in _TRANSITIONS:
            raise ValueError(f"transition {from_state!r} -> {to_state!r}")
        raw = record["reading"]
        return cls(
            instance=AlertInstance.from_record(record["instance"]),
            from_state=from_state,
            to_state=to_state,
            at=float(record["at"]),
            reading=None if raw is None else Reading(**raw),
        )


def _reading_record(reading: Reading) -> dict[str, Any]:
    return {
        "kind": reading.kind,
        "model": reading.model,
        "version": reading.version,
        "signal": reading.signal,
        "detector": reading.detector,
        "timestamp": reading.timestamp,
        "verdict": reading.verdict,
        "score": reading.score,
        "threshold": reading.threshold,
        "p_value": reading.p_value,
        "evidence": dict(reading.evidence),
    }


def _optional(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def alert_event(
    instance: AlertInstance,
    status: Literal["firing", "resolved"],
    *,
    ends_at: float | None = None,
    evidence: Mapping[str, Any] | None = None,
    incident_id: int | None = None,
    incident_url: str | None = None,
) -> AlertEvent:
    """The one conversion from an in-process alert instance to the hooks' AlertEvent."""
    started = instance.fired_at if instance.fired_at is not None else instance.active_since
    return AlertEvent(
        name=instance.alert,
        severity=instance.severity,
        status=status,
        model=instance.key.model,
        version=instance.key.version,
        labels=instance.labels,
        annotations=instance.annotations,
        starts_at=_utc(started),
        ends_at=None if ends_at is None else _utc(ends_at),
        fingerprint=instance.fingerprint,
        incident_id=incident_id,
        incident_url=incident_url,
        evidence=evidence or {},
    )


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)
