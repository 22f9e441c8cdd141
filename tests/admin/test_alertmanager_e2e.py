"""The real Alertmanager routing to outrider's receiver: one action per incident, end to end.

Starts Debian's ``prometheus-alertmanager`` on loopback with a temporary config whose webhook
receiver (bearer token, send_resolved) points at a small aiohttp app hosting the receiver
routes and a real HookDispatcher. Alerts are posted to Alertmanager's v2 API, re-posted,
re-notified (short repeat_interval), grouped (two models, one group) and resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from service.admin.receivers import add_receiver_routes
from service.alerting.events import AlertEvent
from service.hooks.dispatcher import ConfiguredHook, HookDispatcher
from service.hooks.fallback import FallbackHook
from service.hooks.recorder import InMemoryActionRecorder
from service.hooks.settings import FallbackHookSettings, HookMatch

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
TOKEN = "am-to-outrider-token"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        ALERTMANAGER is None,
        reason="Alertmanager binary not found (apt-get install prometheus-alertmanager)",
    ),
]

CONFIG = """\
route:
  receiver: outrider
  group_by: [alertname]
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: outrider
    webhook_configs:
      - url: http://127.0.0.1:{receiver_port}/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RecordingSwitch:
    calls: list[str] = field(default_factory=list)

    async def use_fallback(self) -> None:
        self.calls.append("fallback")

    async def use_primary(self) -> None:
        self.calls.append("primary")


class NoAlerts:
    def firing(self) -> list[AlertEvent]:
        return []


@dataclass
class Outrider:
    url: str
    port: int
    recorder: InMemoryActionRecorder
    switch: RecordingSwitch
    notifications: list[int]
    answers: list[dict[str, Any]]


@pytest.fixture
async def outrider() -> AsyncIterator[Outrider]:
    switch = RecordingSwitch()
    recorder = InMemoryActionRecorder()
    hook = FallbackHook(
        FallbackHookSettings(type="fallback", name="lkg", switch_back_on_resolve=True), switch
    )
    dispatcher = HookDispatcher(
        [ConfiguredHook(hook, match=HookMatch(severities=["critical"]), cooldown_seconds=0,
                        max_actions=10)],
        recorder=recorder,
        registry=CollectorRegistry(),
    )
    notifications: list[int] = []
    answers: list[dict[str, Any]] = []

    @web.middleware
    async def count(request: web.Request, handler: Callable[[web.Request],
                                                            Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        response = await handler(request)
        notifications.append(response.status)
        if isinstance(response, web.Response) and response.text:
            answers.append(json.loads(response.text))
        return response

    app = web.Application(middlewares=[count])
    add_receiver_routes(app, dispatcher=dispatcher, alert_view=NoAlerts(), token=TOKEN,
                        loopback_only=False)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    port = int(sock.getsockname()[1])
    dispatcher.start()
    yield Outrider(f"http://127.0.0.1:{port}", port, recorder, switch, notifications,
                  answers)
    await dispatcher.stop()
    await runner.cleanup()


@pytest.fixture
async def alertmanager(outrider: Outrider, tmp_path: Path) -> AsyncIterator[str]:
    assert ALERTMANAGER is not None
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(receiver_port=outrider.port, token=TOKEN))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/-/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError("alertmanager did not become ready in 20 s")


def _alerts(starts: datetime, ends: datetime | None) -> list[dict[str, Any]]:
    alerts = []
    for model in ("digits", "iris"):
        alert: dict[str, Any] = {
            "labels": {"alertname": "InputDrift", "severity": "critical", "model": model},
            "annotations": {"summary": f"input drift on {model}"},
            "startsAt": starts.isoformat(),
            "generatorURL": "http://prometheus:9090/graph",
        }
        if ends is not None:
            alert["endsAt"] = ends.isoformat()
        alerts.append(alert)
    return alerts


async def _post(url: str, alerts: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        url + "/api/v2/alerts", json=alerts
    ) as response:
        assert response.status == 200, await response.text()


async def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds} s for {what}")
        await asyncio.sleep(0.05)


async def test_alertmanager_drives_exactly_one_action_per_incident(
    outrider: Outrider, alertmanager: str
) -> None:
    started = time.monotonic()
    starts = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=5)

    await _post(alertmanager, _alerts(starts, None))
    await _post(alertmanager, _alerts(starts, None))  # the same alerts again
    await _wait_for(lambda: len(outrider.recorder.actions) >= 2, 15, "two firing actions")
    # Stay firing across at least one repeat_interval: Alertmanager notifies again.
    await _wait_for(lambda: len(outrider.notifications) >= 2, 15, "a repeated notification")
    await _post(alertmanager, _alerts(starts, None))

    await _post(alertmanager, _alerts(starts, datetime.now(timezone.utc)))
    await _wait_for(lambda: len(outrider.recorder.actions) >= 4, 15, "two resolve actions")
    await asyncio.sleep(1.5)  # one more group_interval: nothing else may happen

    actions = outrider.recorder.actions
    per_incident: dict[str, list[tuple[str, str]]] = {}
    for action in actions:
        per_incident.setdefault(action.detail["model"], []).append(
            (action.detail["phase"], action.outcome)
        )
    assert per_incident == {
        "digits": [("fire", "success"), ("resolve", "success")],
        "iris": [("fire", "success"), ("resolve", "success")],
    }
    assert sorted(outrider.switch.calls) == ["fallback", "fallback", "primary", "primary"]
    assert len(outrider.notifications) >= 3  # first, at least one repeat, resolved
    assert set(outrider.notifications) == {200}
    # The repeated firing notification reached the receiver and was deduplicated there.
    assert {"accepted": 0, "duplicates": 2, "truncated_alerts": 0} in outrider.answers
    assert outrider.answers[0] == {"accepted": 2, "duplicates": 0, "truncated_alerts": 0}
    assert time.monotonic() - started < 60
