"""The admin HTTP server: metrics from an injected registry, health and readiness."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Gauge

from service.admin.server import AdminServer, build_admin_app


async def test_metrics_health_and_readiness() -> None:
    registry = CollectorRegistry()
    Gauge("outrider_build_info", "Build information.", ["version"], registry=registry).labels(
        "1.2.3"
    ).set(1)
    state = {"relay": (True, "listening on 127.0.0.1:8001"), "monitor": (False, "starting")}
    app = build_admin_app(registry, {name: (lambda n=name: state[n]) for name in state})
    async with TestClient(TestServer(app)) as client:
        metrics = await client.get("/metrics")
        assert metrics.status == 200
        assert metrics.headers["Content-Type"].startswith("text/plain; version=")
        openmetrics = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await openmetrics.text()).endswith("# EOF\n")
        assert 'outrider_build_info{version="1.2.3"} 1.0' in await metrics.text()
        assert (await client.get("/healthz")).status == 200
        not_ready = await client.get("/readyz")
        assert not_ready.status == 503
        assert await not_ready.json() == {
            "status": "not ready",
            "checks": {
                "relay": {"ok": True, "detail": "listening on 127.0.0.1:8001"},
                "monitor": {"ok": False, "detail": "starting"},
            },
        }
        state["monitor"] = (True, "running")
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["status"] == "ready"


async def test_admin_server_binds_loopback_and_reports_its_port() -> None:
    server = AdminServer(build_admin_app(CollectorRegistry()), "127.0.0.1", 0)
    await server.start()
    try:
        assert server.port > 0
        async with TestClient(TestServer(build_admin_app(CollectorRegistry()))) as client:
            assert (await client.get("/healthz")).status == 200
    finally:
        await server.stop()
