"""Our OIP messages are wire-compatible, field by field, with Triton's and MLServer's.

tritonclient and mlserver both register `inference.*` in protobuf's process-wide pool, so
they cannot be imported together; each descriptor is read in its own subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from service.oip import grpc_inference_service_pb2_grpc as pb_grpc
from service.oip import open_inference_pb2 as pb

SERVICE_METHODS = {
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse", False),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse", False),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse", False),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse", False),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse", False),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse", False),
    "ModelStreamInfer": ("ModelInferRequest", "ModelStreamInferResponse", True),
}


def _foreign_descriptor(module: str) -> descriptor_pb2.FileDescriptorProto:
    code = (
        "import importlib, sys; "
        f"m = importlib.import_module({module!r}); "
        "sys.stdout.buffer.write(m.DESCRIPTOR.serialized_pb)"
    )
    blob = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, timeout=120
    ).stdout
    return descriptor_pb2.FileDescriptorProto.FromString(blob)


def _messages(
    messages: list[descriptor_pb2.DescriptorProto], prefix: str = ""
) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}
    for message in messages:
        name = f"{prefix}{message.name}"
        found[name] = message
        found.update(_messages(list(message.nested_type), f"{name}."))
    return found


def _fields(message: descriptor_pb2.DescriptorProto) -> dict[int, tuple[str, int, int, str, bool]]:
    """number -> (name, label, type, type name without package, in a oneof)."""
    return {
        f.number: (
            f.name,
            f.label,
            f.type,
            f.type_name.split(".")[-1],
            f.HasField("oneof_index"),
        )
        for f in message.field
    }


def _ours() -> dict[str, descriptor_pb2.DescriptorProto]:
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    return _messages(list(proto.message_type))


@pytest.fixture(scope="module")
def triton() -> descriptor_pb2.FileDescriptorProto:
    return _foreign_descriptor("tritonclient.grpc.service_pb2")


@pytest.fixture(scope="module")
def mlserver() -> descriptor_pb2.FileDescriptorProto:
    return _foreign_descriptor("mlserver.grpc.dataplane_pb2")


def _check_subset(
    theirs: dict[str, descriptor_pb2.DescriptorProto],
    ours: dict[str, descriptor_pb2.DescriptorProto],
) -> set[tuple[str, int]]:
    """Asserts every field of theirs that we model is ours too; returns what matched."""
    matched: set[tuple[str, int]] = set()
    for name, message in theirs.items():
        if name not in ours:
            continue
        our_fields = _fields(ours[name])
        for number, field in _fields(message).items():
            assert our_fields.get(number) == field, f"{name} field {number}"
            matched.add((name, number))
    return matched


def test_every_field_matches_triton_or_mlserver_and_none_is_extra(
    triton: descriptor_pb2.FileDescriptorProto, mlserver: descriptor_pb2.FileDescriptorProto
) -> None:
    ours = _ours()
    triton_messages = _messages(list(triton.message_type))
    assert set(ours) <= set(triton_messages) | set(_messages(list(mlserver.message_type)))
    from_triton = _check_subset(triton_messages, ours)
    # MLServer speaks plain KServe v2: no uint64/double parameters and no
    # ModelStreamInferResponse, but metadata parameters Triton lacks.
    from_mlserver = _check_subset(_messages(list(mlserver.message_type)), ours)
    ours_all = {(name, number) for name, m in ours.items() for number in _fields(m)}
    assert ours_all == from_triton | from_mlserver
    assert len(from_triton) == 68
    assert from_mlserver - from_triton == {
        ("ModelMetadataResponse", 6),
        ("ModelMetadataResponse.TensorMetadata", 4),
        ("ModelMetadataResponse.ParametersEntry", 1),
        ("ModelMetadataResponse.ParametersEntry", 2),
        ("ModelMetadataResponse.TensorMetadata.ParametersEntry", 1),
        ("ModelMetadataResponse.TensorMetadata.ParametersEntry", 2),
    }


def test_service_has_the_standard_name_and_methods(
    triton: descriptor_pb2.FileDescriptorProto,
) -> None:
    (service,) = [s for s in triton.service if s.name == "GRPCInferenceService"]
    theirs = {
        m.name: (m.input_type.split(".")[-1], m.output_type.split(".")[-1], m.server_streaming)
        for m in service.method
    }
    for method, signature in SERVICE_METHODS.items():
        assert theirs[method] == signature
    assert triton.package == "inference"
    # The generated bindings use the standard :path for every method.
    source = Path(pb_grpc.__file__).read_text()
    for method in SERVICE_METHODS:
        assert f"'/inference.GRPCInferenceService/{method}'" in source
