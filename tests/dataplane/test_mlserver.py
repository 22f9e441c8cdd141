"""tritonclient through the relay to MLServer (a real third-party OIP server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_sync
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from service.oip.codec import encode_request
from tests.dataplane.conftest import RelayFactory, stream

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """MLServer in a subprocess serving a seeded sklearn digits model; yields its gRPC port."""
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("mlserver")
    model_dir = root / "digits"
    model_dir.mkdir()
    x, y = load_digits(return_X_y=True)
    joblib.dump(
        LogisticRegression(max_iter=300, random_state=0).fit(x, y), model_dir / "model.joblib"
    )
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "digits",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }))  # fmt: skip
    grpc_port = free_port()
    (root / "settings.json").write_text(json.dumps({
        "parallel_workers": 0, "host": "127.0.0.1", "grpc_port": grpc_port,
        "http_port": free_port(), "metrics_port": free_port(), "debug": False,
        "metrics_dir": str(root / "metrics"),
    }))  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    mlserver_bin = Path(sys.executable).parent / "mlserver"
    proc = subprocess.Popen(
        [str(mlserver_bin), "start", str(root)], cwd=root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = triton_sync.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 45
        while True:
            try:
                if client.is_model_ready("digits"):
                    break
            except InferenceServerException:
                pass
            assert proc.poll() is None, "mlserver exited"
            assert time.monotonic() < deadline, "mlserver did not become ready"
            time.sleep(0.3)
        client.close()
        yield grpc_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def digits(seed: int) -> list[triton.InferInput]:
    rows = np.random.default_rng(seed).integers(0, 17, size=(3, 64)).astype(np.float64)
    tensor = triton.InferInput("x", [3, 64], "FP64")
    tensor.set_data_from_numpy(rows)
    return [tensor]


async def everything(url: str) -> dict[str, Any]:
    client = triton.InferenceServerClient(url)
    try:
        unary = []
        for seed in range(3):
            result = await client.infer("digits", digits(seed), request_id=f"r{seed}")
            unary.append(result.get_response().SerializeToString())
        unknown: tuple[str | None, str | None] = (None, None)
        try:
            await client.infer("nope", digits(0), request_id="bad")
        except InferenceServerException as err:
            unknown = (err.status(), err.message())

        return {
            "unary": unary,
            "unknown": unknown,
            "metadata": (await client.get_model_metadata("digits")).SerializeToString(),
            "server": (await client.get_server_metadata()).SerializeToString(),
            "stream": await raw_stream(url),
        }
    finally:
        await client.close()


async def raw_stream(url: str) -> list[bytes]:
    """ModelStreamInfer as raw bytes, one request per stream (MLServer answers a streamed
    request and may end the stream; it streams plain ModelInferResponse messages, which
    tritonclient, expecting Triton's wrapper, cannot parse)."""
    out: list[bytes] = []
    async with grpc.aio.insecure_channel(url) as channel:
        for seed in (5, 6):
            request = encode_request(
                "digits", {"x": np.full((2, 64), seed, np.float64)}, request_id=f"s{seed}"
            ).SerializeToString()
            call = stream(channel)()
            await call.write(request)
            await call.done_writing()
            while (message := await call.read()) != grpc.aio.EOF:
                out.append(message)
            out.append(str(await call.code()).encode())
            del call
    return out


async def test_mlserver_through_the_relay_is_byte_identical(
    mlserver: int, make_relay: RelayFactory
) -> None:
    relay = await make_relay(mlserver)
    direct = await everything(f"127.0.0.1:{mlserver}")
    relayed = await everything(f"127.0.0.1:{relay.port}")
    assert relayed == direct
    assert direct["unknown"][0] == "StatusCode.NOT_FOUND"
    assert len(direct["unary"]) == 3
    assert direct["stream"][-1] == b"StatusCode.OK" and len(direct["stream"]) == 4
    observed = relay.registry.get_sample_value(
        "outrider_requests_total",
        {"model": "digits", "version": "v1", "method": "/inference.GRPCInferenceService/ModelInfer",
         "code": "OK"},
    )  # fmt: skip
    assert observed == 3.0
