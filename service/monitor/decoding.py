"""Turns a tapped RPC observation into inference calls: model, version, tensors, request id.

Covers unary `ModelInfer` and streamed `ModelStreamInfer` (whose responses are wrapped in
`ModelStreamInferResponse`). Anything malformed becomes a `DecodeError` with a short,
stable `reason` for metrics; nothing here trusts the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError as ProtobufDecodeError

from service.dataplane.observation import RpcObservation
from service.monitor.model_versions import VersionResolver
from service.oip import codec
from service.oip import open_inference_pb2 as pb

UNARY_METHOD = "ModelInfer"
STREAM_METHOD = "ModelStreamInfer"


class DecodeError(ValueError):
    """An observation that cannot be decoded; `reason` is a metric label.

    Reasons: bad_protobuf, bad_tensor, stream_error, model_mismatch.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DecodedCall:
    """One inference call's tensors, as the monitor sees it."""

    model: str
    version: str
    request_id: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def inference_method(method: str) -> str | None:
    """`ModelInfer` or `ModelStreamInfer` for an OIP inference path, else None."""
    name = method.rsplit("/", 1)[-1]
    if name in (UNARY_METHOD, STREAM_METHOD) and "InferenceService" in method:
        return name
    return None


def _parse_request(data: bytes) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest()
    try:
        message.ParseFromString(data)
    except (ProtobufDecodeError, RuntimeError) as exc:
        raise DecodeError("bad_protobuf", f"ModelInferRequest: {exc}") from None
    return message


def _parse_response(data: bytes, streamed: bool) -> pb.ModelInferResponse:
    if streamed:
        wrapper = pb.ModelStreamInferResponse()
        try:
            wrapper.ParseFromString(data)
        except (ProtobufDecodeError, RuntimeError) as exc:
            raise DecodeError("bad_protobuf", f"ModelStreamInferResponse: {exc}") from None
        if wrapper.error_message:
            raise DecodeError("stream_error", f"stream response error: {wrapper.error_message}")
        return wrapper.infer_response
    message = pb.ModelInferResponse()
    try:
        message.ParseFromString(data)
    except (ProtobufDecodeError, RuntimeError) as exc:
        raise DecodeError("bad_protobuf", f"ModelInferResponse: {exc}") from None
    return message


# Which tensors a model's signals read: (request inputs, response outputs).
WantedSides = Callable[[str], tuple[bool, bool]]


def _all_sides(model: str) -> tuple[bool, bool]:
    return True, True


def _decode_pair(
    request: pb.ModelInferRequest | None,
    response: pb.ModelInferResponse | None,
    obs: RpcObservation,
    resolver: VersionResolver,
    wanted: WantedSides,
) -> DecodedCall:
    model = (
        (response.model_name if response is not None else "")
        or (request.model_name if request is not None else "")
        or obs.model_name
    )
    if not model:
        raise DecodeError("bad_protobuf", "neither request nor response names a model")
    if (
        request is not None
        and response is not None
        and request.model_name
        and response.model_name
        and request.model_name != response.model_name
    ):
        raise DecodeError(
            "model_mismatch",
            f"request for {request.model_name!r} answered by {response.model_name!r}",
        )
    version = (
        (response.model_version if response is not None else "")
        or (request.model_version if request is not None else "")
        or obs.model_version
    )
    want_inputs, want_outputs = wanted(model)
    try:
        inputs = (
            codec.decode_request_inputs(request) if request is not None and want_inputs else {}
        )
        outputs = (
            codec.decode_response_outputs(response)
            if response is not None and want_outputs
            else {}
        )
    except codec.TensorError as exc:
        raise DecodeError("bad_tensor", f"{exc} ({exc.reason})") from None
    request_id = (request.id if request is not None else "") or (
        response.id if response is not None else ""
    )
    return DecodedCall(
        model=model,
        version=version or resolver.resolve(model),
        request_id=request_id,
        inputs=inputs,
        outputs=outputs,
    )


def decode_observation(
    obs: RpcObservation, resolver: VersionResolver, wanted: WantedSides = _all_sides
) -> list[DecodedCall]:
    """The inference calls an observation carries; raises `DecodeError` when malformed.

    `wanted(model)` says whether the request's and the response's tensors are needed;
    tensors nobody reads are not decoded (the messages are still parsed and checked).

    Requests and responses are paired in order (the tap already pairs stream messages
    this way); a request with no response yields a call with no outputs, so input
    signals still see it.
    """
    kind = inference_method(obs.method)
    if kind is None:
        return []
    if not obs.request_messages and not obs.response_messages:
        # Normal for the closing observation of a stream whose messages were all paired.
        return []
    streamed = kind == STREAM_METHOD
    requests = [_parse_request(m) for m in obs.request_messages]
    responses = [_parse_response(m, streamed) for m in obs.response_messages]
    calls: list[DecodedCall] = []
    for i in range(max(len(requests), len(responses))):
        request = requests[i] if i < len(requests) else None
        response = responses[i] if i < len(responses) else None
        calls.append(_decode_pair(request, response, obs, resolver, wanted))
    return calls
