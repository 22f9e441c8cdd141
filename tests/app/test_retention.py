"""State-directory retention: what goes, what stays, and that the alert thread does it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from structlog.testing import capture_logs

from service.app import OutriderApp
from service.config import OutriderSettings
from service.probes.run_store import RunRecord, RunStore, run_store_path
from service.store.incidents import IncidentPruning, IncidentStore
from service.store.set_aside import remove_set_aside_files
from service.store.state_dir import prepare_state_dir
from tests.support.peers import free_port
from tests.support.waiting import on_event_loop, poll

DAY = 86400.0
NOW = 1_800_000_000.0


def aside(folder: Path, name: str, *, mtime: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"unreadable")
    os.utime(path, (mtime, mtime))
    return path


def test_set_aside_files_go_by_age_and_nothing_else_does(tmp_path: Path) -> None:
    horizon = NOW - 90 * DAY
    old = aside(tmp_path / "checkpoints", "monitor.corrupt-20260101T000000Z", mtime=NOW - 100 * DAY)
    suffixed = aside(
        tmp_path / "references" / "digits",
        "pixels.corrupt-20260101T000000Z-1",
        mtime=NOW - 100 * DAY,
    )
    unstamped = aside(tmp_path / "checkpoints", "old.corrupt-by-hand", mtime=NOW - 100 * DAY)
    recent = aside(tmp_path / "checkpoints", "monitor.corrupt-20261231T000000Z", mtime=NOW - DAY)
    # Written long ago but set aside yesterday (a rename keeps the mtime): kept.
    set_aside_lately = aside(
        tmp_path / "references", "embed.corrupt-20270113T000000Z", mtime=NOW - 300 * DAY
    )
    checkpoint = aside(tmp_path / "checkpoints", "monitor.npz", mtime=NOW - 300 * DAY)
    folder = tmp_path / "references" / "dir.corrupt-20200101T000000Z"
    folder.mkdir()
    os.utime(folder, (0.0, 0.0))

    assert remove_set_aside_files(tmp_path, horizon) == 3

    assert not any(p.exists() for p in (old, suffixed, unstamped))
    assert all(p.exists() for p in (recent, set_aside_lately, checkpoint, folder))


def settings(tmp_path: Path, **overrides: Any) -> OutriderSettings:
    return OutriderSettings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "admin": {"host": "127.0.0.1", "port": 0},
            "dataplane": {"listen_port": 0, "upstream": {"port": free_port()}},
            "alert_evaluation_seconds": 0.02,
            **overrides,
        }
    )


def old_state(tmp_path: Path) -> dict[str, Any]:
    """A state directory a sidecar left behind a year ago, plus some recent things."""
    state = prepare_state_dir(tmp_path / "state")
    now = time.time()
    plot = state.plot_path(1, "firing")
    plot.write_bytes(b"png")
    with IncidentStore(state.incidents_db) as store:
        labels = {"alertname": "Drift"}
        common: dict[str, Any] = {"alert": "Drift", "severity": "critical", "model": "m"}
        old = store.open_incident(
            **common, labels=labels, version="1", started_at=now - 400 * DAY, evidence={}
        )
        store.set_plot_path(old, plot)
        store.record_action(old, "webhook", "notify", "ok", {})
        store.resolve_incident(old, now - 300 * DAY)
        still_open = store.open_incident(
            **common,
            labels={**labels, "v": "2"},
            version="2",
            started_at=now - 400 * DAY,
            evidence={},
        )
    runs = RunStore(run_store_path(state.root))
    runs.set_known_good("m", "1", now - 400 * DAY)
    for started in (now - 300 * DAY, now - 200 * DAY):
        runs.record_run(
            RunRecord(
                model="m",
                version="1",
                suite="s",
                suite_digest="d",
                kind="noise",
                started_at=started,
                finished_at=started,
                outcome="ok",
                probes=2,
                predictions=np.array([0, 1]),
            )
        )
    runs.close()
    corrupt = aside(state.checkpoints, "monitor.corrupt-20200101T000000Z", mtime=now - 300 * DAY)
    return {"state": state, "plot": plot, "open": still_open, "corrupt": corrupt}


async def test_the_alert_thread_prunes_old_state_at_start_never_on_the_loop(
    tmp_path: Path,
) -> None:
    left = old_state(tmp_path)
    app = OutriderApp(settings(tmp_path))
    prune = app.incidents.prune_resolved
    where: list[tuple[str, bool]] = []

    def recording_prune(ended_before: float) -> IncidentPruning:
        where.append((threading.current_thread().name, on_event_loop()))
        return prune(ended_before)

    app.incidents.prune_resolved = recording_prune  # type: ignore[method-assign]
    with capture_logs() as logs:
        await app.start()
        try:
            await poll(lambda: any(e["event"] == "state_pruned" for e in logs), "a pruning")
            assert [i.id for i in app.incidents.list_incidents()] == [left["open"]]
        finally:
            await app.stop(grace=0)
    assert where == [("outrider-alerts", False)]
    [pruned] = [e for e in logs if e["event"] == "state_pruned"]
    assert {k: pruned[k] for k in ("log_level", "older_than_days", "failed")} == {
        "log_level": "info",
        "older_than_days": 90,
        "failed": [],
    }
    assert {k: pruned[k] for k in ("incidents", "actions", "plots")} == {
        "incidents": 1,
        "actions": 1,
        "plots": 1,
    }
    # The known-good baseline stays; the older run of the same version goes.
    assert (pruned["probe_runs"], pruned["set_aside_files"]) == (1, 1)
    assert not left["plot"].exists() and not left["corrupt"].exists()
    runs = RunStore(run_store_path(left["state"].root))
    assert len(runs.runs()) == 1 and runs.known_good("m") == "1"
    runs.close()


async def test_a_failed_pruning_is_logged_and_retried_next_interval(tmp_path: Path) -> None:
    left = old_state(tmp_path)
    # About a fifth of a second between prunings.
    app = OutriderApp(settings(tmp_path, retention={"interval_hours": 0.2 / 3600}))
    prune = app.incidents.prune_resolved
    calls: list[float] = []

    def disk_error_once(ended_before: float) -> IncidentPruning:
        calls.append(ended_before)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        return prune(ended_before)

    app.incidents.prune_resolved = disk_error_once  # type: ignore[method-assign]
    with capture_logs() as logs:
        await app.start()
        try:
            await poll(lambda: len(calls) >= 2, "a second pruning")
            await poll(
                lambda: len([e for e in logs if e["event"] == "state_pruned"]) >= 2,
                "the second pruning's log line",
            )
            assert app.alert_loop.alive
        finally:
            await app.stop(grace=0)
    [failure] = [e for e in logs if e["event"] == "state_pruning_failed"]
    assert (failure["log_level"], failure["part"]) == ("error", "incidents")
    first, second = [e for e in logs if e["event"] == "state_pruned"][:2]
    # The other parts ran anyway; the incidents went on the next interval.
    assert (first["failed"], first["set_aside_files"]) == (["incidents"], 1)
    assert "incidents" not in first
    assert (second["failed"], second["incidents"], second["plots"]) == ([], 1, 1)
    assert not left["plot"].exists()


async def test_days_zero_keeps_everything(tmp_path: Path) -> None:
    left = old_state(tmp_path)
    app = OutriderApp(settings(tmp_path, retention={"days": 0}))
    evaluate = app.alerts.evaluate
    rounds: list[None] = []

    def counting_evaluate() -> None:
        rounds.append(None)
        evaluate()

    app.alerts.evaluate = counting_evaluate  # type: ignore[method-assign]
    with capture_logs() as logs:
        await app.start()
        try:
            # Pruning would have run in the first round: a few rounds are enough.
            await poll(lambda: len(rounds) >= 3, "three alert rounds")
        finally:
            await app.stop(grace=0)
    assert not [e for e in logs if e["event"].startswith("state_prun")]
    assert left["plot"].exists() and left["corrupt"].exists()
    with IncidentStore(left["state"].incidents_db) as store:
        assert len(store.list_incidents()) == 2
