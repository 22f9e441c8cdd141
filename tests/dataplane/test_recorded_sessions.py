"""The tap on a session recorded from real peers (tritonclient <-> bundled model server).

Whatever the chunking of the byte streams, the observations are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as triton
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

import service.dataplane.relay as relay_module
from service.dataplane.relay import Relay
from service.dataplane.settings import DataplaneSettings, UpstreamSettings
from service.dataplane.tap import ConnectionTap
from service.modelserver.server import start_model_server
from tests.dataplane.test_tap import new_tap, timeless

Session = list[tuple[bool, bytes]]


class RecordingTap(ConnectionTap):
    """A tap that also keeps what it was fed, in order."""

    sessions: dict[int, Session] = {}

    def feed_client(self, data: bytes) -> None:
        self.sessions.setdefault(self.connection_id, []).append((True, bytes(data)))
        super().feed_client(data)

    def feed_server(self, data: bytes) -> None:
        self.sessions.setdefault(self.connection_id, []).append((False, bytes(data)))
        super().feed_server(data)


def pixels_input(rows: int, seed: int) -> list[triton.InferInput]:
    data = np.random.default_rng(seed).uniform(0, 16, size=(rows, 64)).astype(np.float32)
    tensor = triton.InferInput("pixels", [rows, 64], "FP32")
    tensor.set_data_from_numpy(data)
    return [tensor]


async def _traffic(url: str) -> None:
    client = triton.InferenceServerClient(url)
    try:
        await client.infer("demo", pixels_input(4, 0))
        await client.infer("demo", pixels_input(4, 1), compression_algorithm="gzip")
        await client.infer("demo", pixels_input(1024, 2))  # 256 KB: many DATA frames
        await client.infer("demo", pixels_input(2, 3), headers={"x-outrider-probe": "1"})
        with pytest.raises(InferenceServerException):
            await client.infer("nope", pixels_input(1, 4))
        await client.get_model_metadata("demo")

        async def requests() -> AsyncIterator[dict[str, Any]]:
            for seed in (5, 6, 7):
                yield {"model_name": "demo", "inputs": pixels_input(3, seed)}

        # read to the end: the stream then closes with the server's OK, not a cancel
        answers = [error async for _result, error in client.stream_infer(requests())]
        assert answers == [None, None, None]
    finally:
        await client.close()


async def _record(model_path: Path) -> Session:
    server = await start_model_server(model_path, port=0)
    RecordingTap.sessions = {}
    original = relay_module.ConnectionTap
    relay_module.ConnectionTap = RecordingTap  # type: ignore[misc]
    try:
        relay = Relay(
            DataplaneSettings(listen_port=0, upstream=UpstreamSettings(port=server.port),
                              sampling_rate=1.0, max_samples_per_second=1e6)
        )  # fmt: skip
        await relay.start()
        await _traffic(f"127.0.0.1:{relay.port}")
        await relay.stop(1.0)
    finally:
        relay_module.ConnectionTap = original  # type: ignore[misc]
        await server.stop(None)
    assert len(RecordingTap.sessions) == 1
    return next(iter(RecordingTap.sessions.values()))


@pytest.fixture(scope="module")
def recorded(demo_model_path: Path) -> Session:
    return asyncio.run(_record(demo_model_path))


def observe(session: Session) -> list[tuple[tuple[object, ...], bool]]:
    tap, events = new_tap()
    for from_client, chunk in session:
        (tap.feed_client if from_client else tap.feed_server)(chunk)
    tap.close()
    assert events.failures == []
    return [(timeless(o), end) for o, end in events.observations]


def test_recorded_session_observations(recorded: Session) -> None:
    got = observe(recorded)
    summary = [(o[2].rpartition("/")[2], o[6], o[8], o[12], o[13], end) for o, end in got]
    assert summary == [
        ("ModelInfer", 0, False, "demo", "1", True),
        ("ModelInfer", 0, False, "demo", "1", True),
        ("ModelInfer", 0, False, "demo", "1", True),
        ("ModelInfer", 0, True, "demo", "1", True),
        ("ModelInfer", 5, False, "nope", "", True),
        ("ModelMetadata", 0, False, "", "", True),
        ("ModelStreamInfer", None, False, "demo", "1", False),
        ("ModelStreamInfer", None, False, "demo", "1", False),
        ("ModelStreamInfer", None, False, "demo", "1", False),
        ("ModelStreamInfer", 0, False, "demo", "1", True),
    ]
    big = got[2][0]
    assert big[4] == len(big[10][0]) + 5 and big[4] > 262144  # request bytes of the 256 KB call


@st.composite
def rechunked(draw: st.DrawFn, session: Session) -> Session:
    """The session cut at random points, with neighbouring same-direction chunks merged."""
    merged: Session = []
    for from_client, chunk in session:
        if merged and merged[-1][0] == from_client and draw(st.booleans()):
            merged[-1] = (from_client, merged[-1][1] + chunk)
        else:
            merged.append((from_client, chunk))
    out: Session = []
    for from_client, chunk in merged:
        cuts = sorted(draw(st.lists(st.integers(0, len(chunk)), max_size=4)))
        start = 0
        for cut in [*cuts, len(chunk)]:
            out.append((from_client, chunk[start:cut]))
            start = cut
    return out


def test_every_chunking_of_the_recorded_session_observes_the_same(recorded: Session) -> None:
    expected = observe(recorded)

    @settings(max_examples=100, deadline=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        assert observe(data.draw(rechunked(recorded))) == expected

    check()
