"""Observations as the tap hands them to the monitor (real protobuf bytes), and references."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from service.dataplane.observation import RpcObservation
from service.monitor.reference import Reference, ReferenceStore
from service.oip import codec
from service.oip import open_inference_pb2 as pb

UNARY = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"

ObservationFactory = Callable[..., RpcObservation]


def observation(
    model: str = "demo",
    inputs: Mapping[str, np.ndarray] | None = None,
    outputs: Mapping[str, np.ndarray] | None = None,
    *,
    version: str = "1",
    request_version: str = "",
    request_id: str = "",
    probe: bool = False,
    sampled: bool = True,
    stream: bool = False,
    raw_request: bytes | None = None,
    raw_response: bytes | None = None,
) -> RpcObservation:
    """One sampled ModelInfer (or streamed) observation carrying real protobuf bytes."""
    request = codec.encode_request(
        model, inputs or {}, model_version=request_version, request_id=request_id
    )
    response = codec.encode_response(
        model, outputs or {}, model_version=version, request_id=request_id
    )
    response_bytes = response.SerializeToString()
    if stream:
        response_bytes = pb.ModelStreamInferResponse(infer_response=response).SerializeToString()
    req = raw_request if raw_request is not None else request.SerializeToString()
    resp = raw_response if raw_response is not None else response_bytes
    return RpcObservation(
        connection_id=1,
        stream_id=1,
        method=STREAM if stream else UNARY,
        authority="127.0.0.1",
        start_time=0.0,
        end_time=0.0,
        request_bytes=len(req),
        response_bytes=len(resp),
        grpc_status=0,
        grpc_message="",
        probe=probe,
        sampled=sampled,
        request_messages=(req,),
        response_messages=(resp,),
        model_name=model,
        model_version="",
    )


def store_reference(
    state_dir: Path, model: str, signal: str, data: np.ndarray, version: str = "1"
) -> Path:
    """Stores `data` as the reference of model/signal, as `outrider reference build` would."""
    ref = Reference(
        model=model,
        version=version,
        signal=signal,
        data=np.asarray(data, dtype=np.float64),
        created="2026-01-01T00:00:00+00:00",
        source_sha256="0" * 64,
    )
    return ReferenceStore(state_dir).save(ref)
