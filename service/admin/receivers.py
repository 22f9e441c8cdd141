"""Inbound endpoints on the admin server: Alertmanager, Flagger, Argo Rollouts, on-call rollback.

Thin aiohttp handlers: parse, call a transport-free core in ``service.hooks``, answer.
Mutating endpoints (Alertmanager receiver, POST /rollback) need ``Authorization: Bearer``
unless the admin server is bound to loopback; the read-only gates do not (Flagger cannot
send headers).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.admin.alertmanager import AlertmanagerIntake, AlertmanagerPayloadError
from service.admin.gates import (
    GateRequestError,
    Target,
    argo_metric,
    flagger_target,
    promotion_verdict,
    rollback_verdict,
)
from service.alerting.alert_book import AlertView, FiringAlertBook
from service.alerting.events import AlertEvent
from service.hooks.dispatcher import DispatchedAction, UnknownHookError

logger = logging.getLogger(__name__)

ALERTMANAGER_PATH = "/alertmanager"
FLAGGER_ROLLBACK_PATH = "/flagger/rollback"
FLAGGER_CONFIRM_PROMOTION_PATH = "/flagger/confirm-promotion"
ARGO_METRIC_PATH = "/argo/metric"
ROLLBACK_PATH = "/rollback"


class Dispatcher(Protocol):
    """What the receivers need from the hook dispatcher."""

    def submit(self, event: AlertEvent) -> bool:
        """Queue an event without waiting; False when full. Called on the event loop."""
        ...

    async def run_manual(
        self,
        hook_name: str,
        reason: str,
        *,
        incident_id: int | None = None,
        requested_by: str = "",
    ) -> DispatchedAction:
        """Pull one hook by hand."""
        ...


class ManualRollback(BaseModel):
    """Body of POST /rollback."""

    model_config = ConfigDict(extra="forbid")

    hook: str = Field(min_length=1, description="Name of the hook to pull.")
    reason: str = Field(min_length=1, max_length=1000, description="Why, for the record.")
    incident_id: int | None = Field(default=None, description="Incident to record it on.")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _authorized(request: web.Request, token: str | None) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if token is None or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not JSON: {exc}"}),
            content_type="application/json",
        ) from exc


def add_receiver_routes(
    app: web.Application,
    *,
    dispatcher: Dispatcher,
    alert_view: AlertView,
    token: str | None,
    loopback_only: bool,
    dedupe_capacity: int = 10_000,
    received_alerts: FiringAlertBook | None = None,
    prepare: Callable[[AlertEvent], AlertEvent] | None = None,
) -> None:
    """Register the inbound endpoints on ``app``.

    ``token`` is the bearer token mutating endpoints require when not ``loopback_only``;
    with neither, those endpoints answer 401 to everyone. When ``received_alerts`` is given,
    every alert accepted from Alertmanager is also recorded there (include the book in
    ``alert_view`` with ``CombinedAlertView`` so the Flagger and Argo gates see them).
    ``prepare`` runs for each new alert from Alertmanager before it is submitted, in a
    worker thread, so it may block: the app commits the alert's incident there and returns
    the event with its incident id.
    """
    if token is not None and not token:
        raise ValueError("token must not be empty (use None for no token)")
    if not loopback_only and token is None:
        logger.warning(
            "admin server is not bound to loopback and has no token: "
            "mutating endpoints will refuse every call"
        )

    # The intake runs in a worker thread (see `alertmanager`); the dispatcher belongs to
    # the loop the handlers run on, which the handler records here first.
    loop: asyncio.AbstractEventLoop | None = None

    async def submit_on_loop(event: AlertEvent) -> bool:
        return dispatcher.submit(event)

    def submit(event: AlertEvent) -> bool:
        assert loop is not None
        if prepare is not None:
            event = prepare(event)
        queued = asyncio.run_coroutine_threadsafe(submit_on_loop(event), loop).result()
        if queued and received_alerts is not None:
            received_alerts.observe(event)
        return queued

    intake = AlertmanagerIntake(submit, capacity=dedupe_capacity)
    # One notification at a time: the intake's dedupe memory is not made for concurrent
    # threads, and two copies of one notification must not both get through.
    intake_lock = asyncio.Lock()

    def guard(request: web.Request) -> web.Response | None:
        if loopback_only or _authorized(request, token):
            return None
        return web.json_response(
            {"error": "unauthorized"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="outrider"'},
        )

    async def alertmanager(request: web.Request) -> web.Response:
        refused = guard(request)
        if refused is not None:
            return refused
        document = await _json_body(request)
        nonlocal loop
        loop = asyncio.get_running_loop()
        try:
            async with intake_lock:
                # `prepare` may commit to SQLite: not on the loop that may relay traffic.
                result = await asyncio.to_thread(intake.receive, document)
        except AlertmanagerPayloadError as exc:
            return _error(400, str(exc))
        body = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "truncated_alerts": result.truncated_alerts,
        }
        if result.overloaded:
            # 5xx makes Alertmanager retry the whole notification; the queued part dedupes.
            return web.json_response({"error": "overloaded", **body}, status=503)
        return web.json_response(body)

    async def flagger_gate(request: web.Request, *, rollback: bool) -> web.Response:
        document = await _json_body(request)
        try:
            target = flagger_target(document)
        except GateRequestError as exc:
            return _error(400, str(exc))
        alerts = alert_view.firing()
        verdict = (
            rollback_verdict(alerts, target) if rollback else promotion_verdict(alerts, target)
        )
        # Flagger reads only the status: 2xx means "roll back" / "promote".
        return web.json_response(verdict.to_json(), status=200 if verdict.passed else 412)

    async def flagger_rollback(request: web.Request) -> web.Response:
        return await flagger_gate(request, rollback=True)

    async def flagger_confirm_promotion(request: web.Request) -> web.Response:
        return await flagger_gate(request, rollback=False)

    async def argo(request: web.Request) -> web.Response:
        model = request.query.get("model", "")
        if not model:
            return _error(400, "query parameter 'model' is required")
        target = Target(model, request.query.get("version", ""))
        return web.json_response(argo_metric(alert_view.firing(), target))

    async def manual_rollback(request: web.Request) -> web.Response:
        refused = guard(request)
        if refused is not None:
            return refused
        document = await _json_body(request)
        try:
            order = ManualRollback.model_validate(document)
        except ValidationError as exc:
            return _error(400, "invalid rollback request", details=json.loads(exc.json()))
        try:
            done = await dispatcher.run_manual(
                order.hook,
                order.reason,
                incident_id=order.incident_id,
                requested_by=request.remote or "",
            )
        except UnknownHookError:
            return _error(404, f"no hook named {order.hook!r}")
        return web.json_response(
            {
                "hook": done.hook,
                "outcome": done.outcome,
                "action": done.action,
                "detail": done.detail,
            },
            dumps=lambda value: json.dumps(value, default=str),
        )

    app.router.add_post(ALERTMANAGER_PATH, alertmanager)
    app.router.add_post(FLAGGER_ROLLBACK_PATH, flagger_rollback)
    app.router.add_post(FLAGGER_CONFIRM_PROMOTION_PATH, flagger_confirm_promotion)
    app.router.add_get(ARGO_METRIC_PATH, argo)
    app.router.add_post(ROLLBACK_PATH, manual_rollback)
