"""Incidents for alerts received from Alertmanager: committed in the caller's thread,
queued to the hooks on the dispatcher's loop."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from service.hooks.events import AlertEvent
from service.incident_flow import ReceivedAlertIncidents, incident_path
from service.store.incidents import IncidentStore


class ThreadNotingDispatcher:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []
        self.threads: list[int] = []

    def submit(self, event: AlertEvent) -> bool:
        self.threads.append(threading.get_ident())
        self.events.append(event)
        return True

    async def run_manual(self, hook_name: str, reason: str, **kwargs: Any) -> Any:
        return (hook_name, reason)


def firing() -> AlertEvent:
    return AlertEvent(
        name="InputDrift",
        severity="critical",
        status="firing",
        model="digits",
        version="3",
        labels={"alertname": "InputDrift", "model": "digits"},
        starts_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        fingerprint="f00d",
    )


async def test_submit_from_a_worker_thread_queues_on_the_dispatchers_loop(
    tmp_path: Path,
) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    dispatcher = ThreadNotingDispatcher()
    received = ReceivedAlertIncidents(
        store,
        dispatcher,  # type: ignore[arg-type]
        loop=asyncio.get_running_loop(),
    )

    assert await asyncio.to_thread(received.submit, firing())

    assert dispatcher.threads == [threading.get_ident()]  # the loop's thread
    (event,) = dispatcher.events
    assert (event.incident_id, event.incident_url) == (1, "/incidents/1")
    assert store.count_open() == 1
    store.close()


def test_incident_path_is_where_the_admin_server_serves_the_incident() -> None:
    assert incident_path(7) == "/incidents/7"
