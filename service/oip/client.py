"""An async Open Inference Protocol client speaking numpy, for probes, the demo and tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc
import numpy as np

from service.oip import codec
from service.oip import grpc_inference_service_pb2_grpc as pb_grpc
from service.oip import open_inference_pb2 as pb

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class InferResult:
    """A decoded ModelInfer response."""

    model_name: str
    model_version: str
    request_id: str
    outputs: dict[str, np.ndarray]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC channel/server options that lift the default 4 MiB message cap."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


class InferenceClient:
    """A grpc.aio client for one OIP server; `metadata` goes with every call.

    Probes pass `metadata=(("x-outrider-probe", "1"),)` so outrider keeps their traffic out
    of drift statistics.
    """

    def __init__(
        self,
        target: str,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.target = target
        self.metadata = tuple(metadata)
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(
            target, options=channel_options(max_message_bytes)
        )
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    async def __aenter__(self) -> InferenceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def server_live(self) -> bool:
        response = await self._stub.ServerLive(
            pb.ServerLiveRequest(), metadata=self.metadata, timeout=self.timeout
        )
        return bool(response.live)

    async def server_ready(self) -> bool:
        response = await self._stub.ServerReady(
            pb.ServerReadyRequest(), metadata=self.metadata, timeout=self.timeout
        )
        return bool(response.ready)

    async def model_metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        response: pb.ModelMetadataResponse = await self._stub.ModelMetadata(
            pb.ModelMetadataRequest(name=model, version=version),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        return response

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str = "",
        outputs: Sequence[str] = (),
        request_id: str = "",
        timeout: float | None = None,
    ) -> InferResult:
        """Runs one ModelInfer call; raises grpc.aio.AioRpcError or codec.TensorError."""
        request = codec.encode_request(
            model, inputs, model_version=version, request_id=request_id, outputs=outputs
        )
        response: pb.ModelInferResponse = await self._stub.ModelInfer(
            request, metadata=self.metadata, timeout=timeout or self.timeout
        )
        return InferResult(
            model_name=response.model_name,
            model_version=response.model_version,
            request_id=response.id,
            outputs=codec.decode_response_outputs(response),
        )
