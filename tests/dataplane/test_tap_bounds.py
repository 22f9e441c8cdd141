"""The tap's time pairing of streaming messages and the memory a peer can make it hold."""

from __future__ import annotations

import tracemalloc

import hpack
import pytest

from service.dataplane.http2_frames import GOAWAY, HEADERS, RST_STREAM, SETTINGS
from service.dataplane.sampling import Sampler
from service.dataplane.tap import (
    _MAX_CACHE_COST,
    MAX_HELD_SAMPLE_BYTES,
    MAX_HPACK_TABLE_SIZE,
    MAX_PENDING_REQUEST_BYTES,
    MAX_PENDING_REQUESTS,
    ConnectionTap,
)
from service.oip import open_inference_pb2 as pb
from tests.dataplane import frames as f
from tests.dataplane.test_tap import INFER, STREAM, STREAM_RESPONSE, Recorder


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(i: int) -> bytes:
    return pb.ModelInferRequest(model_name="demo", id=f"r{i}").SerializeToString()


def open_stream(limit: int = 1 << 20) -> tuple[ConnectionTap, Recorder, FakeClock]:
    """A tap with one sampled ModelStreamInfer stream (id 1) whose response headers came."""
    events, clock = Recorder(), FakeClock()
    tap = ConnectionTap(7, events, Sampler(1.0, 1e9, seed=0), max_message_bytes=limit, clock=clock)
    tap.feed_client(
        f.PREFACE + f.settings() + f.headers(hpack.Encoder(), 1, f.request_headers(STREAM))
    )
    tap.feed_server(f.settings() + f.headers(hpack.Encoder(), 1, [(":status", "200")]))
    return tap, events, clock


def in_stream(events: Recorder) -> list[tuple[tuple[bytes, ...], float]]:
    """(request messages, duration) of each in-stream observation."""
    return [
        (obs.request_messages, obs.end_time - obs.start_time)
        for obs, end in events.observations
        if not end
    ]


def test_each_response_gets_its_own_request_time() -> None:
    """The client stays one request ahead: every pairing keeps its own arrival time."""
    tap, events, clock = open_stream()
    stream = tap._streams[1]  # noqa: SLF001
    tap.feed_client(f.data(1, f.grpc_message(request(0))))
    expected = []
    for i in range(200):
        gap = 0.001 * (i % 7 + 1)
        clock.now = 1000.0 + 0.5 * (i + 1)  # request k arrives at 1000 + 0.5 k
        tap.feed_client(f.data(1, f.grpc_message(request(i + 1))))
        clock.now += gap
        tap.feed_server(f.data(1, f.grpc_message(STREAM_RESPONSE)))
        # response i answers request i, sent half a second before request i + 1
        expected.append(((request(i),), 0.5 + gap))
        assert len(stream.pending_requests) == 1
        assert stream.pending_bytes == len(request(i + 1))
        assert tap.held_sample_bytes == stream.pending_bytes  # counted in the budget too
    got = in_stream(events)
    assert [r for r, _ in got] == [r for r, _ in expected]
    assert [d for _, d in got] == pytest.approx([d for _, d in expected])


def test_messages_completed_in_one_chunk_share_its_time() -> None:
    tap, events, clock = open_stream()
    stream = tap._streams[1]  # noqa: SLF001
    tap.feed_client(f.data(1, f.grpc_message(request(0)) + f.grpc_message(request(1))))
    clock.now += 1.0
    partial = f.data(1, f.grpc_message(request(2)))
    tap.feed_client(partial[:20])  # request 2 is not complete: no time recorded for it
    clock.now += 1.0
    tap.feed_client(partial[20:])
    assert [t for t, _ in stream.pending_requests] == [1000.0, 1000.0, 1002.0]
    clock.now += 1.0
    tap.feed_server(f.data(1, f.grpc_message(STREAM_RESPONSE) * 3))
    assert in_stream(events) == [((request(0),), 3.0), ((request(1),), 3.0), ((request(2),), 1.0)]
    assert not stream.pending_requests
    assert stream.pending_bytes == 0


