"""Incidents in real SQLite: committed before returning, opened once per firing, actions kept."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from service.alerting.engine import AlertEngine
from service.alerting.instances import AlertTransition
from service.alerting.readings import Reading
from service.alerting.settings import AlertRuleSettings
from service.hooks.recorder import ActionRecorder
from service.store.incidents import (
    IncidentStore,
    IncidentStoreError,
    UnknownIncidentError,
)
from tests.support.readings import drift_reading

LABELS = {"alertname": "Drift", "model": "resnet", "version": "1", "signal": "emb"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    with IncidentStore(tmp_path / "incidents.sqlite", clock=Clock()) as opened:
        yield opened


def open_one(store: IncidentStore, **overrides: object) -> int:
    fields: dict[str, object] = dict(
        alert="Drift", severity="critical", labels=LABELS, model="resnet", version="1",
        started_at=100.0, evidence={"score": 0.5}, annotations={"summary": "resnet drifted"},
    )
    fields.update(overrides)
    return store.open_incident(**fields)  # type: ignore[arg-type]


def test_database_is_wal_and_migrated(store: IncidentStore) -> None:
    with sqlite3.connect(store.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("PRAGMA user_version").fetchone() == (1,)


def test_open_is_committed_and_idempotent_while_open(store: IncidentStore) -> None:
    first = open_one(store)
    assert first == 1
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT id, alert, ended_at FROM incidents").fetchall() == [
            (1, "Drift", None)
        ]
    # The same instance (labels in another order) while open: the same incident.
    assert open_one(store, labels=dict(reversed(LABELS.items())), started_at=200.0) == 1
    # Another instance: another incident.
    assert open_one(store, labels={**LABELS, "version": "2"}) == 2
    store.resolve_incident(1, 300.0)
    assert open_one(store, started_at=400.0) == 3
    assert [i.id for i in store.list_incidents()] == [3, 2, 1]


def test_incident_fields_round_trip(store: IncidentStore) -> None:
    incident_id = open_one(
        store,
        evidence={"score": np.float32(0.25), "p_value": float("nan"), "dims": np.array([3, 7]),
                  "top": [(3, np.float64(0.9))], "when": Path("/x")},
    )
    incident = store.get_incident(incident_id)
    assert incident.status == "open"
    assert (incident.alert, incident.severity, incident.model, incident.version) == (
        "Drift", "critical", "resnet", "1"
    )
    assert incident.labels == LABELS
    assert incident.annotations == {"summary": "resnet drifted"}
    assert (incident.started_at, incident.ended_at, incident.plot_path) == (100.0, None, None)
    assert incident.evidence == {
        "score": 0.25, "p_value": None, "dims": [3, 7], "top": [[3, 0.9]], "when": "/x"
    }
    store.set_plot_path(incident_id, Path("/state/plots/incident-1.png"))
    store.resolve_incident(incident_id, 250.0)
    store.resolve_incident(incident_id, 999.0)  # again: keeps the first end
    incident = store.get_incident(incident_id)
    assert (incident.status, incident.ended_at) == ("resolved", 250.0)
    assert incident.plot_path == "/state/plots/incident-1.png"
    # Strict JSON: no NaN tokens.
    json.loads(json.dumps(incident.to_json(), allow_nan=False))


def test_unknown_ids_raise(store: IncidentStore) -> None:
    for call in (lambda: store.get_incident(5), lambda: store.resolve_incident(5, 1.0),
                 lambda: store.set_plot_path(5, "x.png")):
        with pytest.raises(UnknownIncidentError, match="no incident with id 5"):
            call()


def test_actions_are_recorded_in_order(store: IncidentStore) -> None:
    recorder: ActionRecorder = store  # the hooks' protocol
    incident_id = open_one(store)
    recorder.record_action(incident_id, "webhook", "notify", "ok", {"status": 200})
    recorder.record_action(incident_id, "argo", "abort", "dry_run", {"rollout": "web"})
    recorder.record_action(None, "exec", "run", "failed", {"exit": 3})
    with capture_logs() as logs:
        recorder.record_action(42, "kserve", "rollback", "ok", {})
    assert [e["event"] for e in logs] == ["action_for_unknown_incident"]
    actions = store.get_incident(incident_id).actions
    assert [(a.id, a.at, a.hook, a.action, a.outcome, a.detail) for a in actions] == [
        (1, 1001.0, "webhook", "notify", "ok", {"status": 200}),
        (2, 1002.0, "argo", "abort", "dry_run", {"rollout": "web"}),
    ]
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT incident_id, hook FROM actions ORDER BY id").fetchall() == [
            (1, "webhook"), (1, "argo"), (None, "exec"), (42, "kserve")
        ]
    assert store.list_incidents()[0].actions == actions


def test_list_filters_orders_and_limits(store: IncidentStore) -> None:
    for version in range(5):
        open_one(store, labels={**LABELS, "version": str(version)}, started_at=100.0 + version)
    store.resolve_incident(2, 500.0)
    store.resolve_incident(4, 500.0)
    assert [i.id for i in store.list_incidents()] == [5, 4, 3, 2, 1]
    assert [i.id for i in store.list_incidents(status="open")] == [5, 3, 1]
    assert [i.id for i in store.list_incidents(status="resolved", limit=1)] == [4]
    with pytest.raises(ValueError, match="status must be one of"):
        store.list_incidents(status="closed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be a positive integer, got 0"):
        store.list_incidents(limit=0)


def test_concurrent_writers_lose_nothing(store: IncidentStore) -> None:
    incident_id = open_one(store)

    def record(worker: int) -> None:
        for step in range(25):
            store.record_action(incident_id, f"hook{worker}", "act", "ok", {"step": step})

    threads = [threading.Thread(target=record, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    actions = store.get_incident(incident_id).actions
    assert len(actions) == 100
    assert sorted(a.detail["step"] for a in actions if a.hook == "hook2") == list(range(25))


def test_data_survives_reopen_and_schema_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "incidents.sqlite"
    with IncidentStore(path) as store:
        open_one(store)
    with IncidentStore(path) as store:
        assert [i.alert for i in store.list_incidents()] == ["Drift"]
    with sqlite3.connect(path) as other:
        other.execute("PRAGMA user_version = 7")
    with pytest.raises(IncidentStoreError, match="schema version 7, newer than this outrider"):
        IncidentStore(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(IncidentStoreError, match="junk.sqlite is unusable"):
        IncidentStore(junk)


def test_alert_firing_opens_exactly_one_committed_incident_per_firing(tmp_path: Path) -> None:
    """The wiring the app uses: on firing, open (committed) then hooks; on resolved, close."""
    store = IncidentStore(tmp_path / "incidents.sqlite")
    seen_from_another_connection: list[list[tuple[int, str]]] = []

    def on_transition(transition: AlertTransition) -> None:
        instance = transition.instance
        if transition.to_state == "firing":
            store.open_incident(
                alert=instance.alert, severity=instance.severity, labels=instance.labels,
                model=instance.key.model, version=instance.key.version,
                started_at=transition.at, evidence=transition.evidence(),
                annotations=instance.annotations,
            )
            with sqlite3.connect(store.path) as other:
                seen_from_another_connection.append(
                    other.execute("SELECT id, alert FROM incidents WHERE ended_at IS NULL")
                    .fetchall()
                )
        elif transition.to_state == "resolved":
            incident_id = store.find_open_incident(instance.alert, instance.labels)
            assert incident_id is not None
            store.resolve_incident(incident_id, transition.at)

    rule = AlertRuleSettings.model_validate(
        {"name": "Drift", "condition": "drift_detected", "for": "10s"}
    )
    engine = AlertEngine([rule], registry=None, on_transition=on_transition)

    def reading(detected: bool, at: float) -> Reading:
        return drift_reading(
            model="resnet", version="1", signal="emb", detector="mmd", timestamp=at,
            drift_detected=detected, score=0.5 if detected else 0.1, threshold=0.2,
            p_value=None, ood_ratio=None, window_fill=1.0, top_mean_shifts=((4, 0.7),),
            example_request_ids=("r1",),
        )

    for second in range(0, 60, 5):  # drift from 0 s, fires at 10 s, keeps firing
        engine.observe(reading(True, float(second)))
        engine.evaluate(now=float(second))
    engine.observe(reading(False, 60.0))
    engine.evaluate(now=60.0)
    for second in range(65, 100, 5):
        engine.observe(reading(True, float(second)))
        engine.evaluate(now=float(second))
    assert seen_from_another_connection == [[(1, "Drift")], [(2, "Drift")]]
    incidents = store.list_incidents()
    assert [(i.id, i.status, i.started_at, i.ended_at) for i in incidents] == [
        (2, "open", 75.0, None), (1, "resolved", 10.0, 60.0)
    ]
    assert incidents[1].evidence["top_mean_shifts"] == [{"dimension": 4, "shift": 0.7}]
    assert incidents[1].evidence["example_request_ids"] == ["r1"]
    assert incidents[1].labels["detector"] == "mmd"
    store.close()
