"""Passive tap for one relayed connection: HTTP/2 frames -> HPACK -> gRPC -> observations.

The relay feeds the tap a copy of each chunk after forwarding it. The tap decodes every
header block in order (HPACK state depends on it), tracks each stream from its request
HEADERS to its end, and for sampled inference RPCs keeps the message payloads. DATA of
other streams is skipped by length, except a short head of inference messages from which
the model name and version are read.

Nothing raises out of `feed_*`: the first error of any kind (malformed frame, HPACK
error, a bug) switches the tap off for the connection, reports it once through
`TapEvents.tap_failed`, and every later byte is ignored. The tap only reads a copy of
what the relay has already forwarded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol
from urllib.parse import unquote

import hpack

from service.dataplane.grpc_messages import MessageAssembler, MessageError
from service.dataplane.http2_frames import SETTINGS_HEADER_TABLE_SIZE, FrameError, FrameReader
from service.dataplane.observation import RpcObservation
from service.dataplane.protobuf_fields import model_of_request, version_of_response
from service.dataplane.sampling import Sampler

#: Bytes of an unsampled inference message kept to read model name and version.
HEAD_BYTES = 512
#: Concurrent streams tracked per connection before the tap gives up on it.
MAX_TRACKED_STREAMS = 4096
#: Request messages of a sampled ModelStreamInfer stream kept while they wait for their
#: response, by count and by payload bytes; past either the oldest is dropped. The newest
#: is always kept, so a single message may reach `max_message_bytes`.
MAX_PENDING_REQUESTS = 64
MAX_PENDING_REQUEST_BYTES = 4 << 20
#: Largest HPACK dynamic table the tap's decoders hold, in RFC 7541 size units. gRPC peers
#: use the 4 KiB default; a peer may advertise far more, but the tap does not follow it
#: beyond this: an encoder that announces a larger table switches the tap off instead.
MAX_HPACK_TABLE_SIZE = 64 << 10
#: Sampled payload bytes one connection's tap holds at once (messages in progress, kept
#: and queued), across all its streams: the per-stream bounds above multiply by up to
#: `MAX_TRACKED_STREAMS`. Past it new samples are not kept, counted 'dropped'.
MAX_HELD_SAMPLE_BYTES = 32 << 20

INFER_METHOD = "ModelInfer"
STREAM_INFER_METHOD = "ModelStreamInfer"


class TapEvents(Protocol):
    """Where a tap reports what it saw."""

    def observed(self, obs: RpcObservation, rpc_end: bool) -> None:
        """An observation; `rpc_end` is False for in-stream ModelStreamInfer messages."""
        ...

    def sample_outcome(self, outcome: str) -> None:
        """A sampling decision or failure: 'skipped' (not chosen), 'error' (a message
        could not be kept) or 'dropped' (a message not kept: a streaming request given up
        while it waited, a unary call's message after its first, or a sample the
        connection's budget had no room for)."""
        ...

    def tap_failed(self, connection_id: int, reason: str, error: BaseException) -> None:
        """The tap gave up on this connection (called once)."""
        ...


class _Stream:
    """One gRPC call in flight on the connection."""

    __slots__ = (
        "authority",
        "grpc_message",
        "grpc_status",
        "head_req",
        "head_resp",
        "held",
        "infer",
        "method",
        "model_name",
        "model_version",
        "pending_bytes",
        "pending_requests",
        "probe",
        "req_bytes",
        "req_messages",
        "resp_bytes",
        "resp_messages",
        "response_headers_seen",
        "sampled",
        "start_time",
        "streaming",
    )

    def __init__(self, method: str, authority: str, probe: bool, start_time: float) -> None:
        self.method = method
        self.authority = authority
        self.probe = probe
        self.start_time = start_time
        name = method.rpartition("/")[2]
        self.streaming = name == STREAM_INFER_METHOD
        self.infer = self.streaming or name == INFER_METHOD
        self.sampled = False
        self.req_messages: MessageAssembler | None = None
        self.resp_messages: MessageAssembler | None = None
        self.head_req: bytearray | None = bytearray() if self.infer else None
        self.head_resp: bytearray | None = bytearray() if self.infer else None
        self.req_bytes = 0
        self.resp_bytes = 0
        self.grpc_status: int | None = None
        self.grpc_message = ""
        self.response_headers_seen = False
        self.model_name = ""
        self.model_version = ""
        # streaming: (arrival time, payload) of request messages not yet answered, oldest
        # first; each response is paired with the oldest
        self.pending_requests: deque[tuple[float, bytes]] = deque()
        self.pending_bytes = 0
        self.held = 0  # sampled payload bytes, as counted in the connection's budget


def _header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


_HIGH_BIT_BYTES = bytes(range(0x80, 0x100))
#: The decoded-block cache of one direction, in bytes: each entry costs its block plus the
#: HPACK size of its headers (RFC 7541 4.1: name + value + 32, which also roughly covers
#: the Python objects). A block costing more than the per-entry bound is never cached:
#: gRPC's repeated blocks are small, and a peer must not make the cache hold large ones.
_MAX_CACHED_BLOCK_COST = 4 << 10
_MAX_CACHE_COST = 64 << 10


def _hpack_int(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """An HPACK integer (RFC 7541 5.1) starting at `pos`; returns (value, next position)."""
    mask = (1 << prefix_bits) - 1
    value = block[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        b = block[pos]
        pos += 1
        value += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def table_neutral(block: bytes) -> bool:
    """True if decoding `block` cannot change the HPACK dynamic table.

    That holds when it has only indexed fields and literals without indexing or never
    indexed (RFC 7541 6.1, 6.2.2, 6.2.3): no incremental indexing, no table size update.
    Such a block always decodes to the same headers while the table is unchanged.
    A malformed block answers False (and is then left to the real decoder to reject).
    """
    if not block.translate(None, _HIGH_BIT_BYTES):
        return True  # only one-byte indexed fields
    pos = 0
    n = len(block)
    try:
        while pos < n:
            first = block[pos]
            if first & 0x80:
                _, pos = _hpack_int(block, pos, 7)
            elif first & 0xE0 == 0:  # 0000xxxx or 0001xxxx: literal, not indexed
                index, pos = _hpack_int(block, pos, 4)
                strings = 1 if index else 2
                for _ in range(strings):
                    length, pos = _hpack_int(block, pos, 7)
                    pos += length
            else:
                return False  # incremental indexing or a table size update
    except IndexError:
        return False
    return pos == n


class _Direction:
    """Frame listener for one direction; forwards to the shared tap state."""

    def __init__(self, tap: ConnectionTap, from_client: bool) -> None:
        self._tap = tap
        self._from_client = from_client
        self.decoder = hpack.Decoder()
        # Decoded table-neutral header blocks, valid while the dynamic table is unchanged.
        # gRPC peers repeat the same blocks on every call once their headers are indexed
        # (request headers, response headers, trailers), so most decodes become lookups.
        self._neutral_blocks: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self.cache_cost = 0  # of `_neutral_blocks`, as counted for `_MAX_CACHE_COST`
        # The table size the other side advertised for this direction's encoder (RFC 7540
        # 6.5.2); the decoder itself accepts at most `MAX_HPACK_TABLE_SIZE` of it.
        self.advertised_table_size = self.decoder.max_allowed_table_size

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        cached = self._neutral_blocks.get(block)
        if cached is not None:
            return cached
        neutral = table_neutral(block)
        try:
            headers: list[tuple[bytes, bytes]] = self.decoder.decode(block, raw=True)  # type: ignore[assignment]
        except hpack.InvalidTableSizeError as err:
            # within what the peer advertised but beyond the cap: the encoder's table no
            # longer matches ours, so the tap cannot go on (the relay does)
            capped = self.advertised_table_size > MAX_HPACK_TABLE_SIZE
            reason = "hpack_table_too_large" if capped else "hpack"
            raise FrameError(reason, f"{type(err).__name__}: {err}") from None
        except hpack.HPACKError as err:
            raise FrameError("hpack", f"{type(err).__name__}: {err}") from None
        if not neutral:
            self._neutral_blocks.clear()  # the table may have changed
            self.cache_cost = 0
            return headers
        cost = len(block) + sum(len(name) + len(value) + 32 for name, value in headers)
        if cost > _MAX_CACHED_BLOCK_COST:
            return headers
        if self.cache_cost + cost > _MAX_CACHE_COST:
            self._neutral_blocks.clear()
            self.cache_cost = 0
        self._neutral_blocks[block] = headers
        self.cache_cost += cost
        return headers

    def on_header_block(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        headers = self._decode(block)
        if self._from_client:
            self._tap.request_headers(stream_id, headers, end_stream)
        else:
            self._tap.response_headers(stream_id, headers, end_stream)

    def wants_data(self, stream_id: int) -> bool:
        return self._tap.wants_data(stream_id, self._from_client)

    def on_data(self, stream_id: int, chunk: memoryview) -> None:
        self._tap.data(stream_id, chunk, self._from_client)

    def on_data_end(self, stream_id: int, length: int, end_stream: bool) -> None:
        self._tap.data_end(stream_id, length, end_stream, self._from_client)

    def on_rst_stream(self, stream_id: int, error_code: int) -> None:
        self._tap.reset(stream_id, error_code, self._from_client)

    def on_settings(self, settings: dict[int, int]) -> None:
        size = settings.get(SETTINGS_HEADER_TABLE_SIZE)
        if size is not None:
            # This side's decoder table size bounds what the *other* side's encoder uses.
            peer = self._tap.peer_of(self)
            peer.advertised_table_size = size
            peer.decoder.max_allowed_table_size = min(size, MAX_HPACK_TABLE_SIZE)

    def on_goaway(self, last_stream_id: int, error_code: int) -> None:
        self._tap.goaway_seen = True


class ConnectionTap:
    """Decodes both directions of one relayed HTTP/2 connection into observations."""

    def __init__(
        self,
        connection_id: int,
        events: TapEvents,
        sampler: Sampler,
        *,
        max_message_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection_id = connection_id
        self._clock = clock  # wall-clock times of observations; tests pass a fake one
        self._events = events
        self._sampler = sampler
        self._limit = max_message_bytes
        self._streams: dict[int, _Stream] = {}
        self._client = _Direction(self, from_client=True)
        self._server = _Direction(self, from_client=False)
        self.client_reader = FrameReader(self._client, expect_preface=True)
        self.server_reader = FrameReader(self._server, expect_preface=False)
        self.goaway_seen = False
        self.max_client_stream_id = 0
        self.failed_reason: str | None = None
        #: Sampled payload bytes held by all streams, within `_max_held`.
        self.held_sample_bytes = 0
        # a budget below a few messages at the limit would never let large ones be sampled
        self._max_held = max(MAX_HELD_SAMPLE_BYTES, 4 * max_message_bytes)

    # -- fed by the relay -------------------------------------------------------------
    def feed_client(self, data: bytes) -> None:
        """Bytes the client sent (already forwarded upstream)."""
        if self.failed_reason is None:
            try:
                self.client_reader.feed(data)
            except Exception as err:  # isolation: any failure only blinds this tap
                self._fail(err)

    def feed_server(self, data: bytes) -> None:
        """Bytes the upstream sent (already forwarded to the client)."""
        if self.failed_reason is None:
            try:
                self.server_reader.feed(data)
            except Exception as err:
                self._fail(err)

    def close(self, reason: str = "connection closed") -> None:
        """The connection ended: streams still open end without a status."""
        if self.failed_reason is not None:
            return
        streams = list(self._streams.items())
        self._streams.clear()
        try:
            for sid, stream in streams:
                stream.grpc_message = reason
                self._finish(sid, stream)
        except Exception as err:
            self._fail(err)

    def _fail(self, err: BaseException) -> None:
        self.failed_reason = (
            err.reason if isinstance(err, (FrameError, MessageError)) else "internal"
        )
        self._streams.clear()
        self.held_sample_bytes = 0
        self._events.tap_failed(self.connection_id, self.failed_reason, err)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def peer_of(self, direction: _Direction) -> _Direction:
        return self._server if direction is self._client else self._client

    # -- from the frame readers ------------------------------------------------------
    def request_headers(
        self, sid: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            if sid <= self.max_client_stream_id:
                return  # trailers of a stream already finished (e.g. after a reset)
            self.max_client_stream_id = sid
            if len(self._streams) >= MAX_TRACKED_STREAMS:
                raise FrameError("too_many_streams", f"{len(self._streams)} open streams")
            path = _header_value(headers, b":path") or b""
            authority = _header_value(headers, b":authority") or b""
            probe = _header_value(headers, b"x-outrider-probe") == b"1"
            stream = _Stream(
                path.decode("utf-8", "replace"),
                authority.decode("utf-8", "replace"),
                probe,
                self._clock(),
            )
            self._streams[sid] = stream
            if stream.infer:
                if not self._sampler.decide():
                    self._events.sample_outcome("skipped")
                elif self.held_sample_bytes + self._limit > self._max_held:
                    # no room for a message at the limit: wait for memory to be released
                    # (unsampled, the stream still yields its model name and version)
                    self._events.sample_outcome("dropped")
                else:
                    encoding = (_header_value(headers, b"grpc-encoding") or b"").decode(
                        "ascii", "replace"
                    )
                    stream.sampled = True
                    stream.req_messages = self._assembler(stream, encoding)
        # client trailers do not exist in gRPC; END_STREAM only half-closes the request

    def response_headers(
        self, sid: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return
        if not stream.response_headers_seen:
            stream.response_headers_seen = True
            if stream.sampled:
                encoding = (_header_value(headers, b"grpc-encoding") or b"").decode(
                    "ascii", "replace"
                )
                stream.resp_messages = self._assembler(stream, encoding)
        status = _header_value(headers, b"grpc-status")
        if status is not None:
            try:
                stream.grpc_status = int(status)
            except ValueError:
                stream.grpc_status = None
            message = _header_value(headers, b"grpc-message")
            if message is not None:
                stream.grpc_message = unquote(message.decode("utf-8", "replace"))
        if end_stream:
            del self._streams[sid]
            self._finish(sid, stream)

    def wants_data(self, sid: int, from_client: bool) -> bool:
        stream = self._streams.get(sid)
        if stream is None:
            return False
        if from_client:
            return stream.req_messages is not None or stream.head_req is not None
        return stream.resp_messages is not None or stream.head_resp is not None

    def data(self, sid: int, chunk: memoryview, from_client: bool) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return
        assembler = stream.req_messages if from_client else stream.resp_messages
        if assembler is not None:
            try:
                assembler.feed(chunk)
            except MessageError:
                self._abandon_sample(stream)
                return
            for _ in range(assembler.take_dropped()):
                self._events.sample_outcome("dropped")
            if from_client:
                self._requests_ready(sid, stream, assembler)
            else:
                self._responses_ready(sid, stream, assembler)
            self._account(stream)
            if self.held_sample_bytes > self._max_held:
                # the stream that outgrows the connection's budget gives its sample up
                self._abandon_sample(stream, "dropped")
            return
        head = stream.head_req if from_client else stream.head_resp
        if head is not None:
            head += chunk[: HEAD_BYTES - len(head)]
            if len(head) >= HEAD_BYTES:
                self._read_head(stream, from_client)

    def data_end(self, sid: int, length: int, end_stream: bool, from_client: bool) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return
        if from_client:
            stream.req_bytes += length
        else:
            stream.resp_bytes += length
            if end_stream:
                # a response ending on DATA (no trailers): unusual for gRPC, still the end
                del self._streams[sid]
                self._finish(sid, stream)

    def reset(self, sid: int, error_code: int, from_client: bool) -> None:
        stream = self._streams.pop(sid, None)
        if stream is None:
            return
        side = "client" if from_client else "server"
        stream.grpc_message = f"RST_STREAM from {side}, error code {error_code}"
        self._finish(sid, stream)

    # -- internals -------------------------------------------------------------------
    def _assembler(self, stream: _Stream, encoding: str) -> MessageAssembler:
        # A unary call carries one message each way; a peer sending more must not make
        # the tap keep them all until the call ends.
        return MessageAssembler(encoding, self._limit, None if stream.streaming else 1)

    def _account(self, stream: _Stream) -> None:
        """Brings the connection's count of held sample bytes up to date for `stream`."""
        held = stream.pending_bytes
        if stream.req_messages is not None:
            held += stream.req_messages.held_bytes
        if stream.resp_messages is not None:
            held += stream.resp_messages.held_bytes
        self.held_sample_bytes += held - stream.held
        stream.held = held

    def _abandon_sample(self, stream: _Stream, outcome: str = "error") -> None:
        """A message could not be kept: the stream goes on unsampled, counted as `outcome`."""
        stream.sampled = False
        stream.req_messages = None
        stream.resp_messages = None
        stream.head_req = None
        stream.head_resp = None
        stream.pending_requests.clear()
        stream.pending_bytes = 0
        self._account(stream)
        self._events.sample_outcome(outcome)

    def _read_head(self, stream: _Stream, from_client: bool) -> None:
        head = stream.head_req if from_client else stream.head_resp
        if from_client:
            stream.head_req = None
        else:
            stream.head_resp = None
        if head is None or len(head) <= 5 or head[0]:
            return  # nothing, or a compressed message: model unknown unless sampled
        body = bytes(head[5 : 5 + int.from_bytes(head[1:5], "big")])
        if from_client:
            stream.model_name, version = model_of_request(body)
            stream.model_version = stream.model_version or version
        else:
            version = version_of_response(body, stream=stream.streaming)
            stream.model_version = version or stream.model_version

    def _requests_ready(self, sid: int, stream: _Stream, assembler: MessageAssembler) -> None:
        if not assembler.messages:
            return
        if stream.head_req is not None:
            stream.head_req = None
            name, version = model_of_request(assembler.messages[0])
            stream.model_name = name
            stream.model_version = stream.model_version or version
        if stream.streaming:
            # only messages completed by this chunk arrive now; older ones are queued already
            now = self._clock()
            for message in assembler.take():
                self._queue_request(stream, now, message)

    def _queue_request(self, stream: _Stream, now: float, message: bytes) -> None:
        pending = stream.pending_requests
        pending.append((now, message))
        stream.pending_bytes += len(message)
        # a server that never answers some requests must not make the stream hoard them
        while len(pending) > 1 and (
            len(pending) > MAX_PENDING_REQUESTS or stream.pending_bytes > MAX_PENDING_REQUEST_BYTES
        ):
            _, dropped = pending.popleft()
            stream.pending_bytes -= len(dropped)
            self._events.sample_outcome("dropped")

    def _responses_ready(self, sid: int, stream: _Stream, assembler: MessageAssembler) -> None:
        if not assembler.messages:
            return
        if stream.head_resp is not None:
            stream.head_resp = None
            version = version_of_response(assembler.messages[0], stream=stream.streaming)
            stream.model_version = version or stream.model_version
        if not stream.streaming:
            return
        if stream.req_messages is None:
            return
        now = self._clock()
        pending = stream.pending_requests
        for response in assembler.take():
            request: bytes | None = None
            started = now
            if pending:
                started, request = pending.popleft()
                stream.pending_bytes -= len(request)
            req_size = 5 + len(request) if request is not None else 0
            resp_size = 5 + len(response)
            stream.req_bytes -= req_size
            stream.resp_bytes -= resp_size
            self._events.observed(
                RpcObservation(
                    connection_id=self.connection_id,
                    stream_id=sid,
                    method=stream.method,
                    authority=stream.authority,
                    start_time=started,
                    end_time=now,
                    request_bytes=req_size,
                    response_bytes=resp_size,
                    grpc_status=None,
                    grpc_message="",
                    probe=stream.probe,
                    sampled=True,
                    request_messages=(request,) if request is not None else (),
                    response_messages=(response,),
                    model_name=stream.model_name,
                    model_version=stream.model_version,
                ),
                False,
            )

    def _finish(self, sid: int, stream: _Stream) -> None:
        # its payloads leave with the observation
        self.held_sample_bytes -= stream.held
        stream.held = 0
        if stream.head_req is not None:
            self._read_head(stream, True)
        if stream.head_resp is not None:
            self._read_head(stream, False)
        sampled = stream.sampled
        req_msgs: tuple[bytes, ...] = ()
        resp_msgs: tuple[bytes, ...] = ()
        if sampled:
            if stream.req_messages is not None:
                # streaming requests still unanswered, or the messages of a unary call
                unanswered = [message for _, message in stream.pending_requests]
                req_msgs = (*unanswered, *stream.req_messages.take())
            if stream.resp_messages is not None:
                resp_msgs = tuple(stream.resp_messages.take())
        self._events.observed(
            RpcObservation(
                connection_id=self.connection_id,
                stream_id=sid,
                method=stream.method,
                authority=stream.authority,
                start_time=stream.start_time,
                end_time=self._clock(),
                request_bytes=stream.req_bytes,
                response_bytes=stream.resp_bytes,
                grpc_status=stream.grpc_status,
                grpc_message=stream.grpc_message,
                probe=stream.probe,
                sampled=sampled,
                request_messages=req_msgs,
                response_messages=resp_msgs,
                model_name=stream.model_name,
                model_version=stream.model_version,
            ),
            True,
        )
