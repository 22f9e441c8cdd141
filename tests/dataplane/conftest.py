"""Peers for the relay tests: a grpc.aio echo upstream and a relay in front of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from service.dataplane.observation import ListSink
from service.dataplane.relay import Relay
from service.dataplane.settings import DataplaneSettings, UpstreamSettings

SERVICE = "inference.GRPCInferenceService"


def identity(b: bytes) -> bytes:
    return b


class EchoUpstream:
    """A grpc.aio server: unary echo, streaming echo, a slow call, a failing call."""

    def __init__(self, tag: bytes = b"") -> None:
        self.tag = tag
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.calls = 0
        self.slow_started = asyncio.Event()
        self.slow_cancelled = asyncio.Event()

    async def start(self, port: int = 0) -> EchoUpstream:
        async def infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.calls += 1
            return self.tag + request

        async def stream(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            async for request in requests:
                yield self.tag + request

        async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.slow_started.set()
            try:
                await asyncio.sleep(float(request.decode() or "5"))
            except asyncio.CancelledError:
                self.slow_cancelled.set()
                raise
            return b"done"

        async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no model named 'x' (100% sure)")
            raise AssertionError("unreachable")

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ModelInfer": grpc.unary_unary_rpc_method_handler(infer, identity, identity),
                "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
                    stream, identity, identity
                ),
                "Slow": grpc.unary_unary_rpc_method_handler(slow, identity, identity),
                "Fail": grpc.unary_unary_rpc_method_handler(fail, identity, identity),
            },
        )
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        await self.server.start()
        return self

    async def stop(self, grace: float | None = None) -> None:
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None


@pytest.fixture
async def echo_upstream() -> AsyncIterator[EchoUpstream]:
    upstream = await EchoUpstream().start()
    yield upstream
    await upstream.stop()


RelayFactory = Callable[..., Any]


@pytest.fixture
async def make_relay() -> AsyncIterator[RelayFactory]:
    """Builds started relays (settings overrides as keywords); stops them afterwards."""
    relays: list[Relay] = []

    async def build(upstream_port: int, *, sink: Any = None, **overrides: Any) -> Relay:
        values: dict[str, Any] = {
            "listen_port": 0,
            "upstream": UpstreamSettings(port=upstream_port),
            "sampling_rate": 1.0,
            "max_samples_per_second": 1e6,
            "sampling_seed": 0,
        }
        settings = DataplaneSettings(**{**values, **overrides})
        relay = Relay(settings, registry=CollectorRegistry(), sink=sink or ListSink())
        await relay.start()
        relays.append(relay)
        return relay

    yield build
    for relay in relays:
        await relay.stop(0.5)


def open_channel(port: int) -> grpc.aio.Channel:
    """A channel with its own connection (grpc shares subchannels across channels by default)."""
    return grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


def unary(channel: grpc.aio.Channel, method: str = "ModelInfer") -> Any:
    return channel.unary_unary(f"/{SERVICE}/{method}", identity, identity)


def stream(channel: grpc.aio.Channel) -> Any:
    return channel.stream_stream(f"/{SERVICE}/ModelStreamInfer", identity, identity)
