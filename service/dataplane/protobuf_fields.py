"""Cheap reads of the first string fields of a protobuf message (model name and version).

Full decoding is the monitor's job; the tap only needs `model_name` (field 1) and
`model_version` (field 2) of ModelInferRequest/Response, and field 2 (`infer_response`)
of Triton's ModelStreamInferResponse, which serializers write first.
"""

from __future__ import annotations


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def length_delimited_fields(buf: bytes, wanted: frozenset[int]) -> dict[int, bytes]:
    """The first occurrence of each wanted length-delimited top-level field.

    Stops early once all are found; tolerates a truncated buffer (a message head) by
    returning what it found before the cut.
    """
    found: dict[int, bytes] = {}
    pos = 0
    n = len(buf)
    try:
        while pos < n and len(found) < len(wanted):
            key, pos = _varint(buf, pos)
            number = key >> 3
            wire = key & 7
            if wire == 2:
                length, pos = _varint(buf, pos)
                if pos + length > n:
                    return found  # cut in the middle of a field: a message head
                if number in wanted and number not in found:
                    found[number] = buf[pos : pos + length]
                pos += length
            elif wire == 0:
                _, pos = _varint(buf, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                return found
    except ValueError:
        return found
    return found


_NAME_VERSION = frozenset((1, 2))


def _text(raw: bytes | None) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace")


def _leading_name_version(buf: bytes) -> tuple[str, str] | None:
    """Fast path for the usual layout: field 1 then field 2, both shorter than 128 bytes."""
    n = len(buf)
    if n < 2 or buf[0] != 0x0A or buf[1] >= 0x80:
        return None
    end = 2 + buf[1]
    if end > n:
        return None
    name = buf[2:end].decode("utf-8", "replace")
    if end + 2 <= n and buf[end] == 0x12 and buf[end + 1] < 0x80:
        stop = end + 2 + buf[end + 1]
        if stop <= n:
            return name, buf[end + 2 : stop].decode("utf-8", "replace")
    if end >= n or buf[end] == 0x12:
        return None  # cut short, or a version too long for the fast path
    return name, ""


def model_of_request(message: bytes) -> tuple[str, str]:
    """(model_name, model_version) of a ModelInferRequest (or its head)."""
    fast = _leading_name_version(message)
    if fast is not None:
        return fast
    fields = length_delimited_fields(message, _NAME_VERSION)
    return _text(fields.get(1)), _text(fields.get(2))


def version_of_response(message: bytes, *, stream: bool) -> str:
    """model_version of a ModelInferResponse, or of a streamed response.

    Triton streams ModelStreamInferResponse (field 1 error_message, field 2 the response);
    MLServer streams plain ModelInferResponse (field 1 model_name, field 2 the version).
    A wrapper never carries both fields with a response, a plain response always has its
    model name, so "field 1 present" tells them apart.
    """
    fast = _leading_name_version(message)
    if fast is not None:
        return fast[1]
    fields = length_delimited_fields(message, _NAME_VERSION)
    if stream and 1 not in fields:
        inner = fields.get(2)
        if inner is None:
            return ""
        fields = length_delimited_fields(inner, _NAME_VERSION)
    return _text(fields.get(2))
