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
    """Cuts a stream of DATA bytes into gRPC messages (payloads without the prefix).

    With `max_messages`, messages past that many are passed over by their length: not
    buffered, inflated or size-checked, only counted (see `take_dropped`).
    """

    __slots__ = (
        "_buf",
        "_completed",
        "_dropped",
        "_skip_left",
        "encoding",
        "limit",
        "max_messages",
        "messages",
    )

    def __init__(self, encoding: str, limit: int, max_messages: int | None = None) -> None:
        self._buf = bytearray()
        self.encoding = encoding
        self.limit = limit
        self.max_messages = max_messages
        self.messages: list[bytes] = []
        self._completed = 0  # messages kept so far, taken or not
        self._dropped = 0  # messages passed over and not yet reported
        self._skip_left = 0  # bytes of a passed-over message still to come

    def feed(self, chunk: memoryview) -> None:
        if self._skip_left:
            skip = min(self._skip_left, len(chunk))
            self._skip_left -= skip
            chunk = chunk[skip:]
        buf = self._buf
        buf += chunk
        while len(buf) >= 5:
            length = int.from_bytes(buf[1:5], "big")
            if self.max_messages is not None and self._completed >= self.max_messages:
                self._dropped += 1
                end = 5 + length
                if end > len(buf):
                    self._skip_left = end - len(buf)
                    buf.clear()
                    return
                del buf[:end]
                continue
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
            self._completed += 1

    def take_dropped(self) -> int:
        """How many messages were passed over since the last call."""
        dropped = self._dropped
        self._dropped = 0
        return dropped

    def take(self) -> list[bytes]:
        """The complete messages so far, handed over once."""
        out = self.messages
        self.messages = []
        return out

    @property
    def held_bytes(self) -> int:
        """Bytes held: the message in progress and the complete ones not yet taken."""
        return len(self._buf) + sum(len(message) for message in self.messages)
