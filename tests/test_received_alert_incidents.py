"""Alerts received from Alertmanager open and resolve incidents before the hooks see them."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from service.hooks.events import AlertEvent
from service.incident_flow import ReceivedAlertIncidents
from service.store.incidents import IncidentStore


class RecordingDispatcher:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def submit(self, event: AlertEvent) -> bool:
        self.events.append(event)
        return True

    async def run_manual(self, hook_name: str, reason: str, **kwargs: Any) -> Any:
        return (hook_name, reason)


def _event(status: str, **extra: Any) -> AlertEvent:
    return AlertEvent(
        name="OutriderDriftDetected",
        severity="critical",
        status=status,  # type: ignore[arg-type]
        model="demo",
        version="1",
        labels={"alertname": "OutriderDriftDetected", "model": "demo"},
        starts_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        fingerprint="abc",
        **extra,
    )


def test_firing_opens_one_incident_and_resolved_closes_it(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    dispatcher = RecordingDispatcher()
    received = ReceivedAlertIncidents(store, dispatcher)  # type: ignore[arg-type]

    assert received.submit(_event("firing"))
    assert received.submit(_event("firing"))  # a re-notification: same incident
    ended = datetime(2026, 1, 2, 3, 9, 5, tzinfo=timezone.utc)
    assert received.submit(_event("resolved", ends_at=ended))

    assert [e.incident_id for e in dispatcher.events] == [1, 1, 1]
    assert dispatcher.events[0].incident_url == "/incidents/1"
    (incident,) = store.list_incidents()
    assert incident.alert == "OutriderDriftDetected"
    assert incident.labels["source"] == "alertmanager"
    assert incident.started_at == ended.timestamp() - 300
    assert incident.ended_at == ended.timestamp()
    assert incident.evidence == {"received_from": "alertmanager"}
    assert store.count_open() == 0


def test_in_process_events_keep_their_incident(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    dispatcher = RecordingDispatcher()
    received = ReceivedAlertIncidents(store, dispatcher)  # type: ignore[arg-type]
    received.submit(_event("firing", incident_id=42))
    assert dispatcher.events[0].incident_id == 42
    assert store.list_incidents() == []


def test_resolved_without_an_open_incident_passes_through(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    dispatcher = RecordingDispatcher()
    ReceivedAlertIncidents(store, dispatcher).submit(_event("resolved"))  # type: ignore[arg-type]
    assert dispatcher.events[0].incident_id is None
    assert store.list_incidents() == []