def test_unanswered_requests_are_capped_by_count() -> None:
    tap, events, _ = open_stream()
    stream = tap._streams[1]  # noqa: SLF001
    extra = 10
    for i in range(MAX_PENDING_REQUESTS + extra):
        tap.feed_client(f.data(1, f.grpc_message(request(i))))
        assert len(stream.pending_requests) == min(i + 1, MAX_PENDING_REQUESTS)
    assert events.outcomes == ["dropped"] * extra
    # the oldest were dropped: the next response pairs with the oldest kept
    tap.feed_server(f.data(1, f.grpc_message(STREAM_RESPONSE)))
    assert [r for r, _ in in_stream(events)] == [(request(extra),)]
    tap.close()
    last, rpc_end = events.observations[-1]
    assert rpc_end
    assert last.request_messages == tuple(
        request(i) for i in range(extra + 1, MAX_PENDING_REQUESTS + extra)
    )
    assert events.failures == []


def test_unanswered_requests_are_capped_by_bytes() -> None:
    big = MAX_PENDING_REQUEST_BYTES // 3 + 1  # three of them are over the byte cap
    tap, events, _ = open_stream(limit=2 * MAX_PENDING_REQUEST_BYTES)
    stream = tap._streams[1]  # noqa: SLF001
    for i in range(5):
        tap.feed_client(f.data(1, f.grpc_message(bytes([i]) * big)))
    assert [m[0] for _, m in stream.pending_requests] == [3, 4]
    assert stream.pending_bytes == 2 * big
    assert events.outcomes == ["dropped"] * 3
    # a single message beyond the byte cap (but within the message limit) is still kept
    tap.feed_client(f.data(1, f.grpc_message(b"\x07" * (MAX_PENDING_REQUEST_BYTES + 1))))
    assert [m[0] for _, m in stream.pending_requests] == [7]
    assert stream.pending_bytes == MAX_PENDING_REQUEST_BYTES + 1
    assert tap.held_sample_bytes == stream.pending_bytes
    assert events.outcomes == ["dropped"] * 5
    assert events.failures == []


def literal_not_indexed(name: bytes, value: bytes) -> bytes:
    """One HPACK literal field without indexing, new name, raw strings (RFC 7541 6.2.2)."""

    def string(raw: bytes) -> bytes:
        n = len(raw)
        if n < 127:
            return bytes([n]) + raw
        out = bytearray([127])
        n -= 127
        while n >= 128:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out) + raw

    return b"\x00" + string(name) + string(value)


def test_large_header_blocks_are_not_cached() -> None:
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(0.0, 1e9, seed=0), max_message_bytes=1 << 20)
    encoder = hpack.Encoder()
    tap.feed_client(f.PREFACE + f.settings() + f.headers(encoder, 1, f.request_headers(INFER)))
    fields = encoder.encode(f.request_headers(INFER))  # now all indexed: table neutral
    tracemalloc.start()
    try:
        for i in range(256):
            pad = literal_not_indexed(b"x-pad", b"%05d" % i + b"v" * 60_000)
            tap.feed_client(f.frame(1, 0x4, 3 + 2 * i, fields + pad))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    direction = tap._client  # noqa: SLF001
    assert direction._neutral_blocks == {}  # noqa: SLF001
    assert direction.cache_cost == 0
    assert held < 2_000_000  # 256 streams and their small state; the blocks were 15 MB
    # small repeated blocks are still cached, within the budget
    for i in range(2000):
        tap.feed_client(
            f.frame(1, 0x4, 1000 + 2 * i, fields + literal_not_indexed(b"x-i", b"%d" % i))
        )
    assert 0 < direction.cache_cost <= _MAX_CACHE_COST
    assert len(direction._neutral_blocks) > 10  # noqa: SLF001
    assert events.failures == []


