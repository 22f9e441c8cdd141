"""Turns Alertmanager webhook notifications (payload version 4) into deduplicated alert events."""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.alerting.events import AlertEvent

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = "4"
#: Alertmanager's zero time: an alert without an end.
_ZERO_TIME_PREFIX = "0001-01-01T00:00:00"
_FRACTION = re.compile(r"\.(\d+)")


class AlertmanagerPayloadError(ValueError):
    """The notification is not a valid version 4 payload (the message names the field)."""


def parse_rfc3339(value: Any, field_name: str) -> datetime | None:
    """Parse Alertmanager's RFC 3339 times (nanoseconds allowed); None for the zero time."""
    if not isinstance(value, str) or not value:
        raise AlertmanagerPayloadError(f"{field_name}: expected an RFC 3339 time, got {value!r}")
    if value.startswith(_ZERO_TIME_PREFIX):
        return None
    # Python keeps microseconds; Go prints up to nanoseconds.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise AlertmanagerPayloadError(f"{field_name}: not an RFC 3339 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise AlertmanagerPayloadError(f"{field_name}: time without a zone: {value!r}")
    return parsed


def _string_map(value: Any, field_name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise AlertmanagerPayloadError(f"{field_name}: expected an object of strings")
    return dict(value)


@dataclass(frozen=True)
class AlertmanagerNotification:
    """A parsed notification: group metadata and one event per alert."""

    receiver: str
    status: str
    group_key: str
    truncated_alerts: int
    events: list[tuple[tuple[str, str, str], AlertEvent]]


def parse_notification(
    document: Any,
    *,
    model_label: str = "model",
    version_label: str = "version",
    severity_label: str = "severity",
) -> AlertmanagerNotification:
    """Validate a version 4 payload and convert each alert; raises AlertmanagerPayloadError.

    Each event comes with its dedupe key: (fingerprint, startsAt as sent, status).
    """
    if not isinstance(document, dict):
        raise AlertmanagerPayloadError("payload: expected a JSON object")
    version = document.get("version")
    if version != PAYLOAD_VERSION:
        raise AlertmanagerPayloadError(f"version: expected {PAYLOAD_VERSION!r}, got {version!r}")
    alerts = document.get("alerts")
    if not isinstance(alerts, list):
        raise AlertmanagerPayloadError("alerts: expected a list")
    truncated = document.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise AlertmanagerPayloadError("truncatedAlerts: expected a non-negative integer")
    receiver = str(document.get("receiver", ""))
    group_key = str(document.get("groupKey", ""))
    events = []
    for index, alert in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(alert, dict):
            raise AlertmanagerPayloadError(f"{where}: expected an object")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise AlertmanagerPayloadError(
                f"{where}.status: expected 'firing' or 'resolved', got {status!r}"
            )
        labels = _string_map(alert.get("labels"), f"{where}.labels")
        annotations = _string_map(alert.get("annotations"), f"{where}.annotations")
        name = labels.get("alertname", "")
        if not name:
            raise AlertmanagerPayloadError(f"{where}.labels.alertname: missing")
        fingerprint = alert.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise AlertmanagerPayloadError(f"{where}.fingerprint: expected a non-empty string")
        starts_raw = alert.get("startsAt")
        starts_at = parse_rfc3339(starts_raw, f"{where}.startsAt")
        ends_at = parse_rfc3339(alert.get("endsAt", _ZERO_TIME_PREFIX + "Z"), f"{where}.endsAt")
        event = AlertEvent(
            name=name,
            severity=labels.get(severity_label, ""),
            status=status,
            model=labels.get(model_label, ""),
            version=labels.get(version_label, ""),
            labels=labels,
            annotations=annotations,
            starts_at=starts_at,
            ends_at=ends_at,
            fingerprint=fingerprint,
            evidence={
                "source": "alertmanager",
                "receiver": receiver,
                "group_key": group_key,
                "generator_url": str(alert.get("generatorURL", "")),
                "external_url": str(document.get("externalURL", "")),
            },
        )
        events.append(((fingerprint, str(starts_raw), str(status)), event))
    return AlertmanagerNotification(receiver, str(document.get("status", "")), group_key,
                                    truncated, events)


@dataclass(frozen=True)
class IntakeResult:
    """What happened to one notification."""

    accepted: int
    duplicates: int
    overloaded: bool
    truncated_alerts: int


class AlertmanagerIntake:
    """Deduplicates notifications on (fingerprint, startsAt, status) and queues new alerts.

    An alert is remembered only once queued, so a notification refused for overload is
    fully processed when Alertmanager retries it, and the part already queued is skipped.
    """

    def __init__(self, submit: Callable[[AlertEvent], bool], *, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._submit = submit
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self.capacity = capacity

    def receive(self, document: Any) -> IntakeResult:
        """Handle one notification body; raises AlertmanagerPayloadError if malformed."""
        notification = parse_notification(document)
        if notification.truncated_alerts:
            logger.warning(
                "alertmanager notification for %s left out %d alerts (max_alerts); "
                "only the alerts sent are acted on",
                notification.group_key,
                notification.truncated_alerts,
            )
        accepted = duplicates = 0
        for key, event in notification.events:
            if key in self._seen:
                duplicates += 1
                continue
            if not self._submit(event):
                return IntakeResult(accepted, duplicates, True, notification.truncated_alerts)
            self._seen[key] = None
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            accepted += 1
        return IntakeResult(accepted, duplicates, False, notification.truncated_alerts)
