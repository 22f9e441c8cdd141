"""The relay against a grpc.aio echo upstream: forwarding, failures, limits, fallback."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import grpc
import pytest

from service.dataplane.observation import ListSink
from service.dataplane.relay import Relay
from service.dataplane.settings import UpstreamSettings
from tests.dataplane.conftest import EchoUpstream, RelayFactory, open_channel, stream, unary
from tests.dataplane.frames import PREFACE, frame, settings


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def sample(relay: Relay, name: str, **labels: str) -> float:
    value = relay.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_unary_and_stream_pass_through_and_are_observed(
    echo_upstream: EchoUpstream, make_relay: RelayFactory
) -> None:
    sink = ListSink()
    relay = await make_relay(echo_upstream.port, sink=sink)
    async with open_channel(relay.port) as channel:
        assert (
            await unary(channel)(b"\x0a\x04demo\x12\x011payload") == b"\x0a\x04demo\x12\x011payload"
        )
        call = stream(channel)()
        for i in range(3):
            await call.write(b"\x0a\x01m" + bytes([i]))
            assert await call.read() == b"\x0a\x01m" + bytes([i])
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        del call  # a live call object keeps grpc's connection open
    await asyncio.sleep(0.05)
    unary_obs = [o for o in sink.observations if o.method.endswith("/ModelInfer")]
    assert len(unary_obs) == 1
    obs = unary_obs[0]
    assert (obs.grpc_status, obs.model_name, obs.model_version) == (0, "demo", "1")
    assert obs.request_messages == (b"\x0a\x04demo\x12\x011payload",)
    assert obs.response_messages == obs.request_messages
    assert (obs.request_bytes, obs.response_bytes) == (5 + 16, 5 + 16)
    assert obs.authority == f"127.0.0.1:{relay.port}"
    in_stream = [
        o for o in sink.observations if o.method.endswith("Stream") or "Stream" in o.method
    ]
    assert [o.grpc_status for o in in_stream] == [None, None, None]  # closing one had no messages
    assert [o.request_messages for o in in_stream] == [
        (b"\x0a\x01m" + bytes([i]),) for i in range(3)
    ]
    assert (
        sample(
            relay,
            "outrider_requests_total",
            model="demo",
            version="1",
            method="/inference.GRPCInferenceService/ModelInfer",
            code="OK",
        )
        == 1.0
    )
    assert (
        sample(
            relay,
            "outrider_requests_total",
            model="m",
            version="",
            method="/inference.GRPCInferenceService/ModelStreamInfer",
            code="OK",
        )
        == 1.0
    )
    assert sample(relay, "outrider_tap_samples_total", outcome="sampled") == 4.0
    await eventually(lambda: sample(relay, "outrider_connections_active") == 0.0)


async def test_error_status_and_message_pass_through(
    echo_upstream: EchoUpstream, make_relay: RelayFactory
) -> None:
    sink = ListSink()
    relay = await make_relay(echo_upstream.port, sink=sink)
    async with open_channel(relay.port) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(channel, "Fail")(b"x")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no model named 'x' (100% sure)"
    assert (
        sample(
            relay,
            "outrider_requests_total",
            model="",
            version="",
            method="/inference.GRPCInferenceService/Fail",
            code="NOT_FOUND",
        )
        == 1.0
    )


async def test_many_concurrent_clients(
    echo_upstream: EchoUpstream, make_relay: RelayFactory
) -> None:
    relay = await make_relay(echo_upstream.port, sampling_rate=0.5)

    async def client(i: int) -> list[bytes]:
        async with open_channel(relay.port) as channel:
            call = unary(channel)
            return list(await asyncio.gather(*(call(f"{i}-{j}".encode()) for j in range(10))))

    results = await asyncio.gather(*(client(i) for i in range(30)))
    assert results == [[f"{i}-{j}".encode() for j in range(10)] for i in range(30)]
    total = sum(
        sample(relay, "outrider_tap_samples_total", outcome=o) for o in ("sampled", "skipped")
    )
    assert total == 300.0
    assert echo_upstream.calls == 300


async def test_client_cancel_mid_call_reaches_upstream(
    echo_upstream: EchoUpstream, make_relay: RelayFactory
) -> None:
    relay = await make_relay(echo_upstream.port)
    async with open_channel(relay.port) as channel:
        call = unary(channel, "Slow")(b"5")
        await asyncio.wait_for(echo_upstream.slow_started.wait(), 5)
        call.cancel()
        await asyncio.wait_for(echo_upstream.slow_cancelled.wait(), 5)
        assert await call.code() == grpc.StatusCode.CANCELLED
        assert await unary(channel)(b"after") == b"after"  # the connection goes on
    assert (
        sample(
            relay,
            "outrider_requests_total",
            model="",
            version="",
            method="/inference.GRPCInferenceService/Slow",
            code="RESET",
        )
        == 1.0
    )


async def test_deadline_exceeded_passes_through(
    echo_upstream: EchoUpstream, make_relay: RelayFactory
) -> None:
    relay = await make_relay(echo_upstream.port)
    async with open_channel(relay.port) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(channel, "Slow")(b"5", timeout=0.2)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.wait_for(echo_upstream.slow_cancelled.wait(), 5)
        assert await unary(channel)(b"after") == b"after"


async def test_upstream_unreachable_closes_client_promptly(make_relay: RelayFactory) -> None:
    gone = await EchoUpstream().start()
    port = gone.port
    await gone.stop()
    relay = await make_relay(port)
    async with open_channel(relay.port) as channel:
        t0 = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(channel)(b"x", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - t0 < 2.0
    assert sample(relay, "outrider_upstream_errors_total", reason="connect_refused") >= 1.0


async def test_upstream_killed_mid_stream_then_back(make_relay: RelayFactory) -> None:
    upstream = await EchoUpstream().start()
    port = upstream.port
    relay = await make_relay(port)
    async with open_channel(relay.port) as channel:
        call = stream(channel)()
        await call.write(b"one")
        assert await call.read() == b"one"
        await upstream.stop(None)
        assert await asyncio.wait_for(call.code(), 5) == grpc.StatusCode.UNAVAILABLE
        back = await EchoUpstream().start(port)
        try:
            reply = await unary(channel)(b"again", timeout=10, wait_for_ready=True)
            assert reply == b"again"
        finally:
            await back.stop()
    assert relay.ready


async def test_connection_limit(echo_upstream: EchoUpstream, make_relay: RelayFactory) -> None:
    relay = await make_relay(echo_upstream.port, max_connections=1)
    async with open_channel(relay.port) as first:
        assert await unary(first)(b"a") == b"a"
        async with open_channel(relay.port) as second:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await unary(second)(b"b", timeout=2)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert sample(relay, "outrider_connections_rejected_total", reason="max_connections") >= 1.0


async def test_idle_connection_closed(make_relay: RelayFactory) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relay = await make_relay(port, idle_timeout_seconds=0.1, tap_enabled=False)
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the relay
    writer.close()
    server.close()
    await eventually(lambda: relay.active_connections == 0)


async def test_half_close_and_backpressure_over_raw_tcp(make_relay: RelayFactory) -> None:
    """A TCP echo that answers after the client half-closes; 8 MB through a 16 KB window."""

    async def echo_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's FIN arrives through the relay
        writer.write(data[::-1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo_after_eof, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relay = await make_relay(port, write_buffer_high_water_bytes=16384)
    payload = bytes(range(256)) * (8 * 4096)
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 20) == payload[::-1]
    writer.close()
    server.close()
    # not HTTP/2: the tap switched itself off, the bytes went through anyway
    assert sample(relay, "outrider_tap_disabled_connections_total", reason="not_http2") == 1.0


async def test_fallback_switch_drains_without_failing_calls(make_relay: RelayFactory) -> None:
    primary = await EchoUpstream(b"P").start()
    fallback = await EchoUpstream(b"F").start()
    relay = await make_relay(
        primary.port,
        fallback_upstream=UpstreamSettings(port=fallback.port),
        drain_delay_seconds=0.05,
    )
    seen: list[bytes] = []
    try:
        async with open_channel(relay.port) as channel:
            call = unary(channel)

            async def traffic() -> None:
                for _ in range(150):
                    seen.append((await call(b"x", timeout=5))[:1])
                    await asyncio.sleep(0.002)

            task = asyncio.create_task(traffic())
            await asyncio.sleep(0.1)
            await relay.use_fallback()
            await task  # no call failed
            assert seen[0] == b"P" and seen[-1] == b"F"
            await relay.use_primary()
            for _ in range(50):
                last = await call(b"x", timeout=5)
                await asyncio.sleep(0.01)
            assert last[:1] == b"P"
    finally:
        await primary.stop()
        await fallback.stop()


async def test_stop_lets_inflight_call_finish(
    echo_upstream: EchoUpstream, make_relay: RelayFactory
) -> None:
    relay = await make_relay(echo_upstream.port)
    async with open_channel(relay.port) as channel:
        call = unary(channel, "Slow")(b"0.3")
        await asyncio.wait_for(echo_upstream.slow_started.wait(), 5)
        t0 = time.monotonic()
        await relay.stop(5.0)
        assert await call == b"done"
        assert time.monotonic() - t0 < 2.0
    assert not relay.ready


@pytest.mark.parametrize("trigger", ["fallback", "stop"])
async def test_blind_drain_lets_a_slow_inflight_call_finish(
    make_relay: RelayFactory, trigger: str
) -> None:
    """Without a tap a slow call looks like silence; the drain must not cut it short."""
    primary = await EchoUpstream().start()
    fallback = await EchoUpstream().start()
    relay = await make_relay(
        primary.port,
        tap_enabled=False,
        fallback_upstream=UpstreamSettings(port=fallback.port),
        shutdown_grace_seconds=5.0,
    )
    try:
        async with open_channel(relay.port) as channel:
            call = unary(channel, "Slow")(b"0.5", timeout=10)
            await asyncio.wait_for(primary.slow_started.wait(), 5)
            if trigger == "fallback":
                await relay.use_fallback()
                stopping = None
            else:
                stopping = asyncio.create_task(relay.stop(5.0))
            assert await call == b"done"
            del call  # a live call object keeps grpc's connection open
        if stopping is not None:
            await asyncio.wait_for(stopping, 10)  # the client's close ends the drain
    finally:
        await primary.stop()
        await fallback.stop()
    assert relay.drain_deadline_closes == 0


async def test_idle_timer_leaves_a_draining_connection_to_the_drain(
    make_relay: RelayFactory,
) -> None:
    """Drain checks read the activity flag too; the idle timer must not take that as idle."""
    primary = await EchoUpstream().start()
    fallback = await EchoUpstream().start()
    relay = await make_relay(
        primary.port,
        tap_enabled=False,
        fallback_upstream=UpstreamSettings(port=fallback.port),
        shutdown_grace_seconds=5.0,
        idle_timeout_seconds=1.0,
    )
    try:
        async with open_channel(relay.port) as channel:
            # longer than one idle period, shorter than two: the idle rule alone keeps it
            call = unary(channel, "Slow")(b"1.5", timeout=10)
            await asyncio.wait_for(primary.slow_started.wait(), 5)
            await relay.use_fallback()
            assert await call == b"done"
            del call
    finally:
        await primary.stop()
        await fallback.stop()


@pytest.mark.parametrize("trigger", ["fallback", "stop"])
async def test_drain_closes_a_stream_held_open_at_the_deadline(
    echo_upstream: EchoUpstream, make_relay: RelayFactory, trigger: str
) -> None:
    """A client holding ModelStreamInfer open cannot keep a drain going past the grace."""
    relay = await make_relay(
        echo_upstream.port,
        fallback_upstream=UpstreamSettings(port=echo_upstream.port),
        shutdown_grace_seconds=0.5,
        drain_delay_seconds=0.05,
    )
    async with open_channel(relay.port) as channel:
        call = stream(channel)()
        await call.write(b"one")
        assert await call.read() == b"one"
        t0 = time.monotonic()
        if trigger == "fallback":
            await relay.use_fallback()
        else:
            await relay.stop(0.5)
        assert await asyncio.wait_for(call.code(), 10) == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - t0 >= 0.5  # not before the deadline
        del call
    await eventually(lambda: relay.active_connections == 0)
    assert relay.drain_deadline_closes == 1
    assert relay.registry.get_sample_value("outrider_drain_deadline_closes_total") == 1.0


async def test_drain_after_the_upstream_half_closed(make_relay: RelayFactory) -> None:
    """The upstream's EOF already reached the client: no GOAWAY after it, close at once."""

    async def settings_then_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(settings())
        writer.write_eof()
        await reader.read()  # keeps reading until the relay closes
        writer.close()

    server = await asyncio.start_server(settings_then_eof, "127.0.0.1", 0)
    relay = await make_relay(server.sockets[0].getsockname()[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(PREFACE + settings())
    assert await asyncio.wait_for(reader.read(), 5) == settings()  # then the upstream's EOF
    t0 = time.monotonic()
    await relay.stop(5.0)
    assert time.monotonic() - t0 < 2.0
    assert relay.active_connections == 0
    assert relay.drain_deadline_closes == 0
    writer.close()
    server.close()


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("random", bytes(random.Random(3).getrandbits(8) for _ in range(200_000)), "not_http2"),
        (
            "bogus_hpack",
            PREFACE + frame(1, 0x5, 1, b"\xff\xff\xff\xff\xff") + b"\x00" * 5000,
            "hpack",
        ),
        ("truncated", PREFACE + frame(0, 0, 1, b"x" * 100)[:50], None),
        ("huge_settings", PREFACE + frame(4, 0, 0, b"\x00" * 60_000), "oversized_control"),
    ],
)
async def test_garbage_is_relayed_byte_for_byte(
    make_relay: RelayFactory, name: str, payload: bytes, reason: str | None
) -> None:
    """Whatever the tap makes of the bytes, the relay forwards them untouched."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    relay = await make_relay(server.sockets[0].getsockname()[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(payload)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 10) == payload
    writer.close()
    server.close()
    disabled = {
        r: sample(relay, "outrider_tap_disabled_connections_total", reason=r)
        for r in ("not_http2", "hpack", "protocol", "oversized_control")
    }
    assert sum(disabled.values()) == (0.0 if reason is None else 1.0)
    if reason is not None:
        assert disabled[reason] == 1.0