def test_ignored_frames_are_skipped_without_buffering() -> None:
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(1.0, 1e9, seed=0), max_message_bytes=1 << 20)
    huge = f.frame(0xFA, 0, 0, b"z" * ((1 << 24) - 1))  # unknown type, largest frame
    ping = f.frame(0x6, 0, 0, b"12345678")
    call = f.headers(hpack.Encoder(), 1, f.request_headers(INFER), end_stream=True)
    session = f.PREFACE + f.settings() + huge + ping + huge + call
    tracemalloc.start()
    try:
        for start in range(0, len(session), 1 << 16):
            tap.feed_client(session[start : start + (1 << 16)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert events.failures == []
    assert tap.open_streams == 1
    assert tap.client_reader.at_frame_boundary


@pytest.mark.parametrize("ftype", [SETTINGS, GOAWAY, RST_STREAM])
def test_oversized_control_frame_disables_the_tap(ftype: int) -> None:
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(1.0, 1e9, seed=0), max_message_bytes=1 << 20)
    frame = f.frame(ftype, 0, 1 if ftype == RST_STREAM else 0, b"\x00" * (1 << 20))
    tap.feed_client(f.PREFACE + frame[:9])  # refused from its header, nothing buffered
    assert events.failures == ["oversized_control"]
    tap.feed_client(frame[9:])
    assert events.failures == ["oversized_control"]


def test_hpack_table_beyond_the_cap_disables_the_tap() -> None:
    """A server advertising a huge table must not let the client grow the tap's table."""
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(0.0, 1e9, seed=0), max_message_bytes=1 << 20)
    tap.feed_client(f.PREFACE + f.settings())
    tap.feed_server(f.settings(header_table_size=(1 << 32) - 1))
    encoder = hpack.Encoder()
    encoder.header_table_size = 32 << 20  # announced in the first block: above the cap
    requests = [  # each indexes a new 60 kB header (no Huffman coding: it is slow here)
        f.frame(HEADERS, 0x5, 1 + 2 * i, encoder.encode(fields, huffman=False))
        for i in range(300)
        for fields in [[*f.request_headers(INFER), (f"x-k{i}", "v" * 60_000)]]
    ]
    tracemalloc.start()
    try:
        for frame in requests:
            tap.feed_client(frame)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events.failures == ["hpack_table_too_large"]
    assert held < 2_000_000  # the encoder's table holds 18 MB of entries
    assert tap._client.decoder.header_table_size <= MAX_HPACK_TABLE_SIZE  # noqa: SLF001


def test_hpack_table_up_to_the_cap_is_decoded() -> None:
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(0.0, 1e9, seed=0), max_message_bytes=1 << 20)
    tap.feed_client(f.PREFACE + f.settings())
    tap.feed_server(f.settings(header_table_size=(1 << 32) - 1))
    encoder = hpack.Encoder()
    encoder.header_table_size = MAX_HPACK_TABLE_SIZE
    for i in range(40):  # fills and cycles the capped table, every entry still referenced
        fields = [*f.request_headers(INFER), ("x-k", f"{i % 3}" * 3000)]
        block = encoder.encode(fields, huffman=False)
        tap.feed_client(f.frame(HEADERS, 0x5, 1 + 2 * i, block))
    assert events.failures == []
    assert tap.open_streams == 40


def test_a_unary_call_keeps_only_its_first_messages() -> None:
    """Extra messages on ModelInfer are counted 'dropped', not kept until the call ends."""
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(1.0, 1e9, seed=0), max_message_bytes=1 << 20)
    tap.feed_client(
        f.PREFACE + f.settings() + f.headers(hpack.Encoder(), 1, f.request_headers(INFER))
    )
    tap.feed_server(f.settings() + f.headers(hpack.Encoder(), 1, [(":status", "200")]))
    first, extra = request(0), b"e" * 10_000
    message = f.grpc_message(extra)
    tap.feed_client(f.data(1, f.grpc_message(first) + message[:3]))  # an extra begins
    tracemalloc.start()
    try:
        tap.feed_client(f.data(1, message[3:] + message * 2))  # 1 split + 2 whole extras
        for _ in range(997):
            tap.feed_client(f.data(1, message))
            tap.feed_server(f.data(1, message))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1_000_000  # the extras were 20 MB
    assert events.outcomes == ["dropped"] * (1000 + 996)
    tap.feed_server(f.headers(hpack.Encoder(), 1, [("grpc-status", "0")], end_stream=True))
    obs, rpc_end = events.observations[-1]
    assert rpc_end
    assert obs.request_messages == (first,)
    assert obs.response_messages == (extra,)
    assert obs.request_bytes == 5 + len(first) + 1000 * len(message)  # still all counted
    assert obs.response_bytes == 997 * len(message)
    assert events.failures == []


