"""Builds HTTP/2 byte streams by hand for tap tests (padding, priority, CONTINUATION...)."""

from __future__ import annotations

import hpack

from service.dataplane.http2_frames import (
    CLIENT_PREFACE,
    CONTINUATION,
    DATA,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FLAG_PRIORITY,
    HEADERS,
    RST_STREAM,
    SETTINGS,
)


def frame(ftype: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([ftype, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def settings(**values: int) -> bytes:
    ids = {"header_table_size": 1, "max_frame_size": 5}
    body = b"".join(ids[k].to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values.items())
    return frame(SETTINGS, 0, 0, body)


def grpc_message(payload: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


def headers(
    encoder: hpack.Encoder,
    stream_id: int,
    fields: list[tuple[str, str]],
    *,
    end_stream: bool = False,
    pad: int = 0,
    priority: bool = False,
    split: int = 0,
) -> bytes:
    """A header block as HEADERS (+ CONTINUATION when `split` > 0 cuts it)."""
    block = encoder.encode(fields)
    first, rest = (block[:split], block[split:]) if split else (block, b"")
    flags = FLAG_END_STREAM if end_stream else 0
    body = first
    if priority:
        flags |= FLAG_PRIORITY
        body = b"\x00\x00\x00\x00\x10" + body
    if pad:
        flags |= FLAG_PADDED
        body = bytes([pad]) + body + b"\x00" * pad
    if not rest:
        return frame(HEADERS, flags | FLAG_END_HEADERS, stream_id, body)
    out = frame(HEADERS, flags, stream_id, body)
    half = len(rest) // 2
    out += frame(CONTINUATION, 0, stream_id, rest[:half])
    return out + frame(CONTINUATION, FLAG_END_HEADERS, stream_id, rest[half:])


def data(stream_id: int, payload: bytes, *, end_stream: bool = False, pad: int = 0) -> bytes:
    flags = FLAG_END_STREAM if end_stream else 0
    if pad:
        flags |= FLAG_PADDED
        payload = bytes([pad]) + payload + b"\x00" * pad
    return frame(DATA, flags, stream_id, payload)


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def request_headers(path: str, **extra: str) -> list[tuple[str, str]]:
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "model:8001"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    return fields + list(extra.items())


PREFACE = CLIENT_PREFACE
