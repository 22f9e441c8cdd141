"""An unreachable upstream fails every connection; the log says so once per interval."""

from __future__ import annotations

import logging

import grpc
import pytest

from service.log_throttle import LogThrottle
from tests.dataplane.conftest import EchoUpstream, RelayFactory, open_channel, unary


def test_log_throttle_lets_one_line_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    throttle = LogThrottle(10.0, clock=lambda: now[0])
    assert throttle.due("primary/connect_refused") == 0
    assert throttle.due("primary/connect_refused") is None
    assert throttle.due("fallback/connect_refused") == 0  # keys are independent
    now[0] = 9.9
    assert throttle.due("primary/connect_refused") is None
    now[0] = 10.0
    assert throttle.due("primary/connect_refused") == 2


async def test_many_refused_connections_log_one_line(
    make_relay: RelayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gone = await EchoUpstream().start()
    port = gone.port
    await gone.stop()
    relay = await make_relay(port)
    caplog.set_level(logging.WARNING, logger="service.dataplane.relay")
    for _ in range(5):
        async with open_channel(relay.port) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await unary(channel)(b"x", timeout=5)
    lines = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(lines) == 1
    refused = relay.registry.get_sample_value(
        "outrider_upstream_errors_total", {"reason": "connect_refused"}
    )
    assert refused is not None and refused >= 5  # every failure is still counted
