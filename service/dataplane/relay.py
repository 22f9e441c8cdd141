"""The data plane's L4 relay: client connections forwarded byte for byte to an upstream.

Bytes are written to the other side as they arrive, and only then is a copy handed to the
connection's passive tap. The relay never alters the byte stream, with one exception:
when a connection is drained (fallback switch or shutdown) and the tap knows the
server-to-client direction sits at a frame boundary, the relay tells the client
`GOAWAY(2^31-1, NO_ERROR)`, the RFC 7540 section 6.8 "shutdown imminent" notice, so the
client opens no new streams there and reconnects (to the new upstream) for its next call.
The connection is closed once the tap sees no open streams on it. Without a tap the relay
cannot see streams, so it closes the connection only after it has been silent for the
whole grace. Either way a drain ends at its deadline (the grace after it began): a client
may hold a stream such as ModelStreamInfer open for as long as it likes.

A tap error switches the tap off for that connection (counted by reason, logged once);
forwarding goes on untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import time
from typing import Literal, cast

from prometheus_client import CollectorRegistry

from service.dataplane.dispatch import ObservationDispatcher
from service.dataplane.grpc_messages import MessageError
from service.dataplane.http2_frames import FrameError, goaway_frame
from service.dataplane.metrics import DataplaneMetrics
from service.dataplane.observation import ObservationSink
from service.dataplane.sampling import Sampler
from service.dataplane.settings import DataplaneSettings, UpstreamSettings
from service.dataplane.tap import ConnectionTap
from service.dataplane.tls import listener_ssl_context, upstream_ssl_context
from service.label_bounds import LabelPolicy
from service.log_throttle import LogThrottle

log = logging.getLogger(__name__)

UpstreamName = Literal["primary", "fallback"]
_GOAWAY_SHUTDOWN = goaway_frame(0x7FFFFFFF)
_DRAIN_POLL_SECONDS = 0.05
_UNREACHABLE_LOG_SECONDS = 10.0


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _tap_failure_reason(err: BaseException) -> str:
    if isinstance(err, (FrameError, MessageError)):
        return err.reason
    return "internal"


class _Upstream:
    """A resolved upstream: address plus the TLS context toward it."""

    def __init__(self, name: UpstreamName, settings: UpstreamSettings) -> None:
        self.name = name
        self.host = settings.host
        self.port = settings.port
        self.ssl: ssl.SSLContext | None = None
        self.server_hostname: str | None = None
        if settings.tls is not None:
            self.ssl = upstream_ssl_context(settings.tls)
            self.server_hostname = settings.tls.server_name or settings.host


class _UpstreamSide(asyncio.Protocol):
    """The relay's connection toward the upstream, paired with one client connection."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn.upstream_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.conn.from_upstream(data)

    def eof_received(self) -> bool:
        return self.conn.upstream_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.upstream_lost(exc)

    def pause_writing(self) -> None:
        self.conn.client_pause(True)

    def resume_writing(self) -> None:
        self.conn.client_pause(False)


