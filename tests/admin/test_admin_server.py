"""The admin HTTP server: metrics from an injected registry, health and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
            "workers": {},
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


async def test_workers_are_reported_but_never_gate_readiness() -> None:
    relay = [True]
    app = build_admin_app(
        CollectorRegistry(),
        readiness={"relay": lambda: (relay[0], "accepting")},
        workers={"monitor": lambda: (False, "1000 of 1000 observations queued")},
    )
    stalled = {"monitor": {"ok": False, "detail": "1000 of 1000 observations queued"}}
    async with TestClient(TestServer(app)) as client:
        ready = await client.get("/readyz")
        assert (ready.status, await ready.json()) == (
            200,
            {
                "status": "ready",
                "checks": {"relay": {"ok": True, "detail": "accepting"}},
                "workers": stalled,
            },
        )
        health = await client.get("/healthz")
        assert (health.status, await health.json()) == (200, {"status": "ok", "workers": stalled})
        relay[0] = False
        assert (await client.get("/readyz")).status == 503


class LoopRecordingCollector(Collector):
    """Notes whether each scrape ran on an event loop (a blocking collector must not)."""

    def __init__(self) -> None:
        self.on_loop: list[bool] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        yield GaugeMetricFamily("outrider_test_value", "A test value.", value=1.0)


async def test_metrics_are_collected_off_the_event_loop() -> None:
    registry = CollectorRegistry()
    collector = LoopRecordingCollector()
    registry.register(collector)
    collector.on_loop.clear()  # registering may collect once, to check names
    async with TestClient(TestServer(build_admin_app(registry))) as client:
        response = await client.get("/metrics")
        assert "outrider_test_value 1.0" in await response.text()
    assert collector.on_loop == [False]
