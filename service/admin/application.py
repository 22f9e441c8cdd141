"""The admin application outrider serves: health, metrics, incidents and inbound alerts.

Joins the routes of `server` (/metrics, /healthz, /readyz), `incident_routes` and
`receivers` (Alertmanager, Flagger, Argo Rollouts, on-call rollback) over the parts they
serve. Alerts received from Alertmanager get their incident committed before the hooks
see them, and are kept in a book so the Flagger and Argo gates see them beside the
in-process ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry

from service.admin.incident_routes import add_incident_routes
from service.admin.receivers import Dispatcher, add_receiver_routes
from service.admin.server import Check, build_admin_app
from service.alerting.alert_book import AlertView, CombinedAlertView, FiringAlertBook
from service.alerting.incident_flow import ReceivedAlertIncidents
from service.hooks.secret_source import read_secret
from service.hooks.settings import InboundSettings
from service.store.incidents import IncidentStore


def admin_application(
    registry: CollectorRegistry,
    *,
    readiness: Mapping[str, Check],
    workers: Mapping[str, Check],
    incidents: IncidentStore,
    dispatcher: Dispatcher,
    alerts: AlertView,
    inbound: InboundSettings,
    loopback_only: bool,
) -> web.Application:
    """The aiohttp application with every admin route.

    `readiness` gates /readyz (the relay's); `workers` are reported, never a gate: a
    monitoring fault must not stop inference traffic.
    """
    app = build_admin_app(registry, readiness=readiness, workers=workers)
    add_incident_routes(app, incidents)
    received = FiringAlertBook()  # alerts received from Alertmanager and still firing
    add_receiver_routes(
        app,
        dispatcher=dispatcher,
        # Each alert's incident is committed first, and the hooks get its id.
        prepare=ReceivedAlertIncidents(incidents, dispatcher).with_incident,
        alert_view=CombinedAlertView(alerts, received),
        received_alerts=received,
        token=read_secret(inbound.token) if inbound.token is not None else None,
        loopback_only=loopback_only,
        dedupe_capacity=inbound.dedupe_capacity,
    )
    return app
