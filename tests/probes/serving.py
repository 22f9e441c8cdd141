"""An in-process model server for probe tests that also records the metadata each call carried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
from onnx import numpy_helper

from service.modelserver.onnx_model import OnnxModel
from service.modelserver.repository import ModelRepository
from service.modelserver.servicer import InferenceServicer
from service.oip import grpc_inference_service_pb2_grpc as pb_grpc


class MetadataRecorder(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Keeps (method, metadata dict) of every call the server receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        meta = {k: v for k, v in (handler_call_details.invocation_metadata or ())}
        self.calls.append((handler_call_details.method, meta))
        return await continuation(handler_call_details)


@dataclass
class RecordingServer:
    server: grpc.aio.Server
    port: int
    repository: ModelRepository
    recorder: MetadataRecorder = field(default_factory=MetadataRecorder)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def roll_out(self, model_path: Path, version: str) -> None:
        """Swaps the served model and version, as a rollout would."""
        self.repository.model = OnnxModel(model_path)
        self.repository.version = version


async def start_recording_server(model_path: Path, *, version: str = "1") -> RecordingServer:
    recorder = MetadataRecorder()
    repository = ModelRepository(OnnxModel(model_path), name="demo", version=version)
    server = grpc.aio.server(interceptors=[recorder])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(repository, server_version="test"), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return RecordingServer(server, port, repository, recorder)


def degraded_copy(model_path: Path, out: Path, *, noise: float, seed: int = 0) -> Path:
    """A copy of the demo model with noisy first-layer weights (a worse 'new version')."""
    model = onnx.load(str(model_path))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        if init.name == "W0":
            w = numpy_helper.to_array(init)
            noisy = (w + rng.normal(0.0, noise * w.std(), size=w.shape)).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(noisy, "W0"))
    onnx.save(model, str(out))
    return out
