"""The pipeline on wire bytes from the bundled model server: capture, quiet traffic, then OOD.

The observations carry the exact bytes the server sent (a raw gRPC call with no
deserializer), the way the tap hands them over; only the relay itself is left out.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
from prometheus_client import CollectorRegistry

from service.dataplane.observation import RpcObservation
from service.modelserver.demo_model import load_demo_data
from service.modelserver.server import ModelServer
from service.monitor.pipeline import MonitorPipeline
from service.monitor.settings import PipelineSettings
from service.oip import codec

METHOD = "/inference.GRPCInferenceService/ModelInfer"


async def _wire_call(channel: grpc.aio.Channel, pixels: np.ndarray, i: int) -> RpcObservation:
    request = codec.encode_request("demo", {"pixels": pixels}, request_id=f"q{i}")
    raw = request.SerializeToString()
    call = channel.unary_unary(METHOD)  # no (de)serializers: bytes in, bytes out
    response: bytes = await call(raw)
    return RpcObservation(
        connection_id=1, stream_id=2 * i + 1, method=METHOD, authority="127.0.0.1",
        start_time=0.0, end_time=0.0, request_bytes=len(raw), response_bytes=len(response),
        grpc_status=0, grpc_message="", probe=False, sampled=True,
        request_messages=(raw,), response_messages=(response,), model_name="", model_version="",
    )


async def test_capture_quiet_then_ood_on_real_server_bytes(
    model_server: ModelServer, tmp_path: Path
) -> None:
    settings = PipelineSettings.model_validate({
        "models": {"demo": {"signals": [
            {"name": "embedding", "source": {"output": "embedding"},
             "reference": {"capture": 600},
             "detectors": [{"type": "ks", "window": 200, "params": {"alpha": 0.01}}]},
            {"name": "confidence", "source": {"output": "probabilities"},
             "reference": {"capture": 600},
             "detectors": [{"type": "cvm", "window": 200, "params": {"alpha": 0.01}}]},
        ]}},
        "monitor": {"max_samples_per_second": None},
    })
    registry = CollectorRegistry()
    pipeline = MonitorPipeline(settings, registry=registry, state_dir=tmp_path)
    data = load_demo_data("digits", seed=0)
    rng = np.random.default_rng(0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{model_server.port}") as channel:
        async def send(pixels: np.ndarray, start: int) -> None:
            for j in range(0, pixels.shape[0], 10):
                obs = await _wire_call(channel, pixels[j : j + 10], start + j)
                assert pipeline.offer(obs)
            pipeline.drain()

        await send(data.x_train[:600], 0)  # the capture
        assert pipeline.capture_progress() == {}
        await send(data.x_test[:200], 1000)  # in distribution: one full window each
        quiet = {k.signal: r.verdict for k, r in pipeline.readings().items()}
        assert quiet == {"embedding": False, "confidence": False}
        noise = rng.uniform(0, 16, size=(200, 64)).astype(np.float32)
        await send(noise, 2000)
    loud = {k.signal: r for k, r in pipeline.readings().items()}
    assert loud["embedding"].verdict and loud["confidence"].verdict
    assert loud["embedding"].version == "1"
    labels = {"model": "demo", "version": "1", "signal": "embedding", "detector": "ks"}
    assert registry.get_sample_value("outrider_drift_detected", labels) == 1.0
    assert registry.get_sample_value(
        "outrider_reference_samples", {"model": "demo", "version": "1", "signal": "embedding"}
    ) == 600.0
    assert (tmp_path / "references" / "demo" / "embedding.npz").exists()
