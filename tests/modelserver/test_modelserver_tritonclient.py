"""The bundled model server, driven by tritonclient as a user's client would drive it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from service.modelserver.demo_model import load_demo_data
from service.modelserver.server import ModelServer, start_model_server
from service.oip import codec
from service.oip import grpc_inference_service_pb2_grpc as pb_grpc
from service.oip import open_inference_pb2 as pb


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return load_demo_data("digits", seed=0).x_test[:16]


def _direct(model_path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"pixels": pixels}), strict=True))


@pytest.fixture
async def client(model_server: ModelServer) -> AsyncIterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(f"127.0.0.1:{model_server.port}")
    yield c
    await c.close()


def _input(pixels: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    return tensor


async def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert await client.is_server_live()
    assert await client.is_server_ready()
    assert await client.is_model_ready("demo")
    assert await client.is_model_ready("demo", "1")
    assert not await client.is_model_ready("demo", "2")
    assert not await client.is_model_ready("other")
    metadata = await client.get_model_metadata("demo", as_json=True)
    assert metadata == {
        "name": "demo",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": ["-1", "64"]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": ["-1", "10"]},
            {"name": "logits", "datatype": "FP32", "shape": ["-1", "10"]},
            {"name": "embedding", "datatype": "FP32", "shape": ["-1", "32"]},
        ],
    }
    server = await client.get_server_metadata(as_json=True)
    assert server["name"] == "outrider-modelserver"
    assert server["extensions"] == ["model_repository", "streaming"]


async def test_infer_equals_onnxruntime_direct(
    client: triton.InferenceServerClient, demo_model_path: Path, pixels: np.ndarray
) -> None:
    result = await client.infer("demo", [_input(pixels)])
    direct = _direct(demo_model_path, pixels)
    for name in ("probabilities", "logits", "embedding"):
        np.testing.assert_array_equal(result.as_numpy(name), direct[name])
    response = result.get_response()
    assert (response.model_name, response.model_version) == ("demo", "1")


async def test_requested_outputs_are_filtered(
    client: triton.InferenceServerClient, pixels: np.ndarray
) -> None:
    result = await client.infer(
        "demo",
        [_input(pixels)],
        outputs=[triton.InferRequestedOutput("embedding")],
        request_id="req-7",
    )
    response = result.get_response()
    assert [o.name for o in response.outputs] == ["embedding"]
    assert response.id == "req-7"
    assert result.as_numpy("embedding").shape == (16, 32)


async def test_typed_contents_are_accepted(
    model_server: ModelServer, demo_model_path: Path, pixels: np.ndarray
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{model_server.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = codec.encode_request("demo", {"pixels": pixels}, raw=False)
        assert not request.raw_input_contents
        response = await stub.ModelInfer(request)
    outputs = codec.decode_response_outputs(response)
    np.testing.assert_array_equal(outputs["logits"], _direct(demo_model_path, pixels)["logits"])


async def test_stream_infer_equals_direct(
    client: triton.InferenceServerClient, demo_model_path: Path, pixels: np.ndarray
) -> None:
    async def requests() -> AsyncIterator[dict[str, Any]]:
        for i in range(4):
            yield {
                "model_name": "demo",
                "inputs": [_input(pixels[i * 4 : i * 4 + 4])],
                "request_id": str(i),
            }
        yield {"model_name": "nope", "inputs": [_input(pixels[:1])]}

    direct = _direct(demo_model_path, pixels)["probabilities"]
    got: list[tuple[str, np.ndarray]] = []
    errors: list[str] = []
    async for result, error in client.stream_infer(requests()):
        if error is not None:
            errors.append(str(error))
            break
        got.append((result.get_response().id, result.as_numpy("probabilities")))
    assert [request_id for request_id, _ in got] == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(np.concatenate([p for _, p in got]), direct)
    assert errors == ["model 'nope' not found; this server serves 'demo'"]


@pytest.mark.parametrize(
    ("model", "version", "code", "message"),
    [
        ("nope", "", "StatusCode.NOT_FOUND", "model 'nope' not found; this server serves 'demo'"),
        ("demo", "9", "StatusCode.NOT_FOUND", "model 'demo' has no version '9'; available: ['1']"),
    ],
)
async def test_unknown_model_or_version_is_not_found(
    client: triton.InferenceServerClient,
    pixels: np.ndarray,
    model: str,
    version: str,
    code: str,
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as info:
        await client.infer(model, [_input(pixels)], model_version=version)
    assert info.value.status() == code
    assert info.value.message() == message


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (
            ("pixels", [2, 63], "FP32", np.zeros((2, 63), np.float32)),
            "input 'pixels': dimension 1 must be 64, got 63 (shape [2, 63])",
        ),
        (
            ("pixels", [2, 64], "FP64", np.zeros((2, 64), np.float64)),
            "input 'pixels': expected datatype FP32, got float64",
        ),
        (
            ("wrong", [1, 64], "FP32", np.zeros((1, 64), np.float32)),
            "unexpected input 'wrong'; model inputs: ['pixels']",
        ),
    ],
)
async def test_bad_tensors_are_invalid_argument_with_a_clear_message(
    client: triton.InferenceServerClient,
    tensor: tuple[str, list[int], str, np.ndarray],
    message: str,
) -> None:
    name, shape, datatype, value = tensor
    bad = triton.InferInput(name, shape, datatype)
    bad.set_data_from_numpy(value)
    with pytest.raises(InferenceServerException) as info:
        await client.infer("demo", [bad])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert info.value.message() == message


async def test_malformed_raw_contents_are_invalid_argument(model_server: ModelServer) -> None:
    request = pb.ModelInferRequest(model_name="demo")
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(b"\0" * 10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{model_server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "tensor 'pixels': FP32 shape [1, 64] needs 256 bytes, got 10"


async def test_max_message_size_is_configurable(demo_model_path: Path) -> None:
    server = await start_model_server(demo_model_path, port=0, max_message_bytes=64 * 1024)
    try:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        big = np.zeros((512, 64), np.float32)  # 128 KiB of raw contents
        with pytest.raises(InferenceServerException) as info:
            await client.infer("demo", [_input(big)])
        assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        small = await client.infer("demo", [_input(big[:16])])
        assert small.as_numpy("logits").shape == (16, 10)
        await client.close()
    finally:
        await server.stop(grace=None)
