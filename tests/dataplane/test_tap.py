"""The passive tap on hand-built HTTP/2 sessions: exact observations, isolation of errors."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from service.dataplane.observation import RpcObservation
from service.dataplane.sampling import Sampler
from service.dataplane.tap import ConnectionTap
from service.oip import open_inference_pb2 as pb
from tests.dataplane import frames as f

INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


@dataclass
class Recorder:
    """TapEvents that keeps everything."""

    observations: list[tuple[RpcObservation, bool]] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def observed(self, obs: RpcObservation, rpc_end: bool) -> None:
        self.observations.append((obs, rpc_end))

    def sample_outcome(self, outcome: str) -> None:
        self.outcomes.append(outcome)

    def tap_failed(self, connection_id: int, reason: str, error: BaseException) -> None:
        self.failures.append(reason)


def new_tap(rate: float = 1.0, limit: int = 1 << 20) -> tuple[ConnectionTap, Recorder]:
    events = Recorder()
    tap = ConnectionTap(7, events, Sampler(rate, 1e9, seed=0), max_message_bytes=limit)
    return tap, events


def timeless(obs: RpcObservation) -> tuple[object, ...]:
    return (
        obs.connection_id, obs.stream_id, obs.method, obs.authority, obs.request_bytes,
        obs.response_bytes, obs.grpc_status, obs.grpc_message, obs.probe, obs.sampled,
        obs.request_messages, obs.response_messages, obs.model_name, obs.model_version,
    )  # fmt: skip


REQUEST = pb.ModelInferRequest(model_name="demo", model_version="2", id="r1").SerializeToString()
RESPONSE = pb.ModelInferResponse(model_name="demo", model_version="3", id="r1").SerializeToString()
STREAM_RESPONSE = pb.ModelStreamInferResponse(
    infer_response=pb.ModelInferResponse(model_name="demo", model_version="4")
).SerializeToString()


def synthetic_session() -> list[tuple[bool, bytes]]:
    """(from_client, bytes) events of one connection exercising the frame features."""
    client = hpack.Encoder()
    server = hpack.Encoder()
    events: list[tuple[bool, bytes]] = []
    # client allows a larger table for the server's header blocks; server shrinks its own
    events.append((True, f.PREFACE + f.settings(header_table_size=8192)))
    events.append((False, f.settings(header_table_size=256)))
    server.header_table_size = 8192
    client.header_table_size = 256
    # stream 1: padded + priority + CONTINUATION request, message split over padded DATA
    body = f.grpc_message(REQUEST)
    events.append(
        (True, f.headers(client, 1, f.request_headers(INFER, **{"grpc-encoding": "identity"}),
                         pad=3, priority=True, split=10)
         + f.data(1, body[:7], pad=2) + f.data(1, body[7:], end_stream=True))
    )  # fmt: skip
    compressed = gzip.compress(RESPONSE)
    events.append(
        (False, f.headers(server, 1, [(":status", "200"), ("content-type", "application/grpc"),
                                      ("grpc-encoding", "gzip")])
         + f.data(1, f.grpc_message(compressed, compressed=True))
         + f.headers(server, 1, [("grpc-status", "0")], end_stream=True))
    )  # fmt: skip
    # frames the tap skips by length: PING, WINDOW_UPDATE, PRIORITY, an unknown type
    events.append(
        (True, f.frame(0x6, 0, 0, b"pingpong") + f.frame(0x8, 0, 0, b"\x00\x01\x00\x00")
         + f.frame(0x2, 0, 3, b"\x00\x00\x00\x00\x10") + f.frame(0xFA, 0, 0, b"x" * 300))
    )  # fmt: skip
    events.append((False, f.frame(0x6, 0x1, 0, b"pingpong") + f.frame(0xFA, 0x5, 1, b"y" * 70)))
    # stream 3: a probe answered trailers-only with NOT_FOUND
    events.append(
        (True, f.headers(client, 3, f.request_headers(INFER, **{"x-outrider-probe": "1"}))
         + f.data(3, f.grpc_message(REQUEST), end_stream=True))
    )  # fmt: skip
    events.append(
        (False, f.headers(server, 3, [(":status", "200"), ("grpc-status", "5"),
                                      ("grpc-message", "model%20%27x%27%20not%20found")],
                          end_stream=True))
    )  # fmt: skip
    # stream 5: streaming, two exchanges, then the client resets it
    events.append((True, f.headers(client, 5, f.request_headers(STREAM))))
    for _ in range(2):
        events.append((True, f.data(5, f.grpc_message(REQUEST))))
        events.append(
            (False, (f.headers(server, 5, [(":status", "200")]) if _ == 0 else b"")
             + f.data(5, f.grpc_message(STREAM_RESPONSE)))
        )  # fmt: skip
    events.append((True, f.data(5, f.grpc_message(REQUEST)) + f.rst_stream(5, 8)))
    return events


def feed(tap: ConnectionTap, events: list[tuple[bool, bytes]]) -> None:
    for from_client, chunk in events:
        (tap.feed_client if from_client else tap.feed_server)(chunk)


def test_synthetic_session_yields_exact_observations() -> None:
    tap, events = new_tap()
    feed(tap, synthetic_session())
    assert events.failures == []
    got = [(timeless(o), end) for o, end in events.observations]
    req, resp, sresp = (REQUEST,), (RESPONSE,), (STREAM_RESPONSE,)
    n, m, s = len(REQUEST) + 5, len(RESPONSE), len(STREAM_RESPONSE) + 5
    assert got == [
        ((7, 1, INFER, "model:8001", n, len(gzip.compress(RESPONSE)) + 5, 0, "", False, True,
          req, resp, "demo", "3"), True),
        ((7, 3, INFER, "model:8001", n, 0, 5, "model 'x' not found", True, True, req, (),
          "demo", "2"), True),
        ((7, 5, STREAM, "model:8001", n, s, None, "", False, True, req, sresp, "demo", "4"), False),
        ((7, 5, STREAM, "model:8001", n, s, None, "", False, True, req, sresp, "demo", "4"), False),
        ((7, 5, STREAM, "model:8001", n, 0, None, "RST_STREAM from client, error code 8", False,
          True, req, (), "demo", "4"), True),
    ]  # fmt: skip
    assert m > 0
    assert tap.open_streams == 0


def test_unsampled_streams_still_yield_model_and_version() -> None:
    tap, events = new_tap(rate=0.0)
    feed(tap, synthetic_session())
    got = [(o.stream_id, o.sampled, o.request_messages, o.model_name, o.model_version)
           for o, end in events.observations]  # fmt: skip
    # stream 1's response is gzip-compressed, so unsampled its version stays the request's
    assert got == [(1, False, (), "demo", "2"), (3, False, (), "demo", "2"),
                   (5, False, (), "demo", "4")]  # fmt: skip
    assert events.outcomes == ["skipped", "skipped", "skipped"]


def test_oversized_message_abandons_the_sample_not_the_connection() -> None:
    tap, events = new_tap(limit=8)
    feed(tap, synthetic_session())
    assert events.failures == []
    assert events.outcomes.count("error") == 3
    assert [o.sampled for o, _ in events.observations] == [False, False, False]
    assert [o.grpc_status for o, _ in events.observations] == [0, 5, None]


def test_decompression_bomb_is_capped() -> None:
    client, server = hpack.Encoder(), hpack.Encoder()
    bomb = gzip.compress(b"\x00" * (1 << 22))
    tap, events = new_tap(limit=1 << 20)
    feed(tap, [
        (True, f.PREFACE + f.settings()
         + f.headers(client, 1, f.request_headers(INFER, **{"grpc-encoding": "gzip"}))
         + f.data(1, f.grpc_message(bomb, compressed=True), end_stream=True)),
        (False, f.settings() + f.headers(server, 1, [(":status", "200"), ("grpc-status", "0")],
                                         end_stream=True)),
    ])  # fmt: skip
    assert events.outcomes == ["error"]
    assert [(o.sampled, o.grpc_status) for o, _ in events.observations] == [(False, 0)]


@st.composite
def chunkings(draw: st.DrawFn) -> list[tuple[bool, bytes]]:
    """The synthetic session with every event cut at random points."""
    out: list[tuple[bool, bytes]] = []
    for from_client, chunk in synthetic_session():
        cuts = sorted(draw(st.lists(st.integers(0, len(chunk)), max_size=6)))
        start = 0
        for cut in [*cuts, len(chunk)]:
            out.append((from_client, chunk[start:cut]))
            start = cut
    return out


@settings(max_examples=150, deadline=None)
@given(chunkings())
def test_every_chunking_yields_the_same_observations(events: list[tuple[bool, bytes]]) -> None:
    whole, expected = new_tap()
    feed(whole, synthetic_session())
    tap, got = new_tap()
    feed(tap, events)
    assert [(timeless(o), e) for o, e in got.observations] == [
        (timeless(o), e) for o, e in expected.observations
    ]
    assert tap.held_sample_bytes == 0  # every payload was released with its stream


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=12))
def test_random_bytes_never_raise(events: list[tuple[bool, bytes]]) -> None:
    tap, recorder = new_tap()
    feed(tap, events)
    tap.close()
    assert len(recorder.failures) <= 1
    assert tap.held_sample_bytes == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=64))
def test_truncated_and_corrupted_sessions_never_raise(cut: int, junk: bytes) -> None:
    session = b"".join(c for fc, c in synthetic_session() if fc)
    cut = cut % len(session)
    tap, recorder = new_tap()
    tap.feed_client(session[:cut] + junk + session[cut:])
    tap.feed_client(session[:cut])
    tap.close()
    assert len(recorder.failures) <= 1


def test_bogus_hpack_disables_the_tap_once() -> None:
    tap, events = new_tap()
    block = b"\xff\xff\xff\xff\xff\xff"  # an index far beyond any table
    tap.feed_client(f.PREFACE + f.frame(1, 0x4, 1, block))
    tap.feed_client(f.frame(1, 0x4, 3, block))
    assert events.failures == ["hpack"]
    assert tap.failed_reason == "hpack"


def test_header_table_size_setting_is_honoured() -> None:
    """Without reading the client's SETTINGS the server's table-size update would be refused."""
    server = hpack.Encoder()
    server.header_table_size = 65536
    tap, events = new_tap()
    request = f.headers(hpack.Encoder(), 1, f.request_headers(INFER), end_stream=True)
    tap.feed_client(f.PREFACE + f.settings(header_table_size=65536) + request)
    trailers = [(":status", "200"), ("grpc-status", "0")]
    tap.feed_server(f.settings() + f.headers(server, 1, trailers, end_stream=True))
    assert events.failures == []
    assert [o.grpc_status for o, _ in events.observations] == [0]


def test_table_neutral_blocks() -> None:
    from service.dataplane.tap import table_neutral

    assert table_neutral(bytes.fromhex("c4c38386c2c1c0bfbe"))  # indexed only
    assert table_neutral(bytes.fromhex("be000c677270632d6d65737361676500"))  # literal, not indexed
    assert not table_neutral(bytes.fromhex("400b677270632d7374617475730130"))  # incremental
    assert not table_neutral(bytes.fromhex("3fe11f"))  # table size update
    assert not table_neutral(bytes.fromhex("000c6772"))  # truncated


header_lists = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from([":path", "grpc-timeout", "x-a", "grpc-status", "content-type"]),
            st.sampled_from(["1", "30S", "/a/B", "application/grpc", "v" * 40]),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(header_lists, st.integers(0, 3))
def test_cached_decoding_matches_hpack(
    lists: list[list[tuple[str, str, bool]]], repeat: int
) -> None:
    """The block cache never returns headers different from a fresh hpack decode."""
    encoder = hpack.Encoder()
    reference = hpack.Decoder()
    tap, _ = new_tap()
    direction = tap._client  # noqa: SLF001 (the client direction)
    for headers in lists * (repeat + 1):
        fields = [
            hpack.NeverIndexedHeaderTuple(k, v) if sensitive else (k, v)
            for k, v, sensitive in headers
        ]
        block = encoder.encode(fields)
        assert direction._decode(block) == reference.decode(block, raw=True)  # noqa: SLF001
