"""Starts the bundled OIP gRPC model server (the demo's and the tests' upstream)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from service.modelserver.onnx_model import OnnxModel
from service.modelserver.repository import ModelRepository
from service.modelserver.servicer import InferenceServicer
from service.oip import grpc_inference_service_pb2_grpc as pb_grpc
from service.oip.client import DEFAULT_MAX_MESSAGE_BYTES, channel_options
from service.version import __version__

log = structlog.get_logger(__name__)


@dataclass
class ModelServer:
    """A running model server; `port` is the bound port (useful with port=0)."""

    server: grpc.aio.Server
    port: int
    repository: ModelRepository

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.server.stop(grace)

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def start_model_server(
    model_path: Path | str,
    *,
    name: str = "demo",
    version: str = "1",
    host: str = "127.0.0.1",
    port: int = 0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    intra_op_threads: int = 1,
) -> ModelServer:
    """Loads the model and starts serving; raises OSError when the port cannot be bound."""
    model = OnnxModel(Path(model_path), intra_op_threads=intra_op_threads)
    repository = ModelRepository(model, name=name, version=version)
    # No SO_REUSEPORT: a second server on a taken port must fail, not share it silently.
    server = grpc.aio.server(
        options=[*channel_options(max_message_bytes), ("grpc.so_reuseport", 0)]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(repository, server_version=__version__), server
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio's way of saying the address is taken or invalid
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind the model server to {host}:{port} (address in use?)")
    await server.start()
    log.info("modelserver.started", model=name, version=version, address=f"{host}:{bound}")
    return ModelServer(server=server, port=bound, repository=repository)


async def serve_until_signalled(model_server: ModelServer, grace: float = 5.0) -> None:
    """Serves until SIGTERM or SIGINT, then lets in-flight calls finish within `grace`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("modelserver.stopping", grace_seconds=grace)
    await model_server.stop(grace)
