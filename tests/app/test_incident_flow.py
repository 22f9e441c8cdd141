"""Incidents for alerts received from Alertmanager: the blocking half, `with_incident`."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from service.hooks.events import AlertEvent
from service.incident_flow import ReceivedAlertIncidents, incident_path
from service.store.incidents import IncidentStore


class RecordingDispatcher:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def submit(self, event: AlertEvent) -> bool:
        self.events.append(event)
        return True

    async def run_manual(self, hook_name: str, reason: str, **kwargs: Any) -> Any:
        return (hook_name, reason)


def firing(**extra: Any) -> AlertEvent:
    return AlertEvent(
        name="InputDrift",
        severity="critical",
        status="firing",
        model="digits",
        version="3",
        labels={"alertname": "InputDrift", "model": "digits"},
        starts_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        fingerprint="f00d",
        **extra,
    )


def test_with_incident_commits_and_returns_the_event_with_its_id(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    dispatcher = RecordingDispatcher()
    received = ReceivedAlertIncidents(store, dispatcher)  # type: ignore[arg-type]

    event = received.with_incident(firing())

    assert (event.incident_id, event.incident_url) == (1, "/incidents/1")
    assert store.count_open() == 1
    assert received.with_incident(firing(incident_id=42)).incident_id == 42  # in-process
    assert store.count_open() == 1
    assert dispatcher.events == []  # queueing is the caller's
    store.close()


def test_incident_path_is_where_the_admin_server_serves_the_incident() -> None:
    assert incident_path(7) == "/incidents/7"
