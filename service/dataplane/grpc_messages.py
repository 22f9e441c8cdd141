"""gRPC message reassembly from a stream's DATA bytes (5-byte prefix, optional compression)."""

from __future__ import annotations

import zlib


class MessageError(Exception):
    """A message cannot be kept: oversized, badly compressed or an unknown encoding."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decompress(payload: bytes, encoding: str, limit: int) -> bytes:
    """Inflates a compressed gRPC message, refusing output beyond `limit` bytes."""
    if encoding == "gzip":
        wbits = 31
    elif encoding == "deflate":
        wbits = 15  # gRPC's "deflate" is the zlib format
    else:
        raise MessageError("unsupported_encoding", encoding or "compressed flag without encoding")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(payload, limit + 1)
    except zlib.error as err:
        raise MessageError("bad_compression", str(err)) from None
    if len(out) > limit:
        raise MessageError("oversized", f"message inflates beyond {limit} bytes")
    if not inflater.eof:
        raise MessageError("bad_compression", "truncated compressed message")
    return out


class MessageAssembler:
    """Cuts a stream of DATA bytes into gRPC messages (payloads without the prefix)."""

    __slots__ = ("_buf", "encoding", "limit", "messages")

    def __init__(self, encoding: str, limit: int) -> None:
        self._buf = bytearray()
        self.encoding = encoding
        self.limit = limit
        self.messages: list[bytes] = []

    def feed(self, chunk: memoryview) -> None:
        buf = self._buf
        buf += chunk
        while len(buf) >= 5:
            length = int.from_bytes(buf[1:5], "big")
            if length > self.limit:
                raise MessageError("oversized", f"{length} byte message")
            if len(buf) < 5 + length:
                return
            compressed = buf[0]
            payload = bytes(buf[5 : 5 + length])
            del buf[: 5 + length]
            if compressed:
                payload = decompress(payload, self.encoding, self.limit)
            self.messages.append(payload)

    def take(self) -> list[bytes]:
        """The complete messages so far, handed over once."""
        out = self.messages
        self.messages = []
        return out

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)
