"""Inbound endpoints: Alertmanager receiver, Flagger gates, Argo metric, POST /rollback."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from service.admin.receivers import add_receiver_routes
from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.dispatcher import ConfiguredHook, HookDispatcher
from service.hooks.recorder import InMemoryActionRecorder
from tests.support.waiting import on_event_loop

TOKEN = "admin-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)

NOTIFICATION: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="InputDrift"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "outrider",
    "groupLabels": {"alertname": "InputDrift"},
    "commonLabels": {"alertname": "InputDrift", "severity": "critical"},
    "commonAnnotations": {},
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
            "startsAt": "2026-11-23T18:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "f00d",
        },
        {
            "status": "firing",
            "labels": {"alertname": "InputDrift", "severity": "critical", "model": "iris"},
            "annotations": {},
            "startsAt": "2026-11-23T18:00:01Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "beef",
        },
    ],
}


@dataclass
class Sink:
    """Dispatcher double: accepts up to ``capacity`` events."""

    capacity: int = 100
    events: list[AlertEvent] = field(default_factory=list)
    manual: list[tuple[str, str]] = field(default_factory=list)

    def submit(self, event: AlertEvent) -> bool:
        if len(self.events) >= self.capacity:
            return False
        self.events.append(event)
        return True

    async def run_manual(
        self, hook_name: str, reason: str, *, incident_id: int | None = None, requested_by: str = ""
    ) -> Any:
        self.manual.append((hook_name, reason))
        raise AssertionError("not used")


@dataclass
class FiringAlerts:
    alerts: list[AlertEvent] = field(default_factory=list)

    def firing(self) -> list[AlertEvent]:
        return list(self.alerts)


class SwitchHook:
    name = "lkg"

    def __init__(self) -> None:
        self.calls = 0

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        self.calls += 1
        return HookResult("success", "switch to fallback upstream")

    async def resolve(self, event: AlertEvent, *, dry_run: bool) -> HookResult | None:
        return None


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient[Any, Any]] = []

    async def factory(
        *,
        dispatcher: Any,
        alerts: FiringAlerts | None = None,
        token: str | None = TOKEN,
        loopback_only: bool = False,
        **extra: Any,
    ) -> TestClient[Any, Any]:
        app = web.Application()
        add_receiver_routes(
            app,
            dispatcher=dispatcher,
            alert_view=alerts or FiringAlerts(),
            token=token,
            loopback_only=loopback_only,
            **extra,
        )
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


# -- authorisation --------------------------------------------------------------------------

BAD_CREDENTIALS = [
    pytest.param({}, id="none"),
    pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
    pytest.param({"Authorization": f"Basic {TOKEN}"}, id="wrong-scheme"),
    pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="longer-token"),
]


@pytest.mark.parametrize("headers", BAD_CREDENTIALS)
async def test_unauthorised_alertmanager_call_is_401_and_nothing_done(
    make_client: Callable[..., Any], headers: dict[str, str]
) -> None:
    sink = Sink()
    client = await make_client(dispatcher=sink)
    response = await client.post("/alertmanager", json=NOTIFICATION, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="outrider"'
    assert sink.events == []


@pytest.mark.parametrize("headers", BAD_CREDENTIALS)
async def test_unauthorised_rollback_is_401_and_nothing_done(
    make_client: Callable[..., Any], headers: dict[str, str]
) -> None:
    hook = SwitchHook()
    recorder = InMemoryActionRecorder()
    dispatcher = HookDispatcher(
        [ConfiguredHook(hook)], recorder=recorder, registry=CollectorRegistry()
    )
    client = await make_client(dispatcher=dispatcher)
    response = await client.post("/rollback", json={"hook": "lkg", "reason": "x"}, headers=headers)
    assert response.status == 401
    assert (hook.calls, recorder.actions) == (0, [])


async def test_without_a_token_off_loopback_every_mutation_is_refused(
    make_client: Callable[..., Any],
) -> None:
    sink = Sink()
    client = await make_client(dispatcher=sink, token=None)
    response = await client.post(
        "/alertmanager", json=NOTIFICATION, headers={"Authorization": "Bearer "}
    )
    assert response.status == 401
    assert sink.events == []


async def test_loopback_only_needs_no_token(make_client: Callable[..., Any]) -> None:
    sink = Sink()
    client = await make_client(dispatcher=sink, token=None, loopback_only=True)
    response = await client.post("/alertmanager", json=NOTIFICATION)
    assert response.status == 200
    assert len(sink.events) == 2


# -- Alertmanager ---------------------------------------------------------------------------


async def test_alertmanager_notification_becomes_events_and_repeats_dedupe(
    make_client: Callable[..., Any],
) -> None:
    sink = Sink()
    client = await make_client(dispatcher=sink)

    first = await client.post("/alertmanager", json=NOTIFICATION, headers=AUTH)
    repeat = await client.post("/alertmanager", json=NOTIFICATION, headers=AUTH)
    resolved_doc = copy.deepcopy(NOTIFICATION)
    resolved_doc["status"] = "resolved"
    resolved_doc["alerts"][0]["status"] = "resolved"
    resolved_doc["alerts"][0]["endsAt"] = "2026-11-23T18:05:00Z"
    resolved = await client.post("/alertmanager", json=resolved_doc, headers=AUTH)

    assert (first.status, await first.json()) == (
        200,
        {"accepted": 2, "duplicates": 0, "truncated_alerts": 0},
    )
    assert (repeat.status, await repeat.json()) == (
        200,
        {"accepted": 0, "duplicates": 2, "truncated_alerts": 0},
    )
    assert (resolved.status, await resolved.json()) == (
        200,
        {"accepted": 1, "duplicates": 1, "truncated_alerts": 0},
    )
    digits = sink.events[0]
    assert (digits.name, digits.severity, digits.status, digits.model, digits.version) == (
        "InputDrift",
        "critical",
        "firing",
        "digits",
        "3",
    )
    assert digits.starts_at == datetime(2026, 11, 23, 18, 0, 0, 123456, tzinfo=timezone.utc)
    assert digits.ends_at is None
    assert digits.fingerprint == "f00d"
    assert digits.evidence["generator_url"] == "http://prometheus:9090/graph"
    assert [(e.fingerprint, e.status) for e in sink.events] == [
        ("f00d", "firing"),
        ("beef", "firing"),
        ("f00d", "resolved"),
    ]
    assert sink.events[2].ends_at == datetime(2026, 11, 23, 18, 5, tzinfo=timezone.utc)
    assert sink.events[2].incident_key == sink.events[0].incident_key



class ThreadNotingSink(Sink):
    """Notes whether each submit ran on the event loop (the dispatcher's queue lives there)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_loop: list[bool] = []

    def submit(self, event: AlertEvent) -> bool:
        self.on_loop.append(on_event_loop())
        return super().submit(event)


async def test_prepare_runs_off_the_event_loop_and_its_event_is_submitted_on_it(
    make_client: Callable[..., Any],
) -> None:
    from service.alerting.alert_book import FiringAlertBook

    sink, book = ThreadNotingSink(), FiringAlertBook()
    prepared_on_loop: list[bool] = []

    def with_incident(event: AlertEvent) -> AlertEvent:
        # The app commits an incident here (SQLite): it must not block the loop.
        prepared_on_loop.append(on_event_loop())
        return dataclasses.replace(event, incident_id=7 + len(prepared_on_loop))

    client = await make_client(dispatcher=sink, prepare=with_incident, received_alerts=book)
    response = await client.post("/alertmanager", json=NOTIFICATION, headers=AUTH)

    assert response.status == 200
    assert prepared_on_loop == [False, False]
    assert sink.on_loop == [True, True]
    assert [e.incident_id for e in sink.events] == [8, 9]
    assert [e.incident_id for e in book.firing()] == [8, 9]


class OverlapProbe:
    """A `prepare` whose first call holds on until another starts alongside it, or 1 s passes."""

    def __init__(self) -> None:
        self.first_started = threading.Event()
        self.first_done = False
        self.overlapped = threading.Event()

    def __call__(self, event: AlertEvent) -> AlertEvent:
        if not self.first_started.is_set():
            self.first_started.set()
            # Bounded: when notifications are handled one at a time nothing comes.
            self.overlapped.wait(1.0)
            self.first_done = True
        elif not self.first_done:
            self.overlapped.set()
        return event


async def test_concurrent_copies_of_a_notification_are_handled_one_at_a_time(
    make_client: Callable[..., Any],
) -> None:
    sink, probe = Sink(), OverlapProbe()
    client = await make_client(dispatcher=sink, prepare=probe)
    first = asyncio.ensure_future(client.post("/alertmanager", json=NOTIFICATION, headers=AUTH))
    assert await asyncio.to_thread(probe.first_started.wait, 30.0)
    second = await client.post("/alertmanager", json=NOTIFICATION, headers=AUTH)

    assert (await (await first).json())["accepted"] == 2
    assert (await second.json())["duplicates"] == 2
    assert not probe.overlapped.is_set()
    assert [e.fingerprint for e in sink.events] == ["f00d", "beef"]


async def test_overload_answers_503_and_the_retry_completes(
    make_client: Callable[..., Any],
) -> None:
    sink = Sink(capacity=1)
    client = await make_client(dispatcher=sink)

    overloaded = await client.post("/alertmanager", json=NOTIFICATION, headers=AUTH)
    sink.capacity = 10
    retried = await client.post("/alertmanager", json=NOTIFICATION, headers=AUTH)

    assert (overloaded.status, await overloaded.json()) == (
        503,
        {"error": "overloaded", "accepted": 1, "duplicates": 0, "truncated_alerts": 0},
    )
    assert (retried.status, await retried.json()) == (
        200,
        {"accepted": 1, "duplicates": 1, "truncated_alerts": 0},
    )
    assert [e.fingerprint for e in sink.events] == ["f00d", "beef"]


async def test_truncated_alerts_are_reported(make_client: Callable[..., Any]) -> None:
    sink = Sink()
    client = await make_client(dispatcher=sink)
    document = copy.deepcopy(NOTIFICATION)
    document["truncatedAlerts"] = 5
    response = await client.post("/alertmanager", json=document, headers=AUTH)
    assert (response.status, (await response.json())["truncated_alerts"]) == (200, 5)
    assert len(sink.events) == 2


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document = copy.deepcopy(NOTIFICATION)
    change(document)
    return document


MALFORMED = [
    pytest.param(
        _broken(lambda d: d.update(version="3")), "version: expected '4', got '3'", id="version"
    ),
    pytest.param(_broken(lambda d: d.pop("alerts")), "alerts: expected a list", id="no-alerts"),
    pytest.param(
        _broken(lambda d: d["alerts"][1].update(status="pending")),
        "alerts[1].status: expected 'firing' or 'resolved', got 'pending'",
        id="status",
    ),
    pytest.param(
        _broken(lambda d: d["alerts"][0].update(startsAt="yesterday")),
        "alerts[0].startsAt: not an RFC 3339 time: 'yesterday'",
        id="time",
    ),
    pytest.param(
        _broken(lambda d: d["alerts"][0]["labels"].pop("alertname")),
        "alerts[0].labels.alertname: missing",
        id="alertname",
    ),
    pytest.param(
        _broken(lambda d: d["alerts"][0].pop("fingerprint")),
        "alerts[0].fingerprint: expected a non-empty string",
        id="fingerprint",
    ),
    pytest.param(
        _broken(lambda d: d.update(truncatedAlerts=-1)),
        "truncatedAlerts: expected a non-negative integer",
        id="truncated",
    ),
]


@pytest.mark.parametrize(("document", "message"), MALFORMED)
async def test_malformed_notifications_are_400_and_nothing_queued(
    make_client: Callable[..., Any], document: dict[str, Any], message: str
) -> None:
    sink = Sink()
    client = await make_client(dispatcher=sink)
    response = await client.post("/alertmanager", json=document, headers=AUTH)
    assert (response.status, await response.json()) == (400, {"error": message})
    assert sink.events == []


async def test_non_json_body_is_400(make_client: Callable[..., Any]) -> None:
    client = await make_client(dispatcher=Sink())
    response = await client.post("/alertmanager", data=b"{nope", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"].startswith("body is not JSON")


# -- Flagger and Argo -----------------------------------------------------------------------


def firing(model: str, severity: str, version: str = "3", name: str = "InputDrift") -> AlertEvent:
    return AlertEvent(
        name=name,
        severity=severity,
        status="firing",
        model=model,
        version=version,
        starts_at=T0,
        incident_id=9,
    )


FLAGGER_CALL = {
    "name": "digits",
    "namespace": "models",
    "phase": "Progressing",
    "checksum": "abc",
    "metadata": {},
}


async def test_flagger_rollback_is_2xx_only_while_a_critical_alert_fires(
    make_client: Callable[..., Any],
) -> None:
    alerts = FiringAlerts([firing("digits", "warning"), firing("iris", "critical")])
    client = await make_client(dispatcher=Sink(), alerts=alerts)

    calm = await client.post("/flagger/rollback", json=FLAGGER_CALL)
    assert (calm.status, await calm.json()) == (412, {"passed": False, "alerts": []})

    alerts.alerts.append(firing("digits", "critical"))
    burning = await client.post("/flagger/rollback", json=FLAGGER_CALL)
    body = await burning.json()
    assert burning.status == 200
    assert [(a["model"], a["severity"], a["incident_id"]) for a in body["alerts"]] == [
        ("digits", "critical", 9)
    ]


async def test_flagger_target_from_metadata_and_version(make_client: Callable[..., Any]) -> None:
    alerts = FiringAlerts([firing("digits-model", "critical", version="2")])
    client = await make_client(dispatcher=Sink(), alerts=alerts)
    call = {**FLAGGER_CALL, "metadata": {"model": "digits-model", "version": "3"}}
    assert (await client.post("/flagger/rollback", json=call)).status == 412
    call["metadata"]["version"] = "2"
    assert (await client.post("/flagger/rollback", json=call)).status == 200


async def test_flagger_confirm_promotion_gate(make_client: Callable[..., Any]) -> None:
    alerts = FiringAlerts([firing("iris", "critical")])
    client = await make_client(dispatcher=Sink(), alerts=alerts)
    assert (await client.post("/flagger/confirm-promotion", json=FLAGGER_CALL)).status == 200
    alerts.alerts.append(firing("digits", "warning"))
    held = await client.post("/flagger/confirm-promotion", json=FLAGGER_CALL)
    assert held.status == 412
    assert [a["severity"] for a in (await held.json())["alerts"]] == ["warning"]


async def test_flagger_malformed_call_is_400(make_client: Callable[..., Any]) -> None:
    client = await make_client(dispatcher=Sink())
    response = await client.post("/flagger/rollback", json={"namespace": "models"})
    assert (response.status, await response.json()) == (
        400,
        {"error": "name: missing (or set metadata.model)"},
    )


async def test_argo_metric(make_client: Callable[..., Any]) -> None:
    alerts = FiringAlerts([firing("digits", "info", name="LowTraffic")])
    client = await make_client(dispatcher=Sink(), alerts=alerts)

    fine = await (await client.get("/argo/metric", params={"model": "digits"})).json()
    assert fine["ok"] is True
    assert [a["alert"] for a in fine["firing"]] == ["LowTraffic"]

    alerts.alerts.append(firing("digits", "critical", version="4"))
    other_version = await client.get("/argo/metric", params={"model": "digits", "version": "3"})
    assert (await other_version.json())["ok"] is True
    bad = await (
        await client.get("/argo/metric", params={"model": "digits", "version": "4"})
    ).json()
    assert bad == {
        "ok": False,
        "model": "digits",
        "version": "4",
        "firing": [
            {
                "alert": "InputDrift",
                "severity": "critical",
                "model": "digits",
                "version": "4",
                "starts_at": "2026-11-23T18:00:00+00:00",
                "incident_id": 9,
                "incident_url": None,
            }
        ],
    }

    missing = await client.get("/argo/metric")
    assert missing.status == 400


# -- POST /rollback -------------------------------------------------------------------------


async def test_manual_rollback_runs_the_hook_and_records_it(
    make_client: Callable[..., Any],
) -> None:
    hook = SwitchHook()
    recorder = InMemoryActionRecorder()
    dispatcher = HookDispatcher(
        [ConfiguredHook(hook)], recorder=recorder, registry=CollectorRegistry()
    )
    client = await make_client(dispatcher=dispatcher)

    response = await client.post(
        "/rollback", json={"hook": "lkg", "reason": "p99 doubled", "incident_id": 12}, headers=AUTH
    )
    body = await response.json()

    assert response.status == 200
    assert (body["hook"], body["outcome"], body["action"]) == (
        "lkg",
        "success",
        "switch to fallback upstream",
    )
    assert hook.calls == 1
    (record,) = recorder.actions
    assert (record.incident_id, record.hook, record.outcome) == (12, "lkg", "success")
    assert record.detail["manual"] == {"reason": "p99 doubled", "requested_by": "127.0.0.1"}

    unknown = await client.post("/rollback", json={"hook": "nope", "reason": "x"}, headers=AUTH)
    assert (unknown.status, await unknown.json()) == (404, {"error": "no hook named 'nope'"})
    invalid = await client.post("/rollback", json={"hook": "lkg"}, headers=AUTH)
    assert invalid.status == 400
    assert [d["loc"] for d in (await invalid.json())["details"]] == [["reason"]]
    assert hook.calls == 1


async def test_received_alerts_feed_the_flagger_gate() -> None:
    from service.alerting.alert_book import CombinedAlertView, FiringAlertBook

    book = FiringAlertBook()
    engine = FiringAlerts()
    app = web.Application()
    add_receiver_routes(
        app,
        dispatcher=Sink(),
        alert_view=CombinedAlertView(engine, book),
        token=TOKEN,
        loopback_only=False,
        received_alerts=book,
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.post("/flagger/rollback", json=FLAGGER_CALL)).status == 412
        await client.post("/alertmanager", json=NOTIFICATION, headers=AUTH)
        assert (await client.post("/flagger/rollback", json=FLAGGER_CALL)).status == 200

        resolved = copy.deepcopy(NOTIFICATION)
        for alert in resolved["alerts"]:
            alert["status"] = "resolved"
        await client.post("/alertmanager", json=resolved, headers=AUTH)
        assert (await client.post("/flagger/rollback", json=FLAGGER_CALL)).status == 412
        assert book.firing() == []
