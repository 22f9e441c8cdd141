"""The tensor codec: round trips for every datatype, and typed errors for every bad tensor."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.oip import codec
from service.oip import open_inference_pb2 as pb

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@pytest.mark.parametrize("datatype", sorted(NUMERIC))
@pytest.mark.parametrize("raw", [True, False])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_numeric_round_trip(datatype: str, raw: bool, data: st.DataObject) -> None:
    dtype = np.dtype(NUMERIC[datatype])
    array = data.draw(
        hnp.arrays(dtype, SHAPES, elements={"allow_nan": False} if dtype.kind == "f" else None)
    )
    if not raw and datatype == "FP16":
        with pytest.raises(codec.TensorError) as info:
            codec.encode_request("m", {"x": array}, raw=False)
        assert info.value.reason == "unsupported"
        return
    request = codec.encode_request("m", {"x": array}, raw=raw)
    assert request.inputs[0].datatype == datatype
    decoded = codec.decode_request_inputs(
        pb.ModelInferRequest.FromString(request.SerializeToString())
    )
    assert decoded["x"].dtype == dtype
    assert decoded["x"].shape == array.shape
    np.testing.assert_array_equal(decoded["x"], array)


@pytest.mark.parametrize("raw", [True, False])
@settings(max_examples=40, deadline=None)
@given(
    shape=SHAPES,
    data=st.data(),
)
def test_bytes_round_trip(raw: bool, shape: tuple[int, ...], data: st.DataObject) -> None:
    count = int(np.prod(shape)) if shape else 1
    elements = data.draw(st.lists(st.binary(max_size=20), min_size=count, max_size=count))
    array = np.empty(count, dtype=object)
    array[:] = elements
    array = array.reshape(shape)
    response = codec.encode_response("m", {"text": array}, raw=raw)
    assert response.outputs[0].datatype == "BYTES"
    decoded = codec.decode_response_outputs(response)["text"]
    assert decoded.shape == array.shape
    assert decoded.reshape(-1).tolist() == elements


def test_bf16_round_trip_within_bfloat16_precision() -> None:
    values = np.array([[0.0, 1.0, -2.5, 3.140625], [1e-3, -65504.0, np.inf, 7.0]], dtype=np.float32)
    request = codec.encode_request("m", {"x": values}, datatypes={"x": "BF16"})
    assert request.inputs[0].datatype == "BF16"
    assert len(request.raw_input_contents[0]) == values.size * 2
    decoded = codec.decode_request_inputs(request)["x"]
    assert decoded.dtype == np.float32
    # bfloat16 keeps 8 significant bits: exactly representable values come back exactly.
    np.testing.assert_array_equal(decoded[0], values[0])
    np.testing.assert_allclose(decoded[1], values[1], rtol=2**-8)


def test_bf16_nan_stays_nan() -> None:
    request = codec.encode_request(
        "m", {"x": np.array([np.nan], np.float32)}, datatypes={"x": "BF16"}
    )
    assert np.isnan(codec.decode_request_inputs(request)["x"][0])


def test_raw_bytes_layout_matches_the_protocol() -> None:
    array = np.array([b"ab", b""], dtype=object)
    request = codec.encode_request("m", {"s": array})
    assert request.raw_input_contents[0] == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
    ints = codec.encode_request("m", {"i": np.array([1, 256], np.int32)})
    assert ints.raw_input_contents[0] == b"\x01\x00\x00\x00\x00\x01\x00\x00"


def _request(datatype: str, shape: list[int], raw: bytes | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


@pytest.mark.parametrize(
    ("request_", "reason", "message"),
    [
        (
            _request("FP32", [2, 2], b"\0" * 15),
            "size_mismatch",
            "tensor 'x': FP32 shape [2, 2] needs 16 bytes, got 15",
        ),
        (
            _request("FP32", [-1, 2], b""),
            "bad_shape",
            "tensor 'x': shape [-1, 2] has a negative dimension",
        ),
        (
            _request("FP32", [1 << 40, 1 << 40], b""),
            "bad_shape",
            "tensor 'x': shape [1099511627776, 1099511627776] exceeds 2147483648 elements",
        ),
        (_request("FP128", [1], b"\0"), "unknown_datatype", "tensor 'x': unknown datatype 'FP128'"),
        (
            _request("BYTES", [1], b"\x05\0\0\0ab"),
            "truncated_bytes",
            "tensor 'x': BYTES element 0 of 1: needs 5 bytes, 2 left",
        ),
        (
            _request("BYTES", [2], b"\x01\0\0\0a"),
            "truncated_bytes",
            "tensor 'x': BYTES element 1 of 2: length prefix truncated",
        ),
        (
            _request("BYTES", [1], b"\x01\0\0\0ab"),
            "size_mismatch",
            "tensor 'x': 1 trailing bytes after 1 BYTES elements",
        ),
        (
            _request("FP32", [1]),
            "missing_contents",
            "tensor 'x': no raw contents and no typed contents",
        ),
    ],
)
def test_malformed_tensors_raise_one_typed_error(
    request_: pb.ModelInferRequest, reason: str, message: str
) -> None:
    with pytest.raises(codec.TensorError) as info:
        codec.decode_request_inputs(request_)
    assert info.value.reason == reason
    assert str(info.value).startswith(message)
    assert info.value.tensor == "x"


def test_raw_and_typed_mixed_is_refused() -> None:
    request = _request("FP32", [1], b"\0\0\0\0")
    request.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(codec.TensorError, match="both raw contents and typed contents") as info:
        codec.decode_request_inputs(request)
    assert info.value.reason == "mixed_contents"


def test_typed_contents_in_the_wrong_field_are_refused() -> None:
    request = _request("INT32", [1])
    request.inputs[0].contents.int_contents.append(1)
    request.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(codec.TensorError, match="also carries values in fp32_contents"):
        codec.decode_request_inputs(request)


def test_typed_values_out_of_range_do_not_wrap() -> None:
    request = _request("INT8", [1])
    request.inputs[0].contents.int_contents.append(300)
    with pytest.raises(codec.TensorError, match="out of range for INT8"):
        codec.decode_request_inputs(request)


def test_raw_count_must_match_inputs() -> None:
    request = _request("FP32", [1], b"\0\0\0\0")
    request.raw_input_contents.append(b"")
    with pytest.raises(codec.TensorError, match="2 raw input contents for 1 inputs") as info:
        codec.decode_request_inputs(request)
    assert info.value.reason == "count_mismatch"


@settings(max_examples=300, deadline=None)
@given(
    datatype=st.sampled_from([*codec.DATATYPES, "NOPE", ""]),
    shape=st.lists(st.integers(min_value=-3, max_value=1 << 33), max_size=4),
    raw=st.binary(max_size=64),
)
def test_random_bytes_raise_only_the_typed_error(
    datatype: str, shape: list[int], raw: bytes
) -> None:
    request = _request(datatype, shape, raw)
    try:
        decoded = codec.decode_request_inputs(request)
    except codec.TensorError:
        return
    assert decoded["x"].shape == tuple(shape)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=200))
def test_random_messages_raise_only_protobuf_or_typed_errors(blob: bytes) -> None:
    from google.protobuf.message import DecodeError

    try:
        request = pb.ModelInferRequest.FromString(blob)
    except DecodeError:
        return
    with contextlib.suppress(codec.TensorError):
        codec.decode_request_inputs(request)


def test_datatype_of_rejects_types_without_an_oip_datatype() -> None:
    with pytest.raises(TypeError, match="complex128"):
        codec.datatype_of(np.zeros(1, np.complex128))
    assert codec.datatype_of(np.array(["a"])) == "BYTES"


def test_numpy_dtype_of_names_valid_datatypes() -> None:
    with pytest.raises(ValueError, match="unknown datatype 'X'; valid: BOOL, UINT8"):
        codec.numpy_dtype_of("X")
