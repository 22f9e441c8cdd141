"""tritonclient through the relay to the bundled model server: byte-identical to direct."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from service.dataplane.observation import ListSink
from service.modelserver.server import ModelServer
from tests.dataplane.conftest import RelayFactory


def pixels(seed: int, rows: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 16, size=(rows, 64)).astype(np.float32)


def inputs(seed: int) -> list[triton.InferInput]:
    tensor = triton.InferInput("pixels", [4, 64], "FP32")
    tensor.set_data_from_numpy(pixels(seed))
    return [tensor]


async def unary(client: triton.InferenceServerClient, seed: int, compress: bool) -> bytes:
    result = await client.infer(
        "demo", inputs(seed), request_id=f"r{seed}",
        compression_algorithm="gzip" if compress else None,
    )  # fmt: skip
    return bytes(result.get_response().SerializeToString())


async def streamed(client: triton.InferenceServerClient, seeds: list[int]) -> list[bytes]:
    async def requests() -> AsyncIterator[dict[str, Any]]:
        for seed in seeds:
            yield {"model_name": "demo", "inputs": inputs(seed), "request_id": f"s{seed}"}
        yield {"model_name": "nope", "inputs": inputs(0), "request_id": "bad"}

    out: list[bytes] = []
    async for result, error in client.stream_infer(requests()):
        out.append(str(error).encode() if error else result.get_response().SerializeToString())
        if len(out) == len(seeds) + 1:
            break
    return out


async def everything(url: str) -> dict[str, Any]:
    client = triton.InferenceServerClient(url)
    try:
        unknown: tuple[str | None, str | None] = (None, None)
        try:
            await client.infer("nope", inputs(0))
        except InferenceServerException as err:
            unknown = (err.status(), err.message())
        return {
            "unary": [await unary(client, seed, compress=seed % 2 == 1) for seed in range(4)],
            "stream": await streamed(client, [10, 11, 12]),
            "model_metadata": (await client.get_model_metadata("demo")).SerializeToString(),
            "server_metadata": (await client.get_server_metadata()).SerializeToString(),
            "live": await client.is_server_live(),
            "unknown_model": unknown,
        }
    finally:
        await client.close()


async def test_triton_client_sees_identical_bytes_through_the_relay(
    model_server: ModelServer, make_relay: RelayFactory
) -> None:
    sink = ListSink()
    relay = await make_relay(model_server.port, sink=sink)
    direct = await everything(f"127.0.0.1:{model_server.port}")
    relayed = await everything(f"127.0.0.1:{relay.port}")
    assert relayed == direct
    assert direct["unknown_model"][0] == "StatusCode.NOT_FOUND"
    assert "nope" in direct["unknown_model"][1]
    assert len(direct["stream"]) == 4
    await asyncio.sleep(0.05)
    unary_obs = [o for o in sink.observations if o.method.endswith("/ModelInfer")]
    assert [(o.model_name, o.model_version, o.grpc_status) for o in unary_obs] == [
        ("nope", "", 5), ("demo", "1", 0), ("demo", "1", 0), ("demo", "1", 0), ("demo", "1", 0),
    ]  # fmt: skip
    # compressed requests (odd seeds) were inflated by the tap: their tensors decode exactly
    from service.oip import codec
    from service.oip import open_inference_pb2 as pb

    for seed, obs in zip(range(4), unary_obs[1:], strict=True):
        request = pb.ModelInferRequest.FromString(obs.request_messages[0])
        np.testing.assert_array_equal(codec.decode_request_inputs(request)["pixels"], pixels(seed))
        response = pb.ModelInferResponse.FromString(obs.response_messages[0])
        assert response.id == f"r{seed}"
    in_stream = [
        o for o in sink.observations if o.method.endswith("Stream") or o.grpc_status is None
    ]
    assert len(in_stream) == 4  # three answers plus the in-band error message


@pytest.mark.parametrize("tap_enabled", [True, False])
async def test_many_concurrent_triton_clients(
    model_server: ModelServer, make_relay: RelayFactory, tap_enabled: bool
) -> None:
    relay = await make_relay(model_server.port, tap_enabled=tap_enabled, sampling_rate=0.3)
    url = f"127.0.0.1:{relay.port}"

    async def one(seed: int) -> np.ndarray:
        client = triton.InferenceServerClient(
            url, channel_args=[("grpc.use_local_subchannel_pool", 1)]
        )
        try:
            result = await client.infer("demo", inputs(seed))
            out = result.as_numpy("probabilities")
            assert out is not None
            return out
        finally:
            await client.close()

    relayed = await asyncio.gather(*(one(seed) for seed in range(16)))
    direct_client = triton.InferenceServerClient(f"127.0.0.1:{model_server.port}")
    try:
        for seed, out in enumerate(relayed):
            expected = (await direct_client.infer("demo", inputs(seed))).as_numpy("probabilities")
            np.testing.assert_array_equal(out, expected)
    finally:
        await direct_client.close()
