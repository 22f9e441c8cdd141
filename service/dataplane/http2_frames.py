"""Incremental HTTP/2 frame reader for one direction of a relayed connection.

It reads a copy of the bytes in whatever chunks they arrive, reassembles header blocks
(HEADERS + CONTINUATION, padding and priority stripped) and streams DATA payloads to a
listener without buffering them: a listener that does not want a stream's DATA has it
skipped by length, and so are frames the tap ignores (PING, WINDOW_UPDATE, PRIORITY,
unknown types). Only header blocks and the small control frames it reads are buffered,
each within a bound. Nothing here touches the bytes being relayed.
"""

from __future__ import annotations

from typing import Protocol

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

SETTINGS_HEADER_TABLE_SIZE = 0x1

#: A header block larger than this is refused (the tap is then disabled for the connection).
MAX_HEADER_BLOCK_BYTES = 1 << 20
#: A SETTINGS, RST_STREAM or GOAWAY frame larger than this is refused the same way. Real
#: ones are a few dozen bytes (GOAWAY may add a short debug text); buffering more would
#: let a peer hold memory in the tap for nothing.
MAX_CONTROL_FRAME_BYTES = 16 << 10


class FrameError(Exception):
    """The byte stream is not valid HTTP/2 (the tap gives up on the connection)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class FrameListener(Protocol):
    """What a `FrameReader` reports, in wire order."""

    def on_header_block(self, stream_id: int, block: bytes, end_stream: bool) -> None: ...

    def wants_data(self, stream_id: int) -> bool:
        """True to receive this stream's DATA bytes; False skips them by length."""
        ...

    def on_data(self, stream_id: int, chunk: memoryview) -> None: ...

    def on_data_end(self, stream_id: int, length: int, end_stream: bool) -> None:
        """End of one DATA frame; `length` counts payload bytes without padding."""
        ...

    def on_rst_stream(self, stream_id: int, error_code: int) -> None: ...

    def on_settings(self, settings: dict[int, int]) -> None: ...

    def on_goaway(self, last_stream_id: int, error_code: int) -> None: ...


_MODE_PREFACE = 0
_MODE_HEADER = 1
_MODE_FRAME = 2
_MODE_DATA = 3
_MODE_SKIP = 4


