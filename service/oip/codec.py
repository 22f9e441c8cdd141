"""Open Inference Protocol tensors <-> numpy arrays.

Covers every OIP datatype, both encodings (`raw_*_contents` and typed `contents`), and
turns every malformed tensor into one typed error, `TensorError`, that names the tensor
and the problem. Nothing here trusts the sender: shapes are checked for sign and
overflow before any allocation, byte counts before any reshape.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.oip import open_inference_pb2 as pb

# Little-endian numpy dtypes per OIP datatype. BF16 has no numpy dtype: it is carried as
# uint16 on the wire and widened to float32 on decode.
_NUMPY_BY_DATATYPE: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
}
DATATYPES: tuple[str, ...] = (*_NUMPY_BY_DATATYPE, "BYTES")

# Which InferTensorContents field carries which datatype (FP16 and BF16 have none).
_CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

# The numpy dtype of each typed contents field, at the field's own width.
_FIELD_DTYPE: dict[str, np.dtype[Any]] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}

# No tensor may claim more elements than this; it bounds memory before any allocation.
MAX_ELEMENTS = 1 << 31


class TensorError(ValueError):
    """A tensor that cannot be decoded or encoded; names the tensor and the problem.

    `reason` is a short, stable label for metrics: unknown_datatype, bad_shape,
    size_mismatch, mixed_contents, truncated_bytes, missing_contents, count_mismatch,
    unsupported.
    """

    def __init__(self, tensor: str, reason: str, detail: str) -> None:
        super().__init__(f"tensor {tensor!r}: {detail}")
        self.tensor = tensor
        self.reason = reason
        self.detail = detail


_TensorSpec = pb.ModelInferRequest.InferInputTensor | pb.ModelInferResponse.InferOutputTensor


def numpy_dtype_of(datatype: str) -> np.dtype[Any]:
    """The numpy dtype that holds an OIP datatype (object for BYTES, uint16 for BF16)."""
    if datatype == "BYTES":
        return np.dtype(object)
    try:
        return _NUMPY_BY_DATATYPE[datatype]
    except KeyError:
        raise ValueError(f"unknown datatype {datatype!r}; valid: {', '.join(DATATYPES)}") from None


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype for a numpy array (object/bytes/str arrays are BYTES)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    for name, dtype in _NUMPY_BY_DATATYPE.items():
        if name != "BF16" and array.dtype.newbyteorder("<") == dtype:
            return name
    raise TypeError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


def _checked_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    count = 1
    for dim in shape:
        if dim < 0:
            raise TensorError(name, "bad_shape", f"shape {list(shape)} has a negative dimension")
        count *= dim
        if count > MAX_ELEMENTS:
            raise TensorError(
                name, "bad_shape", f"shape {list(shape)} exceeds {MAX_ELEMENTS} elements"
            )
    return tuple(int(d) for d in shape)


def _element_count(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _split_bytes_elements(name: str, raw: bytes, count: int) -> np.ndarray:
    """BYTES raw layout: each element is a 4-byte little-endian length, then the bytes."""
    out = np.empty(count, dtype=object)
    offset = 0
    view = memoryview(raw)
    for i in range(count):
        if offset + 4 > len(raw):
            raise TensorError(
                name, "truncated_bytes", f"BYTES element {i} of {count}: length prefix truncated"
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise TensorError(
                name,
                "truncated_bytes",
                f"BYTES element {i} of {count}: needs {length} bytes, {len(raw) - offset} left",
            )
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise TensorError(
            name,
            "size_mismatch",
            f"{len(raw) - offset} trailing bytes after {count} BYTES elements",
        )
    return out


def _decode_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> np.ndarray:
    count = _element_count(shape)
    if datatype == "BYTES":
        return _split_bytes_elements(name, raw, count).reshape(shape)
    dtype = _NUMPY_BY_DATATYPE[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(
            name,
            "size_mismatch",
            f"{datatype} shape {list(shape)} needs {expected} bytes, got {len(raw)}",
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if datatype == "BF16":
        return _bf16_to_float32(array)
    # Native byte order, and a copy so the caller does not keep the message buffer alive.
    return array.astype(dtype.newbyteorder("="), copy=True)


def _bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16_bits(array: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) for float32 values, rounding to nearest even."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    rounded = ((bits + rounding) >> 16).astype(np.uint16)
    # NaN must stay NaN: rounding could carry a NaN's payload into infinity.
    return np.where(np.isnan(array), np.uint16(0x7FC0), rounded)


def _decode_typed(
    name: str, datatype: str, shape: tuple[int, ...], tensor: _TensorSpec
) -> np.ndarray:
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        if _element_count(shape) == 0:
            return np.empty(
                shape, dtype=np.float32 if datatype == "BF16" else numpy_dtype_of(datatype)
            )
        raise TensorError(
            name, "unsupported", f"{datatype} has no typed contents; send it as raw contents"
        )
    values = getattr(tensor.contents, field)
    count = _element_count(shape)
    if count == 0 and not len(values):
        return np.empty(shape, dtype=numpy_dtype_of(datatype))
    if len(values) != count:
        raise TensorError(
            name,
            "size_mismatch",
            f"{datatype} shape {list(shape)} needs {count} values in {field}, got {len(values)}",
        )
    for other in _CONTENTS_FIELD.values():
        if other != field and len(getattr(tensor.contents, other)):
            raise TensorError(
                name, "mixed_contents", f"{datatype} tensor also carries values in {other}"
            )
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        for i, value in enumerate(values):
            out[i] = bytes(value)
        return out.reshape(shape)
    dtype = _NUMPY_BY_DATATYPE[datatype]
    # Read at the protobuf field's own width, then narrow; typed int fields are wider than
    # INT8/16 and UINT8/16, and values that do not fit are refused rather than wrapped.
    wide = np.fromiter(values, dtype=_FIELD_DTYPE[field], count=len(values))
    array = wide.astype(dtype.newbyteorder("="))
    if dtype.kind in "iu" and not np.array_equal(array, wide):
        raise TensorError(name, "size_mismatch", f"values out of range for {datatype}")
    return array.reshape(shape)


def _decode_tensors(
    tensors: Sequence[_TensorSpec], raw_contents: Sequence[bytes], what: str
) -> dict[str, np.ndarray]:
    if raw_contents and len(raw_contents) != len(tensors):
        raise TensorError(
            "*",
            "count_mismatch",
            f"{len(raw_contents)} raw {what} contents for {len(tensors)} {what}s",
        )
    decoded: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        name = tensor.name
        datatype = tensor.datatype
        if datatype not in DATATYPES:
            raise TensorError(
                name,
                "unknown_datatype",
                f"unknown datatype {datatype!r}; valid: {', '.join(DATATYPES)}",
            )
        shape = _checked_shape(name, tensor.shape)
        has_typed = tensor.HasField("contents") and tensor.contents.ByteSize() > 0
        if raw_contents:
            if has_typed:
                raise TensorError(
                    name, "mixed_contents", "both raw contents and typed contents are set"
                )
            decoded[name] = _decode_raw(name, datatype, shape, raw_contents[index])
        elif has_typed or _element_count(shape) == 0:
            decoded[name] = _decode_typed(name, datatype, shape, tensor)
        else:
            raise TensorError(name, "missing_contents", "no raw contents and no typed contents")
    return decoded


def decode_request_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Every input tensor of a request, by name. Raises TensorError on a malformed one."""
    return _decode_tensors(request.inputs, request.raw_input_contents, "input")


