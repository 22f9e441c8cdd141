"""Our stubs and codec against MLServer, a third-party OIP server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_digits

from service.oip import codec
from service.oip import grpc_inference_service_pb2_grpc as pb_grpc
from service.oip import open_inference_pb2 as pb
from service.oip.client import InferenceClient
from tests.support.peers import MLServerPeer

pytestmark = pytest.mark.e2e


async def test_our_client_calls_mlserver_and_decodes_its_raw_outputs(
    mlserver_peer: MLServerPeer,
) -> None:
    digits = load_digits()
    x = digits.data[:8].astype(np.float64)
    async with InferenceClient(f"127.0.0.1:{mlserver_peer.grpc_port}") as client:
        assert await client.server_ready()
        result = await client.infer("digits", {"predict": x})
    assert result.model_name == "digits"
    assert result.model_version == "v1"
    (predictions,) = result.outputs.values()
    np.testing.assert_array_equal(predictions.reshape(-1), digits.target[:8])


async def test_mlserver_answers_with_raw_output_contents(mlserver_peer: MLServerPeer) -> None:
    request = codec.encode_request("digits", {"predict": load_digits().data[:3]})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mlserver_peer.grpc_port}") as channel:
        response: pb.ModelInferResponse = await pb_grpc.GRPCInferenceServiceStub(
            channel
        ).ModelInfer(request)
        metadata = await pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
            pb.ModelMetadataRequest(name="digits")
        )
    assert len(response.raw_output_contents) == len(response.outputs) == 1
    assert response.model_version == "v1"
    assert metadata.name == "digits"


async def test_mlserver_not_found_code(mlserver_peer: MLServerPeer) -> None:
    async with InferenceClient(f"127.0.0.1:{mlserver_peer.grpc_port}") as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.infer("nope", {"predict": np.zeros((1, 64))})
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