class FrameReader:
    """Reads HTTP/2 frames from a byte stream fed in arbitrary chunks."""

    def __init__(self, listener: FrameListener, *, expect_preface: bool) -> None:
        self._listener = listener
        self._mode = _MODE_PREFACE if expect_preface else _MODE_HEADER
        self._buf = bytearray()
        # current frame
        self._length = 0
        self._type = 0
        self._flags = 0
        self._stream_id = 0
        # DATA payload streaming state
        self._data_left = 0  # payload bytes of the current DATA frame not yet consumed
        self._content_left = 0  # of those, bytes that are data (the rest is padding)
        self._pad_pending = False  # PADDED flag set, pad-length byte not read yet
        self._data_wanted = False
        self._data_length = 0
        self._skip_left = 0  # payload bytes of an ignored frame not yet passed over
        # header block in progress (HEADERS without END_HEADERS, then CONTINUATION)
        self._block: bytearray | None = None
        self._block_stream = 0
        self._block_end_stream = False
        self.frames_seen = 0

    @property
    def at_frame_boundary(self) -> bool:
        """True when every byte fed so far belongs to complete frames (and blocks)."""
        return self._mode == _MODE_HEADER and not self._buf and self._block is None

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        pos = 0
        end = len(view)
        while pos < end:
            mode = self._mode
            if mode == _MODE_DATA:
                pos = self._feed_data(view, pos, end)
            elif mode == _MODE_SKIP:
                take = min(self._skip_left, end - pos)
                pos += take
                self._skip_left -= take
                if not self._skip_left:
                    self._mode = _MODE_HEADER
            elif mode == _MODE_HEADER:
                buf = self._buf
                if not buf and end - pos >= 9:
                    header = view[pos : pos + 9]
                    pos += 9
                else:
                    take = min(9 - len(buf), end - pos)
                    buf += view[pos : pos + take]
                    pos += take
                    if len(buf) < 9:
                        return
                    header = memoryview(bytes(buf))
                    buf.clear()
                self._start_frame(header)
                if self._mode == _MODE_FRAME and not self._buf and end - pos >= self._length:
                    # whole payload present: no copy into the buffer
                    payload = view[pos : pos + self._length]
                    pos += self._length
                    self._mode = _MODE_HEADER
                    self._dispatch(payload)
            elif mode == _MODE_FRAME:
                buf = self._buf
                take = min(self._length - len(buf), end - pos)
                buf += view[pos : pos + take]
                pos += take
                if len(buf) == self._length:
                    payload = memoryview(bytes(buf))
                    buf.clear()
                    self._mode = _MODE_HEADER
                    self._dispatch(payload)
            else:
                pos = self._feed_preface(view, pos, end)

    def _feed_preface(self, view: memoryview, pos: int, end: int) -> int:
        buf = self._buf
        take = min(len(CLIENT_PREFACE) - len(buf), end - pos)
        buf += view[pos : pos + take]
        if not CLIENT_PREFACE.startswith(bytes(buf)):
            raise FrameError("not_http2", "client preface missing")
        if len(buf) == len(CLIENT_PREFACE):
            buf.clear()
            self._mode = _MODE_HEADER
        return pos + take

    def _start_frame(self, header: memoryview) -> None:
        length = (header[0] << 16) | (header[1] << 8) | header[2]
        ftype = header[3]
        flags = header[4]
        stream_id = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
        self.frames_seen += 1
        if self._block is not None and ftype != CONTINUATION:
            raise FrameError("protocol", "frame interleaved in a header block")
        self._length = length
        self._type = ftype
        self._flags = flags
        self._stream_id = stream_id
        if ftype == DATA:
            if stream_id == 0:
                raise FrameError("protocol", "DATA on stream 0")
            self._mode = _MODE_DATA
            self._data_left = length
            self._data_length = 0
            self._pad_pending = bool(flags & FLAG_PADDED)
            self._content_left = 0 if self._pad_pending else length
            self._data_wanted = self._listener.wants_data(stream_id)
            if length == 0:
                if self._pad_pending:
                    raise FrameError("protocol", "padded DATA without pad length")
                self._end_data()
        elif ftype in (HEADERS, CONTINUATION):
            if length > MAX_HEADER_BLOCK_BYTES:
                raise FrameError("oversized_headers", f"{length} byte header frame")
            self._expect_payload(length)
        elif ftype in (SETTINGS, RST_STREAM, GOAWAY):
            if length > MAX_CONTROL_FRAME_BYTES:
                raise FrameError("oversized_control", f"{length} byte frame of type {ftype}")
            self._expect_payload(length)
        elif ftype == PUSH_PROMISE:
            # gRPC never pushes; a push would also carry a header block we cannot skip.
            raise FrameError("unsupported", "PUSH_PROMISE")
        elif length:
            # PING, WINDOW_UPDATE, PRIORITY and unknown types: nothing the tap needs
            self._mode = _MODE_SKIP
            self._skip_left = length

    def _expect_payload(self, length: int) -> None:
        """The current frame's payload is read whole, then dispatched."""
        self._mode = _MODE_FRAME
        if length == 0:
            self._mode = _MODE_HEADER
            self._dispatch(memoryview(b""))

    def _feed_data(self, view: memoryview, pos: int, end: int) -> int:
        if self._pad_pending:
            pad = view[pos]
            pos += 1
            self._data_left -= 1
            self._pad_pending = False
            if pad > self._data_left:
                raise FrameError("protocol", "DATA padding exceeds frame")
            self._content_left = self._data_left - pad
            if self._data_left == 0:
                self._end_data()
                return pos
            if pos >= end:
                return pos
        take = min(self._data_left, end - pos)
        content = min(take, self._content_left)
        if content:
            if self._data_wanted:
                self._listener.on_data(self._stream_id, view[pos : pos + content])
            self._content_left -= content
            self._data_length += content
        self._data_left -= take
        pos += take
        if self._data_left == 0:
            self._end_data()
        return pos

    def _end_data(self) -> None:
        self._mode = _MODE_HEADER
        self._listener.on_data_end(
            self._stream_id, self._data_length, bool(self._flags & FLAG_END_STREAM)
        )

    def _dispatch(self, payload: memoryview) -> None:
        ftype = self._type
        flags = self._flags
        sid = self._stream_id
        if ftype == HEADERS:
            self._on_headers(payload, flags, sid)
        elif ftype == CONTINUATION:
            block = self._block
            if block is None or sid != self._block_stream:
                raise FrameError("protocol", "unexpected CONTINUATION")
            block += payload
            if len(block) > MAX_HEADER_BLOCK_BYTES:
                raise FrameError("oversized_headers", "header block too large")
            if flags & FLAG_END_HEADERS:
                self._block = None
                self._listener.on_header_block(sid, bytes(block), self._block_end_stream)
        elif ftype == SETTINGS:
            if flags & FLAG_ACK:
                return
            if len(payload) % 6:
                raise FrameError("protocol", "SETTINGS length not a multiple of 6")
            settings = {
                int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(
                    payload[i + 2 : i + 6], "big"
                )
                for i in range(0, len(payload), 6)
            }
            self._listener.on_settings(settings)
        elif ftype == RST_STREAM:
            if len(payload) != 4:
                raise FrameError("protocol", "RST_STREAM length")
            self._listener.on_rst_stream(sid, int.from_bytes(payload, "big"))
        elif ftype == GOAWAY:
            if len(payload) < 8:
                raise FrameError("protocol", "GOAWAY length")
            last = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
            self._listener.on_goaway(last, int.from_bytes(payload[4:8], "big"))

    def _on_headers(self, payload: memoryview, flags: int, sid: int) -> None:
        if sid == 0:
            raise FrameError("protocol", "HEADERS on stream 0")
        start = 0
        stop = len(payload)
        if flags & FLAG_PADDED:
            if stop < 1:
                raise FrameError("protocol", "padded HEADERS without pad length")
            stop -= payload[0]
            start = 1
        if flags & FLAG_PRIORITY:
            start += 5
        if start > stop:
            raise FrameError("protocol", "HEADERS padding/priority exceed frame")
        fragment = payload[start:stop]
        end_stream = bool(flags & FLAG_END_STREAM)
        if flags & FLAG_END_HEADERS:
            self._listener.on_header_block(sid, bytes(fragment), end_stream)
        else:
            self._block = bytearray(fragment)
            self._block_stream = sid
            self._block_end_stream = end_stream


def goaway_frame(last_stream_id: int, error_code: int = 0) -> bytes:
    """A GOAWAY frame; the relay sends one to drain a client politely."""
    payload = (last_stream_id & 0x7FFFFFFF).to_bytes(4, "big") + error_code.to_bytes(4, "big")
    return len(payload).to_bytes(3, "big") + bytes([GOAWAY, 0]) + (0).to_bytes(4, "big") + payload
