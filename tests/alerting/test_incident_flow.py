"""Incidents of alerts: in-process ones through `IncidentFlow` (including a store that
fails and recovers), and those received from Alertmanager through `with_incident`."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.alerting.engine import AlertEngine
from service.alerting.events import AlertEvent
from service.alerting.incident_flow import IncidentFlow, ReceivedAlertIncidents, incident_path
from service.alerting.reading_store import ReadingStore
from service.alerting.settings import AlertRuleSettings
from service.store.incidents import IncidentStore
from service.store.state_dir import prepare_state_dir
from tests.support.readings import drift_reading


class RecordingDispatcher:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def submit(self, event: AlertEvent) -> bool:
        self.events.append(event)
        return True

    async def run_manual(self, hook_name: str, reason: str, **kwargs: Any) -> Any:
        return (hook_name, reason)


def received_alert(status: str = "firing", **extra: Any) -> AlertEvent:
    """An alert as the Alertmanager receiver hands it over (no incident yet)."""
    return AlertEvent(
        name="InputDrift",
        severity="critical",
        status=status,  # type: ignore[arg-type]
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

    event = received.with_incident(received_alert())

    assert (event.incident_id, event.incident_url) == (1, "/incidents/1")
    assert store.count_open() == 1
    assert received.with_incident(received_alert(incident_id=42)).incident_id == 42  # in-process
    assert store.count_open() == 1
    assert dispatcher.events == []  # queueing is the caller's
    store.close()


def test_firing_opens_one_incident_and_resolved_closes_it(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    dispatcher = RecordingDispatcher()
    received = ReceivedAlertIncidents(store, dispatcher)  # type: ignore[arg-type]

    assert received.submit(received_alert())
    assert received.submit(received_alert())  # a re-notification: same incident
    ended = datetime(2026, 1, 2, 3, 9, 5, tzinfo=timezone.utc)
    assert received.submit(received_alert("resolved", ends_at=ended))

    assert [e.incident_id for e in dispatcher.events] == [1, 1, 1]
    assert dispatcher.events[0].incident_url == "/incidents/1"
    (incident,) = store.list_incidents()
    assert incident.alert == "InputDrift"
    assert incident.labels["source"] == "alertmanager"
    assert incident.started_at == ended.timestamp() - 300
    assert incident.ended_at == ended.timestamp()
    assert incident.evidence == {"received_from": "alertmanager"}
    assert store.count_open() == 0
    store.close()


def test_in_process_events_keep_their_incident(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    dispatcher = RecordingDispatcher()
    received = ReceivedAlertIncidents(store, dispatcher)  # type: ignore[arg-type]
    received.submit(received_alert(incident_id=42))
    assert dispatcher.events[0].incident_id == 42
    assert store.list_incidents() == []
    store.close()


def test_resolved_without_an_open_incident_passes_through(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    dispatcher = RecordingDispatcher()
    received = ReceivedAlertIncidents(store, dispatcher)  # type: ignore[arg-type]
    received.submit(received_alert("resolved"))
    assert dispatcher.events[0].incident_id is None
    assert store.list_incidents() == []
    store.close()


def test_incident_path_is_where_the_admin_server_serves_the_incident() -> None:
    assert incident_path(7) == "/incidents/7"


# --- in-process alerts while the incident store cannot commit -------------------------------

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class DiskFullStore(IncidentStore):
    """An incident store whose first `failures` opens and resolves fail as on a full disk."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def _disk_full(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")

    def open_incident(self, **fields: Any) -> int:
        self._disk_full()
        return super().open_incident(**fields)

    def resolve_incident(self, incident_id: int, ended_at: float) -> None:
        self._disk_full()
        super().resolve_incident(incident_id, ended_at)


