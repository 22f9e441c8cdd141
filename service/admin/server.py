"""The admin HTTP server: Prometheus metrics, liveness and readiness, plus routes others add.

Other modules add their routes to the application built here (incidents, inbound webhooks);
`AdminServer` runs it on a host and port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

# A check answers (ok, detail) and must not block: it is called per request.
Check = Callable[[], tuple[bool, str]]


def _report(checks: Mapping[str, Check]) -> tuple[bool, dict[str, dict[str, object]]]:
    results = {name: check() for name, check in checks.items()}
    body = {name: {"ok": ok, "detail": detail} for name, (ok, detail) in results.items()}
    return all(ok for ok, _ in results.values()), body


def build_admin_app(
    registry: CollectorRegistry,
    readiness: Mapping[str, Check] | None = None,
    workers: Mapping[str, Check] | None = None,
) -> web.Application:
    """The aiohttp application with /metrics, /healthz and /readyz.

    /healthz says the process is alive and serving HTTP. /readyz answers 503 unless every
    `readiness` check passes (for outrider: the relay accepts connections). `workers` are
    reported in both bodies and never change a status code: a stalled monitor must not take
    the pod out of its Service, or a monitoring fault would stop inference traffic.
    """
    readiness_checks = dict(readiness or {})
    worker_checks = dict(workers or {})
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        # Content negotiation as prometheus_client's own server does: OpenMetrics when the
        # scraper asks for it, the text format otherwise.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        # Collectors may block (the open-incidents gauge reads SQLite): not on the loop
        # that may also relay traffic.
        response = web.Response(body=await asyncio.to_thread(encoder, registry))
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(request: web.Request) -> web.Response:
        _, workers_body = _report(worker_checks)
        return web.json_response({"status": "ok", "workers": workers_body})

    async def readyz(request: web.Request) -> web.Response:
        ready, checks_body = _report(readiness_checks)
        _, workers_body = _report(worker_checks)
        body = {
            "status": "ready" if ready else "not ready",
            "checks": checks_body,
            "workers": workers_body,
        }
        return web.json_response(body, status=200 if ready else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class AdminServer:
    """Runs an admin application on host:port; `port` holds the bound port after start."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