@pytest.mark.parametrize("chunk", [1, 4, 7, 1 << 16])
def test_extra_unary_messages_are_passed_over_in_any_chunking(chunk: int) -> None:
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(1.0, 1e9, seed=0), max_message_bytes=1 << 10)
    extras = f.grpc_message(b"x" * 5000) + f.grpc_message(b"") + f.grpc_message(b"y" * 9)
    session = (
        f.PREFACE
        + f.settings()
        + f.headers(hpack.Encoder(), 1, f.request_headers(INFER))
        + f.data(1, f.grpc_message(request(0)) + extras, end_stream=True)
    )
    for start in range(0, len(session), chunk):
        tap.feed_client(session[start : start + chunk])
    tap.close()
    # the extra 5000-byte message is over the limit: passed over, not an error
    assert events.outcomes == ["dropped"] * 3
    obs, _ = events.observations[-1]
    assert obs.request_messages == (request(0),)
    assert obs.request_bytes == 5 + len(request(0)) + len(extras)
    assert events.failures == []


def budget_tap() -> tuple[ConnectionTap, Recorder, hpack.Encoder]:
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(1.0, 1e9, seed=0), max_message_bytes=4 << 20)
    tap.feed_client(f.PREFACE + f.settings())
    tap.feed_server(f.settings())
    return tap, events, hpack.Encoder()


def infer_message(size: int) -> bytes:
    """A framed ModelInferRequest for model "demo" of about `size` bytes."""
    payload = b"m" * (size - 32)
    body = pb.ModelInferRequest(model_name="demo", raw_input_contents=[payload])
    return f.grpc_message(body.SerializeToString())


def test_new_samples_wait_for_room_in_the_connection_budget() -> None:
    """Many calls each within their own limits cannot together exceed the budget."""
    tap, events, encoder = budget_tap()
    message = infer_message(1 << 20)
    streams = 2 * MAX_HELD_SAMPLE_BYTES // len(message)
    tracemalloc.start()
    try:
        for i in range(streams):
            sid = 1 + 2 * i
            tap.feed_client(f.headers(encoder, sid, f.request_headers(INFER)))
            tap.feed_client(f.data(sid, message))
            assert tap.held_sample_bytes <= MAX_HELD_SAMPLE_BYTES
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < MAX_HELD_SAMPLE_BYTES + (4 << 20)  # without the budget: twice as much
    kept = sum(1 for s in tap._streams.values() if s.sampled)  # noqa: SLF001
    assert 0 < kept < streams
    assert events.outcomes == ["dropped"] * (streams - kept)
    # the calls end: their memory is released and new calls are sampled again
    trailers = [(":status", "200"), ("grpc-status", "0")]
    server = hpack.Encoder()
    for i in range(streams):
        tap.feed_server(f.headers(server, 1 + 2 * i, trailers, end_stream=True))
    assert tap.held_sample_bytes == 0
    assert sum(obs.sampled for obs, _ in events.observations) == kept
    assert {obs.model_name for obs, _ in events.observations} == {"demo"}
    sid = 1 + 2 * streams
    tap.feed_client(f.headers(encoder, sid, f.request_headers(INFER)) + f.data(sid, message))
    assert tap._streams[sid].sampled  # noqa: SLF001
    assert tap.held_sample_bytes == len(message) - 5
    assert events.failures == []


def test_a_stream_outgrowing_the_budget_gives_its_sample_up() -> None:
    tap, events, encoder = budget_tap()
    message = infer_message(4 << 20)  # at the message limit
    streams = MAX_HELD_SAMPLE_BYTES // len(message) + 2
    for i in range(streams):  # all sampled: nothing is held yet
        tap.feed_client(f.headers(encoder, 1 + 2 * i, f.request_headers(INFER)))
    assert events.outcomes == []
    for start in range(0, len(message), 1 << 20):  # the messages grow side by side
        for i in range(streams):
            tap.feed_client(f.data(1 + 2 * i, message[start : start + (1 << 20)]))
            assert tap.held_sample_bytes <= MAX_HELD_SAMPLE_BYTES
    kept = sum(1 for s in tap._streams.values() if s.sampled)  # noqa: SLF001
    assert kept == streams - 2
    assert events.outcomes == ["dropped"] * 2
    assert tap.held_sample_bytes == kept * (len(message) - 5)
    tap.close()
    assert tap.held_sample_bytes == 0
    assert events.failures == []