def decode_response_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Every output tensor of a response, by name. Raises TensorError on a malformed one."""
    return _decode_tensors(response.outputs, response.raw_output_contents, "output")


def _raw_bytes(name: str, array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for element in array.reshape(-1):
            data = element.encode() if isinstance(element, str) else bytes(element)
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    dtype = _NUMPY_BY_DATATYPE[datatype]
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _fill_typed(
    name: str, array: np.ndarray, datatype: str, contents: pb.InferTensorContents
) -> None:
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise TensorError(name, "unsupported", f"{datatype} has no typed contents; use raw=True")
    flat = array.reshape(-1)
    if datatype == "BYTES":
        values: list[Any] = [e.encode() if isinstance(e, str) else bytes(e) for e in flat]
    else:
        values = flat.tolist()
    getattr(contents, field).extend(values)


def _encode_tensor(
    name: str, value: np.ndarray | Sequence[Any], datatypes: Mapping[str, str]
) -> tuple[np.ndarray, str]:
    array = np.asarray(value)
    if datatypes.get(name) == "BF16":
        # BF16 has no numpy dtype: it travels as its uint16 bit pattern, raw only.
        return float32_to_bf16_bits(array), "BF16"
    if name in datatypes and datatypes[name] != "BF16":
        raise TensorError(name, "unsupported", "only BF16 can be requested explicitly")
    try:
        return array, datatype_of(array)
    except TypeError as exc:
        raise TensorError(name, "unknown_datatype", str(exc)) from None


def _add_tensors(
    tensors: Any,
    raw_contents: Any,
    values: Mapping[str, np.ndarray],
    raw: bool,
    datatypes: Mapping[str, str],
) -> None:
    """Appends each array to a request's inputs or a response's outputs (same layout)."""
    for name, value in values.items():
        array, datatype = _encode_tensor(name, value, datatypes)
        tensor = tensors.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            raw_contents.append(_raw_bytes(name, array, datatype))
        else:
            _fill_typed(name, array, datatype, tensor.contents)


def encode_request(
    model_name: str,
    inputs: Mapping[str, np.ndarray],
    *,
    model_version: str = "",
    request_id: str = "",
    outputs: Sequence[str] = (),
    raw: bool = True,
    datatypes: Mapping[str, str] | None = None,
) -> pb.ModelInferRequest:
    """A ModelInferRequest carrying `inputs`, raw-encoded unless `raw=False`.

    `datatypes` may name inputs to send as BF16 (from float32 arrays).
    """
    request = pb.ModelInferRequest(
        model_name=model_name, model_version=model_version, id=request_id
    )
    _add_tensors(request.inputs, request.raw_input_contents, inputs, raw, datatypes or {})
    for output in outputs:
        request.outputs.add(name=output)
    return request


def encode_response(
    model_name: str,
    outputs: Mapping[str, np.ndarray],
    *,
    model_version: str = "",
    request_id: str = "",
    raw: bool = True,
    datatypes: Mapping[str, str] | None = None,
) -> pb.ModelInferResponse:
    """A ModelInferResponse carrying `outputs`, raw-encoded unless `raw=False`.

    `datatypes` may name outputs to send as BF16 (from float32 arrays).
    """
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id
    )
    _add_tensors(response.outputs, response.raw_output_contents, outputs, raw, datatypes or {})
    return response