class AlertLoop:
    """An alert engine wired to an `IncidentFlow` as the app wires them, with a hook queue."""

    def __init__(self, tmp_path: Path, failures: int) -> None:
        self.store = DiskFullStore(tmp_path / "incidents.sqlite", failures)
        self.readings = ReadingStore()
        self.events: list[AlertEvent] = []
        self.loop = asyncio.new_event_loop()
        flow = IncidentFlow(
            self.store,
            self.readings.history,
            prepare_state_dir(tmp_path / "state"),
            submit_event=self._submit,
            loop=self.loop,
        )
        self.registry = CollectorRegistry()
        self.engine = AlertEngine(
            [AlertRuleSettings.model_validate({"name": "Drift", "condition": "drift_detected"})],
            registry=self.registry,
            on_transition=flow,
            readings=self.readings,
        )

    def _submit(self, event: AlertEvent) -> bool:
        self.events.append(event)
        return True

    def round(self, at: float, drift: bool | None = None) -> list[str]:
        """One evaluation at T0 + `at` (after a reading, if `drift` says what it shows)."""
        if drift is not None:
            reading = drift_reading(
                model="digits",
                version="3",
                signal="embedding",
                detector="mmd",
                timestamp=T0 + at,
                drift_detected=drift,
                score=0.5 if drift else 0.1,
                threshold=0.2,
                p_value=None,
                ood_ratio=None,
                window_fill=1.0,
            )
            self.readings.publish(reading)
        transitions = [t.to_state for t in self.engine.evaluate(now=T0 + at)]
        # Run what the flow handed to the loop (call_soon_threadsafe) before this stop.
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        return transitions

    def alert_state(self) -> float | None:
        labels: Mapping[str, str] = {"alert": "Drift", "severity": "warning", "model": "digits"}
        return self.registry.get_sample_value("outrider_alert_state", dict(labels))


@pytest.fixture
def alert_loop(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AlertLoop]:
    alerts = AlertLoop(tmp_path, failures=request.param)
    yield alerts
    alerts.loop.close()
    alerts.store.close()


@pytest.mark.parametrize("alert_loop", [2], indirect=True)
def test_an_incident_whose_commit_failed_opens_once_the_store_recovers(
    alert_loop: AlertLoop,
) -> None:
    assert alert_loop.round(0.0, drift=True) == ["firing"]
    assert alert_loop.round(10.0) == []  # the store is still full
    assert (alert_loop.alert_state(), alert_loop.store.count_open(), alert_loop.events) == (
        2.0,
        0,
        [],
    )
    assert alert_loop.engine.callback_failures == 2

    assert alert_loop.round(20.0) == []  # the disk was freed
    assert alert_loop.round(30.0) == []
    [incident] = alert_loop.store.list_incidents()
    assert (incident.id, incident.status, incident.started_at) == (1, "open", T0)
    assert [(e.status, e.incident_id, e.incident_url) for e in alert_loop.events] == [
        ("firing", 1, "/incidents/1")
    ]
    assert alert_loop.events[0].starts_at == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert alert_loop.engine.undelivered == 0


@pytest.mark.parametrize("alert_loop", [2], indirect=True)
def test_an_alert_that_fired_and_resolved_during_the_outage_is_opened_then_resolved(
    alert_loop: AlertLoop,
) -> None:
    assert alert_loop.round(0.0, drift=True) == ["firing"]
    assert alert_loop.round(10.0, drift=False) == ["resolved"]  # the open failed again
    assert (alert_loop.alert_state(), alert_loop.events) == (0.0, [])

    assert alert_loop.round(20.0) == []
    [incident] = alert_loop.store.list_incidents()
    assert (incident.id, incident.started_at, incident.ended_at) == (1, T0, T0 + 10.0)
    assert [(e.status, e.incident_id) for e in alert_loop.events] == [
        ("firing", 1),
        ("resolved", 1),
    ]


@pytest.mark.parametrize("alert_loop", [10**6], indirect=True)
def test_a_store_that_never_recovers_does_not_stop_the_alert_loop(
    alert_loop: AlertLoop,
) -> None:
    assert alert_loop.round(0.0, drift=True) == ["firing"]
    assert alert_loop.round(10.0, drift=False) == ["resolved"]
    assert alert_loop.round(20.0, drift=True) == ["firing"]
    for at in (30.0, 40.0):
        assert alert_loop.round(at) == []
    # Only the oldest waiting transition is tried each round; the rest of the instance waits.
    assert alert_loop.engine.callback_failures == 5
    assert alert_loop.engine.undelivered == 3
    assert (alert_loop.store.count_open(), alert_loop.events) == (0, [])
