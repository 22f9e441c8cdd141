"""The admin HTTP server: Prometheus metrics, health and readiness, plus routes others add."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

# A readiness check answers (ready, detail) and must not block: it is called per request.
ReadinessCheck = Callable[[], tuple[bool, str]]


def build_admin_app(
    registry: CollectorRegistry, readiness: Mapping[str, ReadinessCheck] | None = None
) -> web.Application:
    """The aiohttp application with /metrics, /healthz and /readyz.

    /healthz says the process is alive and serving HTTP; /readyz says every readiness
    check passes (the relay is listening, the monitor worker runs).
    """
    checks = dict(readiness or {})
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        # Content negotiation as prometheus_client's own server does: OpenMetrics when the
        # scraper asks for it, the text format otherwise.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = web.Response(body=encoder(registry))
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        results = {name: check() for name, check in checks.items()}
        ready = all(ok for ok, _ in results.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {
                name: {"ok": ok, "detail": detail} for name, (ok, detail) in results.items()
            },
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
