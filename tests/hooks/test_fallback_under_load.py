"""In-band fallback under continuous tritonclient load through the relay.

Two bundled model servers (primary serves version "1", fallback version "2") sit behind the
relay; four tritonclient channels infer in a loop. A firing alert goes through the
HookDispatcher to the fallback hook (the relay is its UpstreamSwitch), then the alert
resolves and the hook switches back. No RPC may fail, every client must move to the new
upstream, and the relay's connections to the old upstream must close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as triton
from prometheus_client import CollectorRegistry

from service.alerting.events import AlertEvent
from service.dataplane.relay import Relay
from service.dataplane.settings import DataplaneSettings, UpstreamSettings
from service.hooks.dispatcher import ConfiguredHook, HookDispatcher
from service.hooks.fallback import FallbackHook
from service.hooks.recorder import InMemoryActionRecorder
from service.hooks.settings import FallbackHookSettings
from service.modelserver.server import ModelServer, start_model_server

pytestmark = pytest.mark.e2e

CLIENTS = 4
PHASE_SECONDS = 2.0
# Every client's connection should have moved well within this (the drain waits for open
# calls only, and they take milliseconds); generous for a loaded machine.
SETTLE_LIMIT_SECONDS = 10.0


def established_connections_to(port: int) -> int:
    """ESTABLISHED TCP connections whose remote end is 127.0.0.1:``port`` (Linux /proc)."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state = fields[2], fields[3]
            address, remote_port = remote.split(":")
            if state == "01" and int(remote_port, 16) == port and address == "0100007F":
                count += 1
    return count


@dataclass
class Upstreams:
    primary: ModelServer
    fallback: ModelServer


@pytest.fixture
async def upstreams(demo_model_path: Path) -> AsyncIterator[Upstreams]:
    primary = await start_model_server(demo_model_path, name="demo", version="1", port=0)
    fallback = await start_model_server(demo_model_path, name="demo", version="2", port=0)
    yield Upstreams(primary, fallback)
    await primary.stop(grace=None)
    await fallback.stop(grace=None)


@pytest.fixture
async def relay(upstreams: Upstreams) -> AsyncIterator[Relay]:
    settings = DataplaneSettings(
        listen_host="127.0.0.1",
        listen_port=0,
        upstream=UpstreamSettings(host="127.0.0.1", port=upstreams.primary.port),
        fallback_upstream=UpstreamSettings(host="127.0.0.1", port=upstreams.fallback.port),
    )
    server = Relay(settings, registry=CollectorRegistry())
    await server.start()
    yield server
    await server.stop(grace=1.0)


@dataclass
class Load:
    """Per-client log of (monotonic time, model version answered) and every failure."""

    answers: list[list[tuple[float, str]]] = field(
        default_factory=lambda: [[] for _ in range(CLIENTS)]
    )
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def _client_loop(port: int, index: int, load: Load) -> None:
    pixels = np.random.default_rng(index).random((4, 64), dtype=np.float32)
    tensor = triton.InferInput("pixels", [4, 64], "FP32")
    tensor.set_data_from_numpy(pixels)
    # A local subchannel pool gives each client its own connection, as separate processes have.
    client = triton.InferenceServerClient(
        f"127.0.0.1:{port}", channel_args=[("grpc.use_local_subchannel_pool", 1)]
    )
    try:
        while not load.stop.is_set():
            try:
                result = await client.infer("demo", [tensor], client_timeout=10)
            except Exception as exc:  # every failure counts; the test demands none
                load.failures.append(f"client {index}: {exc!r}")
                continue
            version = result.get_response().model_version
            load.answers[index].append((time.monotonic(), version))
    finally:
        await client.close()


async def _settled(to_port: int, from_port: int) -> float:
    """When every client's connection is on `to_port` and none is left on `from_port`."""
    deadline = time.monotonic() + 2 * SETTLE_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if (
            established_connections_to(from_port) == 0
            and established_connections_to(to_port) == CLIENTS
        ):
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError(f"connections did not move from port {from_port} to {to_port}")


def _versions_between(load: Load, start: float, end: float) -> list[set[str]]:
    return [{v for t, v in answers if start <= t < end} for answers in load.answers]


async def test_switching_upstream_under_load_fails_no_rpc(
    relay: Relay, upstreams: Upstreams
) -> None:
    recorder = InMemoryActionRecorder()
    hook = FallbackHook(
        FallbackHookSettings(type="fallback", name="lkg", switch_back_on_resolve=True), relay
    )
    dispatcher = HookDispatcher([ConfiguredHook(hook, cooldown_seconds=0)], recorder=recorder,
                                registry=CollectorRegistry())
    alert = AlertEvent(name="InputDrift", severity="critical", status="firing", model="demo",
                       fingerprint="fp", starts_at=datetime.now(timezone.utc))
    load = Load()
    workers = [asyncio.create_task(_client_loop(relay.port, i, load)) for i in range(CLIENTS)]
    try:
        await asyncio.sleep(PHASE_SECONDS)
        assert established_connections_to(upstreams.primary.port) == CLIENTS
        switched_at = time.monotonic()
        fired = await dispatcher.dispatch(alert)
        switched_settled_at = await _settled(upstreams.fallback.port, upstreams.primary.port)
        await asyncio.sleep(PHASE_SECONDS)
        on_fallback = (
            established_connections_to(upstreams.primary.port),
            established_connections_to(upstreams.fallback.port),
        )
        back_at = time.monotonic()
        resolved = await dispatcher.dispatch(
            AlertEvent(name="InputDrift", severity="critical", status="resolved", model="demo",
                       fingerprint="fp", starts_at=alert.starts_at)
        )
        back_settled_at = await _settled(upstreams.primary.port, upstreams.fallback.port)
        await asyncio.sleep(PHASE_SECONDS)
        on_primary = (
            established_connections_to(upstreams.primary.port),
            established_connections_to(upstreams.fallback.port),
        )
        ended_at = time.monotonic()
    finally:
        load.stop.set()
        await asyncio.gather(*workers)

    assert load.failures == []
    assert [a.outcome for a in fired + resolved] == ["success", "success"]
    total = sum(len(answers) for answers in load.answers)
    assert total > 50 * CLIENTS  # the load really was continuous
    # Before the switch every client was served by the primary ...
    assert _versions_between(load, 0, switched_at) == [{"1"}] * CLIENTS
    # ... after the drain settled, by the fallback only, and again by the primary after resolve.
    assert _versions_between(load, switched_settled_at, back_at) == [{"2"}] * CLIENTS
    assert _versions_between(load, back_settled_at, ended_at) == [{"1"}] * CLIENTS
    # ... and the drains settled promptly (bounded by the relay's drain, not by this test).
    assert switched_settled_at - switched_at < SETTLE_LIMIT_SECONDS
    assert back_settled_at - back_at < SETTLE_LIMIT_SECONDS
    # The drained connections closed: only the new upstream holds relay connections.
    assert on_fallback == (0, CLIENTS)
    assert on_primary == (CLIENTS, 0)
