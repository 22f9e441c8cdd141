"""Pruning resolved incidents: old resolved ones go with their actions and plots, nothing else."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import service.store.incidents
from service.store.incidents import IncidentPruning, IncidentStore

DAY = 86400.0
NOW = 1_800_000_000.0
HORIZON = NOW - 90 * DAY


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    with IncidentStore(tmp_path / "incidents.sqlite", clock=lambda: NOW) as opened:
        yield opened


def incident(
    store: IncidentStore,
    name: str,
    *,
    started_at: float,
    ended_at: float | None,
    plot: Path | None = None,
    actions: int = 0,
) -> int:
    incident_id = store.open_incident(
        alert="Drift",
        severity="critical",
        labels={"alertname": "Drift", "case": name},
        model="resnet",
        version="1",
        started_at=started_at,
        evidence={},
    )
    if plot is not None:
        store.set_plot_path(incident_id, plot)
    for number in range(actions):
        store.record_action(incident_id, "webhook", "notify", "ok", {"n": number})
    if ended_at is not None:
        store.resolve_incident(incident_id, ended_at)
    return incident_id


def rows(store: IncidentStore, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(store.path) as other:
        return other.execute(sql).fetchall()


def test_old_resolved_incidents_go_with_actions_and_plots_open_and_recent_stay(
    store: IncidentStore, tmp_path: Path
) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    for name in ("old", "recent", "open"):
        (plots / f"{name}.png").write_bytes(b"png")
    old = incident(
        store,
        "old",
        started_at=NOW - 400 * DAY,
        ended_at=NOW - 300 * DAY,
        plot=plots / "old.png",
        actions=2,
    )
    # Its plot was deleted by hand already: that is fine.
    gone_plot = incident(
        store,
        "gone-plot",
        started_at=NOW - 200 * DAY,
        ended_at=HORIZON - 1,
        plot=plots / "deleted.png",
        actions=1,
    )
    no_plot = incident(store, "no-plot", started_at=NOW - 200 * DAY, ended_at=HORIZON - 50)
    # Ended exactly at the horizon, or after it: kept.
    at_horizon = incident(store, "at-horizon", started_at=NOW - 100 * DAY, ended_at=HORIZON)
    recent = incident(
        store,
        "recent",
        started_at=NOW - 400 * DAY,
        ended_at=NOW - DAY,
        plot=plots / "recent.png",
        actions=1,
    )
    # Open for a year: never pruned, however old.
    still_open = incident(
        store,
        "open",
        started_at=NOW - 365 * DAY,
        ended_at=None,
        plot=plots / "open.png",
        actions=1,
    )
    store.record_action(None, "webhook", "notify", "ok", {})  # names no incident: kept

    assert store.prune_resolved(HORIZON) == IncidentPruning(incidents=3, actions=3, plots=1)

    assert sorted(i.id for i in store.list_incidents()) == [at_horizon, recent, still_open]
    assert {old, gone_plot, no_plot}.isdisjoint(
        row[0] for row in rows(store, "SELECT incident_id FROM actions")
    )
    assert rows(store, "SELECT incident_id FROM actions ORDER BY id") == [
        (recent,),
        (still_open,),
        (None,),
    ]
    assert sorted(p.name for p in plots.iterdir()) == ["open.png", "recent.png"]
    assert store.get_incident(still_open).status == "open"
    # Nothing left to prune: a second pass changes nothing.
    assert store.prune_resolved(HORIZON) == IncidentPruning(incidents=0, actions=0, plots=0)


def test_an_incident_whose_plot_cannot_be_removed_stays_for_the_next_pruning(
    store: IncidentStore, tmp_path: Path
) -> None:
    stuck = tmp_path / "stuck.png"
    stuck.mkdir()  # unlink fails on a folder, as it would on a read-only volume
    kept = incident(store, "stuck", started_at=0.0, ended_at=10.0, plot=stuck, actions=1)
    pruned = incident(store, "fine", started_at=0.0, ended_at=10.0)

    assert store.prune_resolved(HORIZON) == IncidentPruning(incidents=1, actions=0, plots=0)

    assert [i.id for i in store.list_incidents()] == [kept]
    assert len(store.get_incident(kept).actions) == 1
    assert pruned not in [i.id for i in store.list_incidents()]
    stuck.rmdir()
    assert store.prune_resolved(HORIZON) == IncidentPruning(incidents=1, actions=1, plots=0)
    assert store.list_incidents() == []


def test_pruning_goes_through_a_backlog_in_batches(
    store: IncidentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.store.incidents, "PRUNE_BATCH", 2)
    for number in range(5):
        incident(store, f"old-{number}", started_at=0.0, ended_at=10.0, actions=1)
    recent = incident(store, "recent", started_at=0.0, ended_at=NOW)

    assert store.prune_resolved(HORIZON) == IncidentPruning(incidents=5, actions=5, plots=0)
    assert [i.id for i in store.list_incidents()] == [recent]
