"""Read-only incident endpoints on the admin server: list, one incident, its plot.

Thin handlers: parse the query, call the incident store in a worker thread (SQLite must not
block the event loop the relay may share), answer JSON or the PNG.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from service.alerting.incident_flow import INCIDENTS_PATH
from service.store.incidents import (
    INCIDENT_STATUSES,
    IncidentStatus,
    IncidentStore,
    UnknownIncidentError,
)

MAX_LIMIT = 1000


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _incident_id(request: web.Request) -> int | web.Response:
    raw = request.match_info["incident_id"]
    if not raw.isascii() or not raw.isdigit():
        return _error(400, f"incident id must be a positive integer, got {raw!r}")
    return int(raw)


def add_incident_routes(app: web.Application, store: IncidentStore) -> None:
    """Add `GET /incidents`, `GET /incidents/{id}` and `GET /incidents/{id}/plot` to `app`.

    `/incidents` takes `status` (open or resolved) and `limit` (1..1000, default 50).
    Errors are JSON `{"error": message}`: 400 for a bad query or id, 404 for an unknown
    incident or a missing plot.
    """

    async def list_incidents(request: web.Request) -> web.Response:
        status_text = request.query.get("status")
        status: IncidentStatus | None = None
        if status_text is not None:
            if status_text not in INCIDENT_STATUSES:
                return _error(400, f"status must be one of {list(INCIDENT_STATUSES)}, "
                                   f"got {status_text!r}")
            status = "open" if status_text == "open" else "resolved"
        limit_text = request.query.get("limit", "50")
        if not limit_text.isascii() or not limit_text.isdigit() or not (
            1 <= int(limit_text) <= MAX_LIMIT
        ):
            return _error(400, f"limit must be an integer from 1 to {MAX_LIMIT}, "
                               f"got {limit_text!r}")
        incidents = await asyncio.to_thread(store.list_incidents, status, int(limit_text))
        return web.json_response({"incidents": [incident.to_json() for incident in incidents]})

    async def get_incident(request: web.Request) -> web.Response:
        incident_id = _incident_id(request)
        if isinstance(incident_id, web.Response):
            return incident_id
        try:
            incident = await asyncio.to_thread(store.get_incident, incident_id)
        except UnknownIncidentError as error:
            return _error(404, str(error))
        return web.json_response(incident.to_json())

    async def get_plot(request: web.Request) -> web.StreamResponse:
        incident_id = _incident_id(request)
        if isinstance(incident_id, web.Response):
            return incident_id
        try:
            incident = await asyncio.to_thread(store.get_incident, incident_id)
        except UnknownIncidentError as error:
            return _error(404, str(error))
        if incident.plot_path is None:
            return _error(404, f"incident {incident_id} has no plot")
        try:
            body = await asyncio.to_thread(Path(incident.plot_path).read_bytes)
        except OSError:
            return _error(404, f"the plot of incident {incident_id} is missing on disk")
        return web.Response(body=body, content_type="image/png")

    app.router.add_get(INCIDENTS_PATH, list_incidents)
    app.router.add_get(INCIDENTS_PATH + "/{incident_id}", get_incident)
    app.router.add_get(INCIDENTS_PATH + "/{incident_id}/plot", get_plot)