class _Connection(asyncio.Protocol):
    """One client connection and its upstream connection (the client-side protocol)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.id = next(relay._ids)
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.upstream_name: UpstreamName = relay.upstream
        self.tap = relay._new_tap(self.id)
        self._bytes = relay.metrics.relayed_bytes
        self._client_eof = False
        self._upstream_eof = False
        self._client_paused_by = 0  # client reading paused: 1 connecting, 2 backpressure
        self._upstream_paused = False
        self._active = True  # bytes seen since the last idle or drain check
        self._quiet_since = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._closed = False
        self._pending: list[bytes] = []
        self.draining = False
        self._goaway_sent = False
        self._drain_started = 0.0
        self._drain_grace = 0.0
        self._drain_deadline = 0.0
        self._drain_timer: asyncio.TimerHandle | None = None

    # -- client side ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        client = cast(asyncio.Transport, transport)
        self.client = client
        relay = self.relay
        if relay._accepting is False or len(relay._connections) >= relay.settings.max_connections:
            reason = "shutting_down" if relay._accepting is False else "max_connections"
            relay.metrics.connections_rejected.labels(reason=reason).inc()
            self._closed = True
            transport.close()
            return
        relay._connections.add(self)
        relay.metrics.connections_active.inc()
        _set_nodelay(transport)
        client.set_write_buffer_limits(high=relay.settings.write_buffer_high_water_bytes)
        # Hold the client's bytes in the kernel until the upstream is there.
        client.pause_reading()
        self._client_paused_by |= 1
        self._connect_task = asyncio.get_running_loop().create_task(self._connect())
        self._arm_idle_timer()

    async def _connect(self) -> None:
        relay = self.relay
        target = relay._upstreams[self.upstream_name]
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: _UpstreamSide(self),
                    target.host,
                    target.port,
                    ssl=target.ssl,
                    server_hostname=target.server_hostname,
                ),
                relay.settings.connect_timeout_seconds,
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:
            reason = _connect_failure_reason(err)
            relay.metrics.upstream_errors.labels(reason=reason).inc()
            suppressed = relay.unreachable_log.due(f"{target.name}/{reason}")
            if suppressed is not None:
                log.warning(
                    "upstream %s (%s:%s) unreachable: %s; closing client connection %d "
                    "(%d more such closes not logged in the last %.0f s)",
                    target.name,
                    target.host,
                    target.port,
                    reason,
                    self.id,
                    suppressed,
                    _UNREACHABLE_LOG_SECONDS,
                )
            self._close_both()

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            # Reading is paused until the upstream is connected, but an event loop may
            # still hand over what it had already read: keep it, in order.
            self._pending.append(data)
        else:
            upstream.write(data)
        self._active = True
        self._bytes.request += len(data)
        tap = self.tap
        if tap is not None:
            try:
                tap.feed_client(data)
            except Exception as err:
                self._tap_failed_with(err)

    def eof_received(self) -> bool:
        self._client_eof = True
        upstream = self.upstream
        if upstream is None and not self._closed:
            return True  # passed on once the upstream is connected
        if upstream is not None and upstream.can_write_eof() and not self._upstream_eof:
            upstream.write_eof()
            return True
        self._close_both()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_both()

    def pause_writing(self) -> None:
        if self.upstream is not None and not self._upstream_paused:
            self._upstream_paused = True
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self._upstream_paused:
            self._upstream_paused = False
            self.upstream.resume_reading()

    # -- upstream side -------------------------------------------------------------
    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self._closed:
            transport.close()
            return
        self.upstream = transport
        _set_nodelay(transport)
        transport.set_write_buffer_limits(high=self.relay.settings.write_buffer_high_water_bytes)
        if self._pending:
            transport.write(b"".join(self._pending))
            self._pending.clear()
        if self._client_eof:
            if not transport.can_write_eof():
                self._close_both()
                return
            transport.write_eof()
        self.client_pause(False, bit=1)

    def from_upstream(self, data: bytes) -> None:
        client = self.client
        if client is None:
            return
        client.write(data)
        self._active = True
        self._bytes.response += len(data)
        tap = self.tap
        if tap is not None:
            try:
                tap.feed_server(data)
            except Exception as err:
                self._tap_failed_with(err)
        if self.draining and not self._goaway_sent:
            self._try_goaway()

    def upstream_eof(self) -> bool:
        self._upstream_eof = True
        client = self.client
        if client is not None and client.can_write_eof() and not self._client_eof:
            client.write_eof()
            return True
        self._close_both()
        return False

    def upstream_lost(self, exc: Exception | None) -> None:
        tap = self.tap
        if tap is not None and tap.open_streams:
            reason: str | None = "lost_with_open_streams"
        else:
            reason = "connection_lost" if exc is not None else None
        if reason is not None and not self._closed:
            self.relay.metrics.upstream_errors.labels(reason=reason).inc()
        self._close_both()

    def client_pause(self, paused: bool, bit: int = 2) -> None:
        client = self.client
        if client is None or self._closed:
            return
        before = self._client_paused_by
        self._client_paused_by = before | bit if paused else before & ~bit
        if before and not self._client_paused_by:
            client.resume_reading()
        elif not before and self._client_paused_by:
            client.pause_reading()

    # -- lifecycle -------------------------------------------------------------------
    def _tap_failed_with(self, err: BaseException) -> None:
        # The tap isolates its own failures; this only guards against a bug in that guard.
        reason = _tap_failure_reason(err)
        self.relay.metrics.tap_disabled.labels(reason=reason).inc()
        log.warning("tap disabled on connection %d (%s): %s", self.id, reason, err)
        self.tap = None

    def _arm_idle_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(
            self.relay.settings.idle_timeout_seconds, self._idle_check
        )

    def _idle_check(self) -> None:
        # No bytes either way for a whole period (so between one and two periods idle).
        # A draining connection is left to the drain, which ends by its deadline.
        if self._closed or self.draining:
            return
        if not self._active:
            log.info("connection %d idle, closing", self.id)
            self._close_both()
            return
        self._silence_start(time.monotonic())
        self._arm_idle_timer()

    def _silence_start(self, now: float) -> float:
        """When the current silence began, at the latest; reads and clears `_active`.

        The forwarding path only sets a flag (no clock read per chunk), so silence is
        known to the precision of the checks that read the flag.
        """
        if self._active:
            self._active = False
            self._quiet_since = now
        return self._quiet_since

    def drain(self, grace: float) -> None:
        """Close this connection politely: GOAWAY to the client, close once no stream is open.

        Whatever is still open after `grace` seconds is closed anyway. Draining again
        (stop during a fallback drain) can only shorten the grace.
        """
        if self._closed:
            return
        now = time.monotonic()
        if self.draining:
            if now + grace >= self._drain_deadline:
                return
        else:
            self.draining = True
            self._drain_started = now
        self._drain_grace = grace
        self._drain_deadline = now + grace
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self._drain_step()

    def drain_expired(self) -> None:
        """Closes the connection at its drain deadline, whatever is still open; counted."""
        if self._closed:
            return
        tap = self.tap
        if tap is None or tap.failed_reason is not None:
            streams = "unknown, no tap"
        else:
            streams = str(tap.open_streams)
        self.relay.drain_deadline_closes += 1
        self.relay.metrics.drain_deadline_closes.inc()
        log.warning(
            "connection %d still open at its drain deadline (open streams: %s), closing",
            self.id,
            streams,
        )
        self._close_both()

    def _try_goaway(self) -> None:
        """Sends the shutdown GOAWAY once the server-to-client bytes sit at a frame boundary."""
        tap = self.tap
        if tap is None or tap.failed_reason is not None or self.client is None:
            return
        reader = tap.server_reader
        # after the server's first frame (its SETTINGS), and never inside one of its frames
        if reader.frames_seen > 0 and reader.at_frame_boundary:
            self.client.write(_GOAWAY_SHUTDOWN)
            self._goaway_sent = True
            self._drain_started = time.monotonic()

    def _drain_step(self) -> None:
        self._drain_timer = None
        if self._closed:
            return
        tap = self.tap
        if self.upstream is None or self._upstream_eof:
            # Not connected yet, or the upstream has said all it will (and its EOF went on
            # to the client, so not even a GOAWAY can follow): nothing left to wait for.
            self._close_both()
            return
        now = time.monotonic()
        if now >= self._drain_deadline:
            self.drain_expired()
            return
        delay = _DRAIN_POLL_SECONDS
        if tap is None or tap.failed_reason is not None:
            # Blind (tap off): a call in flight sends nothing while the model works, so
            # silence proves nothing. Only silence as long as the whole grace counts as
            # idle; a busy connection is closed at the deadline.
            quiet_since = self._silence_start(now)
            if now - quiet_since >= self._drain_grace:
                self._close_both()
                return
            delay = min(quiet_since + self._drain_grace, self._drain_deadline) - now
        else:
            if not self._goaway_sent:
                self._try_goaway()
            waited = time.monotonic() - self._drain_started
            if (
                self._goaway_sent
                and tap.open_streams == 0
                and waited >= self.relay.settings.drain_delay_seconds
            ):
                self._close_both()
                return
        self._drain_timer = asyncio.get_running_loop().call_later(delay, self._drain_step)

    def _close_both(self) -> None:
        if self._closed:
            return
        self._closed = True
        relay = self.relay
        relay._connections.discard(self)
        relay.metrics.connections_active.dec()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        if self.client is not None:
            self.client.close()
        if self.upstream is not None:
            self.upstream.close()
        tap = self.tap
        self.tap = None
        if tap is not None:
            try:
                tap.close()
            except Exception as err:  # never let the tap break teardown
                self._tap_failed_with(err)
        relay._connection_closed()


def _connect_failure_reason(err: BaseException) -> str:
    if isinstance(err, (TimeoutError, asyncio.TimeoutError)):
        return "connect_timeout"
    if isinstance(err, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(err, ssl.SSLError):
        return "tls"
    return "connect_error"


class Relay:
    """Listens for clients and relays each connection to the current upstream."""

    def __init__(
        self,
        settings: DataplaneSettings,
        *,
        registry: CollectorRegistry | None = None,
        sink: ObservationSink | None = None,
        labels: LabelPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = DataplaneMetrics(self.registry, labels=labels or LabelPolicy())
        self.sink = sink
        self._dispatcher = ObservationDispatcher(self.metrics, sink)
        self._sampler = Sampler(
            settings.sampling_rate, settings.max_samples_per_second, seed=settings.sampling_seed
        )
        self._upstreams: dict[UpstreamName, _Upstream] = {
            "primary": _Upstream("primary", settings.upstream)
        }
        if settings.fallback_upstream is not None:
            self._upstreams["fallback"] = _Upstream("fallback", settings.fallback_upstream)
        self.upstream: UpstreamName = "primary"
        self._ids = itertools.count(1)
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._accepting: bool | None = None
        self._all_closed: asyncio.Event | None = None
        #: connections closed at their drain deadline with work possibly still open
        self.drain_deadline_closes = 0
        # An unreachable upstream fails every new connection: one log line per interval.
        self.unreachable_log = LogThrottle(_UNREACHABLE_LOG_SECONDS)

    def _new_tap(self, connection_id: int) -> ConnectionTap | None:
        if not self.settings.tap_enabled:
            return None
        return ConnectionTap(
            connection_id,
            self._dispatcher,
            self._sampler,
            max_message_bytes=self.settings.max_message_bytes,
        )

    async def start(self) -> None:
        """Binds the listener; `port` is valid afterwards."""
        if self._server is not None:
            raise RuntimeError("relay already started")
        loop = asyncio.get_running_loop()
        tls = self.settings.listener_tls
        self._server = await loop.create_server(
            lambda: _Connection(self),
            self.settings.listen_host,
            self.settings.listen_port,
            ssl=listener_ssl_context(tls) if tls is not None else None,
            reuse_address=True,
        )
        self._accepting = True
        log.info(
            "relay listening on %s:%d -> %s:%d",
            self.settings.listen_host,
            self.port,
            self._upstreams["primary"].host,
            self._upstreams["primary"].port,
        )

    @property
    def port(self) -> int:
        """The bound listener port (after `start`)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("relay not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    @property
    def ready(self) -> bool:
        """True while listening and accepting connections (for /readyz)."""
        return bool(self._accepting)

    async def stop(self, grace: float | None = None) -> None:
        """Stops accepting; in-flight RPCs get `grace` seconds to finish, then all close."""
        if grace is None:
            grace = self.settings.shutdown_grace_seconds
        self._accepting = False
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.drain(grace)
        if self._connections:
            self._all_closed = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        for conn in list(self._connections):
            conn.drain_expired()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    def _connection_closed(self) -> None:
        if self._all_closed is not None and not self._connections:
            self._all_closed.set()

    async def use_fallback(self) -> None:
        """New connections go to the fallback upstream; current ones are drained politely."""
        if "fallback" not in self._upstreams:
            raise RuntimeError("no fallback_upstream configured")
        self._switch("fallback")

    async def use_primary(self) -> None:
        """New connections go to the primary upstream again; others are drained politely."""
        self._switch("primary")

    def _switch(self, name: UpstreamName) -> None:
        if self.upstream == name:
            return
        log.info("switching upstream %s -> %s", self.upstream, name)
        self.upstream = name
        # The shutdown grace bounds these drains too: a drain nobody bounds could keep a
        # connection on the old upstream forever (a client holding a stream open).
        grace = self.settings.shutdown_grace_seconds
        for conn in list(self._connections):
            if conn.upstream_name != name:
                conn.drain(grace)
