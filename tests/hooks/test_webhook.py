"""Webhook hook against a real local HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from aiohttp import web

from service.alerting.events import AlertEvent
from service.hooks.settings import SecretSource, WebhookHookSettings
from service.hooks.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookHook, sign_body

SECRET = "s3cret-signing-key"
TOKEN = "receiver-token"
EVENT = AlertEvent(
    name="InputDrift",
    severity="critical",
    status="firing",
    model="digits",
    version="3",
    labels={"alertname": "InputDrift", "model": "digits"},
    annotations={"summary": "pixel drift"},
    starts_at=datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc),
    fingerprint="a1b2c3",
    incident_id=42,
    incident_url="http://outrider:9400/incidents/42",
    evidence={"detector": "mmd", "score": 0.31},
)


@dataclass
class Receiver:
    """A webhook receiver that answers ``fail_status`` ``failures`` times, then 200."""

    failures: int = 0
    fail_status: int = 503
    delay: float = 0.0
    url: str = ""
    arrivals: list[float] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        body = await request.read()
        self.headers.append(dict(request.headers))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401, text="bad token")
        if self.delay:
            await asyncio.sleep(self.delay)
        if len(self.arrivals) <= self.failures:
            return web.Response(status=self.fail_status, text="try later")
        self.delivered.append(json.loads(body))
        return web.Response(status=200, text="ok")


async def _serve(receiver: Receiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    return runner


@pytest.fixture
async def receiver(request: pytest.FixtureRequest) -> AsyncIterator[Receiver]:
    state = Receiver(**getattr(request, "param", {}))
    runner = await _serve(state)
    yield state
    await runner.cleanup()


def hook_for(url: str, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> WebhookHook:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TEST_WEBHOOK_TOKEN", TOKEN)
    settings = WebhookHookSettings(
        type="webhook",
        name="pager",
        url=url,
        signing_secret=SecretSource(env="TEST_WEBHOOK_SECRET"),
        bearer_token=SecretSource(env="TEST_WEBHOOK_TOKEN"),
        backoff_initial_seconds=0.05,
        backoff_max_seconds=1.0,
        **overrides,
    )
    return WebhookHook(settings, rng=random.Random(7))


@pytest.mark.parametrize("receiver", [{"failures": 3}], indirect=True)
async def test_retries_5xx_with_backoff_then_delivers_once(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = hook_for(receiver.url, monkeypatch, max_retries=4)
    twin = WebhookHook(hook.settings, rng=random.Random(7))
    expected_delays = [twin.backoff_seconds(i) for i in range(3)]

    result = await hook.fire(EVENT, dry_run=False)

    assert result.outcome == "success"
    assert [a.get("status") for a in result.detail["attempts"]] == [503, 503, 503, 200]
    assert len(receiver.arrivals) == 4
    assert len(receiver.delivered) == 1
    assert receiver.bad_signatures == 0
    # Exponential, jittered within [base/2, base] for bases 0.05, 0.1, 0.2 ...
    assert [round(a["backoff_seconds"], 6) for a in result.detail["attempts"][:3]] == [
        round(d, 6) for d in expected_delays
    ]
    for delay, base in zip(expected_delays, (0.05, 0.1, 0.2), strict=True):
        assert base / 2 <= delay <= base
    # ... and observed by the server between arrivals.
    gaps = [b - a for a, b in zip(receiver.arrivals, receiver.arrivals[1:], strict=False)]
    for gap, delay in zip(gaps, expected_delays, strict=True):
        assert gap >= delay * 0.95
    # Every attempt carried the same delivery id.
    assert {h[DELIVERY_HEADER] for h in receiver.headers} == {result.detail["delivery"]}


@pytest.mark.parametrize("receiver", [{"failures": 5, "fail_status": 400}], indirect=True)
async def test_4xx_is_not_retried(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    result = await hook_for(receiver.url, monkeypatch, max_retries=4).fire(EVENT, dry_run=False)

    assert result.outcome == "failed"
    assert len(receiver.arrivals) == 1
    assert result.detail["attempts"] == [{"status": 400, "response": "try later", "attempt": 1}]


@pytest.mark.parametrize("receiver", [{"failures": 10}], indirect=True)
async def test_gives_up_after_max_retries(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = await hook_for(receiver.url, monkeypatch, max_retries=2).fire(EVENT, dry_run=False)

    assert result.outcome == "failed"
    assert len(receiver.arrivals) == 3
    assert receiver.delivered == []


@pytest.mark.parametrize("receiver", [{"delay": 1.0, "failures": 0}], indirect=True)
async def test_timeouts_are_retried(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    result = await hook_for(
        receiver.url, monkeypatch, max_retries=1, timeout_seconds=0.2
    ).fire(EVENT, dry_run=False)

    assert result.outcome == "failed"
    assert [a.get("error") for a in result.detail["attempts"]] == ["timeout", "timeout"]
    assert len(receiver.arrivals) == 2


async def test_connection_errors_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result = await hook_for(f"http://127.0.0.1:{port}/hook", monkeypatch, max_retries=2).fire(
        EVENT, dry_run=False
    )
    assert result.outcome == "failed"
    assert len(result.detail["attempts"]) == 3
    assert all(a["error"].startswith("ClientConnectorError") for a in result.detail["attempts"])


async def test_body_carries_alert_incident_and_evidence(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hook_for(receiver.url, monkeypatch).fire(EVENT, dry_run=False)

    (body,) = receiver.delivered
    assert body["hook"] == "pager"
    assert body["status"] == "firing"
    assert body["incident"] == {"id": 42, "url": "http://outrider:9400/incidents/42"}
    assert body["evidence"] == {"detector": "mmd", "score": 0.31}
    assert body["alert"]["labels"] == {"alertname": "InputDrift", "model": "digits"}
    assert body["alert"]["starts_at"] == "2026-11-23T18:00:00+00:00"


async def test_dry_run_sends_nothing(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    result = await hook_for(receiver.url, monkeypatch).fire(EVENT, dry_run=True)

    assert result.outcome == "dry_run"
    assert receiver.arrivals == []


async def test_missing_secret_is_a_failure_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = WebhookHookSettings(
        type="webhook", name="pager", url="http://127.0.0.1:9/hook",
        signing_secret=SecretSource(env="NOT_SET_ANYWHERE_OUTRIDER"),
    )
    monkeypatch.delenv("NOT_SET_ANYWHERE_OUTRIDER", raising=False)
    result = await WebhookHook(settings).fire(EVENT, dry_run=False)

    assert result.outcome == "failed"
    assert result.detail["error"] == (
        "secret from environment variable NOT_SET_ANYWHERE_OUTRIDER is empty"
    )


def test_signature_format() -> None:
    assert sign_body("key", b"{}") == (
        "sha256=" + hmac.new(b"key", b"{}", hashlib.sha256).hexdigest()
    )


async def test_resolved_not_sent_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = hook_for("http://127.0.0.1:9/hook", monkeypatch, send_resolved=False)
    resolved = AlertEvent(name="InputDrift", severity="critical", status="resolved")
    assert await hook.resolve(resolved, dry_run=False) is None
