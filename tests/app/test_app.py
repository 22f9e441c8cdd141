"""OutriderApp lifecycle and admin wiring, through the admin HTTP API of a started app."""

from __future__ import annotations

import asyncio
import copy
import errno
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

import service.app
from service.app import OutriderApp
from service.config import OutriderSettings
from service.listeners import ListenerError
from tests.support.observations import observation
from tests.support.peers import free_port
from tests.support.waiting import on_event_loop, poll

NOTIFICATION: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="InputDrift"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "outrider",
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "InputDrift",
                "severity": "critical",
                "model": "digits",
                "version": "3",
            },
            "annotations": {"summary": "drift"},
            "startsAt": "2026-11-23T18:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "f00d",
        }
    ],
}


def settings(tmp_path: Path, **overrides: Any) -> OutriderSettings:
    return OutriderSettings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "admin": {"host": "127.0.0.1", "port": 0},
            # Nothing listens upstream: readiness is about the relay's own listener.
            "dataplane": {"listen_port": 0, "upstream": {"port": free_port()}},
            **overrides,
        }
    )


def outrider_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before and "outrider" in t.name]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class AlertThreadKilled(BaseException):
    """Escapes the alert loop's `except Exception`, as a crash would."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("fault", ["dies", "hangs"])
async def test_a_stalled_monitor_is_reported_but_the_relay_stays_ready(
    tmp_path: Path, http: aiohttp.ClientSession, fault: str
) -> None:
    app = OutriderApp(settings(tmp_path, monitor={"queue_size": 1}, alert_evaluation_seconds=0.02))
    release = threading.Event()

    def broken_evaluate() -> None:
        if fault == "dies":
            raise AlertThreadKilled
        release.wait(30.0)

    app.alerts.evaluate = broken_evaluate  # type: ignore[method-assign]
    await app.start()
    try:
        # The monitor worker stops taking observations: its queue fills.
        await asyncio.to_thread(app.pipeline.stop)
        assert app.pipeline.offer(observation("digits"))
        admin = f"http://127.0.0.1:{app.admin.port}"  # type: ignore[union-attr]

        async def alerts_reported_down() -> bool:
            async with http.get(f"{admin}/healthz") as response:
                assert response.status == 200
                body = await response.json()
            return body["workers"]["alerts"]["ok"] is False

        await poll(alerts_reported_down, "/healthz to report the alert thread down")
        async with http.get(f"{admin}/readyz") as response:
            assert response.status == 200
            body = await response.json()
        assert body["status"] == "ready"
        assert body["checks"] == {"relay": {"ok": True, "detail": "accepting"}}
        assert body["workers"]["monitor"] == {"ok": False, "detail": "1 of 1 observations queued"}
        alerts = body["workers"]["alerts"]
        assert alerts["ok"] is False
        expected = "not running" if fault == "dies" else "stalled"
        assert alerts["detail"].startswith(f"{expected}, last round ")
    finally:
        release.set()
        await app.stop(grace=0)


@pytest.mark.parametrize("failing", ["relay", "admin"])
async def test_a_failed_start_leaves_no_listener_thread_or_open_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    relay_port = free_port()
    overrides: dict[str, Any] = {
        "dataplane": {"listen_port": relay_port, "upstream": {"port": free_port()}},
        "probes": {"enabled": True},
    }
    relay_ready_when_probes_start: list[bool] = []
    app_ref: list[OutriderApp] = []

    async def probes_start(scheduler: Any) -> None:
        relay_ready_when_probes_start.append(app_ref[0].relay.ready)

    monkeypatch.setattr("service.probes.scheduler.ProbeScheduler.start", probes_start)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        if failing == "relay":
            overrides["dataplane"]["listen_port"] = relay_port = taken
        if failing == "admin":
            overrides["admin"] = {"host": "127.0.0.1", "port": taken}
        app = OutriderApp(settings(tmp_path, **overrides))
        app_ref.append(app)
        before = set(threading.enumerate())

        with pytest.raises(ListenerError) as raised:
            await app.start()

        # Which listener, on which address, and what the system said.
        assert str(raised.value).startswith(
            f"{failing} listener on 127.0.0.1:{taken} could not start: [Errno {errno.EADDRINUSE}]"
        )
        assert isinstance(raised.value.__cause__, OSError)

        assert outrider_threads(before) == []
        if failing != "relay":
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", relay_port)
    with pytest.raises(sqlite3.ProgrammingError):
        app.incidents.count_open()
    # Probes start once the relay is up.
    assert relay_ready_when_probes_start == ([] if failing == "relay" else [True])


async def test_stop_joins_the_monitor_off_the_loop_and_keeps_the_store_for_a_busy_alert_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = OutriderApp(settings(tmp_path, alert_evaluation_seconds=0.02))
    busy, release = threading.Event(), threading.Event()

    def slow_evaluate() -> None:
        busy.set()
        release.wait(30.0)

    app.alerts.evaluate = slow_evaluate  # type: ignore[method-assign]
    pipeline_stop = app.pipeline.stop
    stopped_on_loop: list[bool] = []

    def noting_stop(timeout: float = 5.0) -> None:
        stopped_on_loop.append(on_event_loop())
        pipeline_stop(timeout)

    app.pipeline.stop = noting_stop  # type: ignore[method-assign]
    monkeypatch.setattr(service.app, "ALERT_THREAD_JOIN_SECONDS", 0.05)
    await app.start()
    alert_threads = [t for t in threading.enumerate() if t.name == "outrider-alerts"]
    assert await asyncio.to_thread(busy.wait, 30.0)

    await app.stop(grace=0)

    assert stopped_on_loop == [False]
    # The alert thread is still inside its round and may commit an incident: store open.
    assert app.incidents.count_open() == 0
    release.set()
    for thread in alert_threads:
        await asyncio.to_thread(thread.join, 30.0)
    app.incidents.close()


async def test_alerts_received_from_alertmanager_show_in_the_gates_incidents_and_metrics(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    app = OutriderApp(settings(tmp_path))
    await app.start()
    try:
        admin = f"http://127.0.0.1:{app.admin.port}"  # type: ignore[union-attr]
        async with http.post(f"{admin}/alertmanager", json=NOTIFICATION) as response:
            assert (response.status, await response.json()) == (
                200,
                {"accepted": 1, "duplicates": 0, "truncated_alerts": 0},
            )
        async with http.get(f"{admin}/argo/metric", params={"model": "digits"}) as response:
            gate = await response.json()
        assert gate == {
            "ok": False,
            "model": "digits",
            "version": "",
            "firing": [
                {
                    "alert": "InputDrift",
                    "severity": "critical",
                    "model": "digits",
                    "version": "3",
                    "starts_at": "2026-11-23T18:00:00+00:00",
                    "incident_id": 1,
                    "incident_url": "/incidents/1",
                }
            ],
        }
        async with http.get(f"{admin}/incidents") as response:
            (incident,) = (await response.json())["incidents"]
        assert (incident["id"], incident["alert"], incident["status"]) == (1, "InputDrift", "open")
        assert incident["labels"]["source"] == "alertmanager"
        async with http.get(f"{admin}/metrics") as response:
            assert "outrider_incidents_open 1.0" in await response.text()

        resolved = copy.deepcopy(NOTIFICATION)
        resolved["alerts"][0]["status"] = "resolved"
        resolved["alerts"][0]["endsAt"] = "2026-11-23T18:05:00Z"
        async with http.post(f"{admin}/alertmanager", json=resolved) as response:
            assert response.status == 200
        async with http.get(f"{admin}/argo/metric", params={"model": "digits"}) as response:
            assert (await response.json())["ok"] is True
        async with http.get(f"{admin}/incidents/1") as response:
            assert (await response.json())["status"] == "resolved"
    finally:
        await app.stop(grace=0)


CAPTURED_SIGNAL = {
    "name": "probabilities",
    "source": {"output": "probabilities"},
    "reference": {"capture": 50},
    "detectors": [{"type": "ks", "window": 20}],
}


async def test_a_damaged_captured_reference_is_set_aside_and_captured_again(
    tmp_path: Path,
) -> None:
    # What the review found: a truncated capture stopped start-up ("File is not a zip file").
    damaged = tmp_path / "state" / "references" / "demo" / "probabilities.npz"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"PK\x03\x04 cut short")
    app = OutriderApp(settings(tmp_path, models={"demo": {"signals": [CAPTURED_SIGNAL]}}))
    await app.start()
    try:
        assert app.relay.ready
        assert app.pipeline.capture_progress() == {("demo", "probabilities"): (0, 50)}
        assert not damaged.exists()
        [aside] = damaged.parent.glob("probabilities.corrupt-*")
        assert aside.read_bytes() == b"PK\x03\x04 cut short"
    finally:
        await app.stop(grace=0)


@pytest.mark.parametrize("fault", ["damaged run history", "start raises"])
async def test_probes_that_cannot_start_are_switched_off_and_traffic_goes_on(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    runs = tmp_path / "state" / "probes" / "runs.sqlite"
    runs.parent.mkdir(parents=True)
    if fault == "damaged run history":
        runs.write_bytes(b"not a database " * 100)
        reason = (
            f"RunStoreError: probe run history {runs} is unusable (file is not a database); "
            "it is kept as it is: move it away to start with an empty one"
        )
    else:

        async def broken_start(scheduler: Any) -> None:
            raise RuntimeError("probe suites broken")

        monkeypatch.setattr("service.probes.scheduler.ProbeScheduler.start", broken_start)
        reason = "RuntimeError: probe suites broken"
    damaged = runs.read_bytes() if runs.exists() else None
    app = OutriderApp(settings(tmp_path, probes={"enabled": True}))
    with capture_logs() as logs:
        await app.start()
    try:
        assert app.probes.scheduler is None
        [disabled] = [e for e in logs if e["event"] == "probes.disabled"]
        assert (disabled["log_level"], disabled["error"]) == ("error", reason)
        admin = f"http://127.0.0.1:{app.admin.port}"  # type: ignore[union-attr]
        async with http.get(f"{admin}/readyz") as response:
            assert response.status == 200
            body = await response.json()
        assert body["checks"] == {"relay": {"ok": True, "detail": "accepting"}}
        assert body["workers"]["probes"] == {"ok": False, "detail": f"off: {reason}"}
        async with http.get(f"{admin}/healthz") as response:
            workers = (await response.json())["workers"]
        assert workers["probes"] == {"ok": False, "detail": f"off: {reason}"}
        # The relay still takes connections.
        _, writer = await asyncio.open_connection("127.0.0.1", app.relay.port)
        writer.close()
        await writer.wait_closed()
    finally:
        await app.stop(grace=0)
    # The damaged history is left for its owner to look at.
    if damaged is not None:
        assert runs.read_bytes() == damaged


async def test_running_probes_are_reported_in_healthz(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    app = OutriderApp(settings(tmp_path, probes={"enabled": True}))
    await app.start()
    try:
        admin = f"http://127.0.0.1:{app.admin.port}"  # type: ignore[union-attr]
        async with http.get(f"{admin}/healthz") as response:
            workers = (await response.json())["workers"]
        assert workers["probes"] == {"ok": True, "detail": "running, 0 suite(s) scheduled"}
    finally:
        await app.stop(grace=0)


def test_undelivered_alert_transitions_are_exported(tmp_path: Path) -> None:
    """A full disk leaves transitions waiting for their incident: /metrics says so."""

    class Stuck:
        undelivered = 3
        failures = 7

    app = OutriderApp(settings(tmp_path))
    try:
        assert app.registry.get_sample_value("outrider_alert_transitions_undelivered") == 0.0
        assert app.registry.get_sample_value("outrider_alert_transition_failures_total") == 0.0
        app.alerts.outbox = Stuck()  # type: ignore[assignment]
        assert app.registry.get_sample_value("outrider_alert_transitions_undelivered") == 3.0
        assert app.registry.get_sample_value("outrider_alert_transition_failures_total") == 7.0
    finally:
        app.incidents.close()
