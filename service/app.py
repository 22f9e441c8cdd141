"""Wires the rooms together for `outrider serve`: relay, monitor, alerts, hooks, admin, probes.

Threads and loops, and why:
- the event loop runs the relay, the admin HTTP server, the hook dispatcher and the probe
  scheduler: all I/O-bound;
- the monitor worker thread decodes sampled traffic and updates detectors (numpy);
- the alert thread evaluates rules, commits incidents to SQLite, draws plots, writes
  checkpoints and prunes old state (`retention`), so no fsync or matplotlib call ever runs
  on the loop that relays traffic;
- admin handlers hand their blocking calls (SQLite, metric collection, incidents for
  alerts received from Alertmanager) to worker threads, for the same reason.

Readiness is the relay's alone; the monitor and alert workers (and the probes, when enabled)
are reported in /healthz and /readyz but never take the pod out of its Service. For the same
reason probes that cannot start are switched off, logged and reported, and start goes on.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry

from service import metric_families as families
from service.admin.incident_routes import add_incident_routes
from service.admin.receivers import add_receiver_routes
from service.admin.server import AdminServer, build_admin_app
from service.alerting.alert_book import CombinedAlertView, FiringAlertBook
from service.alerting.engine import AlertEngine
from service.alerting.incident_flow import IncidentFlow, ReceivedAlertIncidents
from service.alerting.reading_store import ReadingStore
from service.alerting.readings import Reading
from service.config import OutriderSettings
from service.dataplane.relay import Relay
from service.hooks.build import build_dispatcher
from service.hooks.secret_source import read_secret
from service.label_bounds import LabelPolicy
from service.monitor.model_versions import upstream_version_lookup
from service.monitor.pipeline import MonitorPipeline
from service.monitor.reference import set_aside_unreadable_captures
from service.retention import prune_probe_runs, remove_set_aside_files
from service.store.checkpoints import CheckpointStore
from service.store.incidents import IncidentPruning, IncidentStore
from service.store.state_dir import prepare_state_dir
from service.version import __version__

if TYPE_CHECKING:
    from aiohttp import web

    from service.alerting.instances import AlertTransition
    from service.probes.scheduler import ProbeScheduler

log = structlog.get_logger(__name__)

CHECKPOINT_NAME = "monitor"
_CHECKPOINT_FORMAT = 1
# How long stop waits for the alert thread to finish its evaluation (a plot, a commit).
ALERT_THREAD_JOIN_SECONDS = 10.0
ALERT_STALL_ROUNDS = 10


class ListenerError(OSError):
    """A listener (relay or admin) that could not start: address in use, no permission..."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class OutriderApp:
    """One sidecar: build with settings, `await start()`, `await stop()`."""

    def __init__(self, settings: OutriderSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        families.BUILD_INFO.gauge(self.registry).labels(__version__).set(1)
        self.state_dir = prepare_state_dir(settings.state_dir)
        self.incidents = IncidentStore(self.state_dir.incidents_db)
        families.INCIDENTS_OPEN.gauge(self.registry).set_function(self.incidents.count_open)
        self.checkpoints = CheckpointStore(self.state_dir.checkpoints)
        # One label rule for every metric family and reading (DESIGN.md: PromQL joins hold).
        self.labels = LabelPolicy(
            settings.labels,
            known_models=[*settings.models, *(s.model for s in settings.probes.suites)],
        )
        self.readings = ReadingStore(labels=self.labels)
        self.readings.subscribe(self._note_version)
        self._alert_lock = threading.Lock()
        self.alerts = AlertEngine(
            settings.alerts,
            registry=self.registry,
            on_transition=self._on_transition,
            stale_after=settings.alert_stale_after_seconds,
            readings=self.readings,
        )
        upstream = settings.dataplane.upstream
        # Requests that name no version get the one the upstream's ModelMetadata reports
        # (asked once per model). Plaintext only: the lookup client speaks no TLS.
        version_lookup = (
            upstream_version_lookup(f"{upstream.host}:{upstream.port}")
            if upstream.tls is None
            else None
        )
        # A damaged capture of outrider's own is captured again; a damaged built reference,
        # or one that does not fit its signal, fails here at start, not mid-stream.
        set_aside_unreadable_captures(settings, self.state_dir.root)
        self.pipeline = MonitorPipeline(
            settings,
            registry=self.registry,
            state_dir=self.state_dir.root,
            sink=self.readings,
            labels=self.labels,
            version_lookup=version_lookup,
        )
        self.relay = Relay(
            settings.dataplane, registry=self.registry, sink=self.pipeline, labels=self.labels
        )
        switch = self.relay if settings.dataplane.fallback_upstream is not None else None
        self.dispatcher = build_dispatcher(
            settings.hooks, recorder=self.incidents, registry=self.registry, upstream_switch=switch
        )
        # Alerts received from Alertmanager and still firing, for the Flagger and Argo gates.
        self.received_alerts = FiringAlertBook()
        self.probes: ProbeScheduler | None = None
        self._probes_error: str | None = None  # why probes are off although enabled
        self.admin: AdminServer | None = None
        self._flow: IncidentFlow | None = None
        self._alert_thread: threading.Thread | None = None
        self._last_evaluation = 0.0  # time.monotonic() of the alert thread's last round
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._versions_seen: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- callbacks from the monitor and the alert engine -----------------------------------

    def _note_version(self, reading: Reading) -> None:
        """Tells the probe scheduler about versions seen in traffic (it runs suites on new ones)."""
        if reading.kind not in ("drift", "ood"):
            return
        model, version = reading.model, reading.version
        key = (model, version)
        if self.probes is None or self._loop is None or key in self._versions_seen:
            return
        self._versions_seen.add(key)
        self._loop.call_soon_threadsafe(self._spawn_version_probe, model, version)

    def _spawn_version_probe(self, model: str, version: str) -> None:
        assert self._loop is not None and self.probes is not None
        task = self._loop.create_task(self.probes.on_version_seen(model, version))
        # The loop keeps only weak references to tasks: hold this one until it is done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_transition(self, transition: AlertTransition) -> None:
        if self._flow is not None:
            self._flow(transition)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Starts every part; if one fails, stops those already started and re-raises."""
        try:
            await self._start()
        except BaseException:
            log.error("outrider.start_failed")
            try:
                # Nothing new to checkpoint: the state was only just restored.
                await self._shutdown(grace=0.0, checkpoint=False)
            except Exception:  # the start failure is what the caller must see
                log.exception("outrider.cleanup_after_failed_start_failed")
            raise

    async def _start(self) -> None:
        for note in self.settings.deprecations:
            log.warning("config_key_deprecated", detail=note)
        loop = self._loop = asyncio.get_running_loop()
        self._flow = IncidentFlow(
            self.incidents,
            self.readings.history,
            self.state_dir,
            submit_event=self.dispatcher.submit,
            loop=loop,
        )
        self._restore()
        self.pipeline.start()
        self.dispatcher.start()
        self._alert_thread = threading.Thread(
            target=self._alert_loop, name="outrider-alerts", daemon=True
        )
        self._last_evaluation = time.monotonic()
        self._alert_thread.start()
        dataplane = self.settings.dataplane
        await self._listen("relay", dataplane.listen_host, dataplane.listen_port, self.relay.start)
        # Traffic first: probes (which may replay suites at once) only once the relay is up.
        await self._start_probes()
        admin = self.settings.admin
        self.admin = AdminServer(self._admin_app(), admin.host, admin.port)
        await self._listen("admin", admin.host, admin.port, self.admin.start)
        log.info(
            "outrider.started",
            version=__version__,
            relay=f"{self.settings.dataplane.listen_host}:{self.relay.port}",
            upstream=f"{self.settings.dataplane.upstream.host}:{self.settings.dataplane.upstream.port}",
            admin=f"{self.settings.admin.host}:{self.admin.port}",
            state_dir=str(self.state_dir.root),
        )

    @staticmethod
    async def _listen(
        name: str, host: str, port: int, start: Callable[[], Awaitable[None]]
    ) -> None:
        """Starts a listener; says which one and on which address when it cannot."""
        try:
            await start()
        except OSError as error:
            raise ListenerError(
                f"{name} listener on {_address(host, port)} could not start: {error}"
            ) from error

    def _admin_app(self) -> web.Application:
        workers = {"monitor": self._monitor_health, "alerts": self._alert_health}
        if self.settings.probes.enabled:
            workers["probes"] = self._probe_health
        app = build_admin_app(
            self.registry,
            readiness={"relay": self._relay_readiness},
            # Reported, never a gate: a monitoring fault must not stop inference traffic.
            workers=workers,
        )
        add_incident_routes(app, self.incidents)
        inbound = self.settings.hooks.inbound
        token = read_secret(inbound.token) if inbound.token is not None else None
        add_receiver_routes(
            app,
            dispatcher=self.dispatcher,
            # Each alert's incident is committed first, and the hooks get its id.
            prepare=ReceivedAlertIncidents(self.incidents, self.dispatcher).with_incident,
            alert_view=CombinedAlertView(self.alerts, self.received_alerts),
            received_alerts=self.received_alerts,
            token=token,
            loopback_only=self.settings.admin.loopback_only,
            dedupe_capacity=inbound.dedupe_capacity,
        )
        return app

    def _relay_readiness(self) -> tuple[bool, str]:
        return self.relay.ready, "accepting" if self.relay.ready else "not accepting"

    def _monitor_health(self) -> tuple[bool, str]:
        depth, size = self.pipeline.queue_depth, self.settings.monitor.queue_size
        # A full queue means the worker is behind or stalled: samples are being shed.
        return depth < size, f"{depth} of {size} observations queued"

    def _alert_health(self) -> tuple[bool, str]:
        alive = self._alert_thread is not None and self._alert_thread.is_alive()
        since = time.monotonic() - self._last_evaluation
        # A round takes milliseconds, seconds with a plot or a checkpoint: ten missed rounds
        # mean the thread is stuck.
        stalled = since > ALERT_STALL_ROUNDS * self.settings.alert_evaluation_seconds
        if not alive:
            state = "not running"
        elif stalled:
            state = "stalled"
        else:
            state = "running"
        return state == "running", f"{state}, last round {since:.1f} s ago"

    def _probe_health(self) -> tuple[bool, str]:
        if self.probes is None:
            return False, f"off: {self._probes_error or 'not started'}"
        return True, f"running, {len(self.probes.suites)} suite(s) scheduled"

    async def _start_probes(self) -> None:
        """Starts the probe scheduler; if it cannot start, probes are off and traffic goes on."""
        if not self.settings.probes.enabled:
            return
        from service.probes.scheduler import ProbeScheduler

        upstream = self.settings.dataplane.upstream
        try:
            self.probes = ProbeScheduler(
                self.settings.probes,
                target=self.settings.probes.target or f"{upstream.host}:{upstream.port}",
                registry=self.registry,
                state_dir=self.state_dir.root,
                sink=self.readings,
                labels=self.labels,
            )
            await self.probes.start()
        except Exception as error:  # probes must never take the relay down with them
            self._probes_error = f"{type(error).__name__}: {error}"
            log.error(
                "probes.disabled",
                error=self._probes_error,
                consequence="no probe runs until restarted; traffic is relayed as usual",
            )
            scheduler, self.probes = self.probes, None
            if scheduler is not None:
                try:
                    await scheduler.stop()
                except Exception:
                    log.exception("probes.cleanup_failed")

    async def stop(self, grace: float | None = None) -> None:
        """Stops accepting, lets in-flight RPCs finish within `grace`, then checkpoints."""
        await self._shutdown(grace, checkpoint=True)
        log.info("outrider.stopped")

    async def _shutdown(self, grace: float | None, *, checkpoint: bool) -> None:
        """Stops every part; safe on parts that never started."""
        await self.relay.stop(grace)
        if self.probes is not None:
            await self.probes.stop()
        # Joins the monitor thread, which finishes its queue first: not on the loop.
        await asyncio.to_thread(self.pipeline.stop)
        self._stopping.set()
        if self._alert_thread is not None:
            await asyncio.to_thread(self._alert_thread.join, ALERT_THREAD_JOIN_SECONDS)
        # A thread stuck in a round holds the state lock and may still commit an incident:
        # no final checkpoint (the last periodic one stands) and the store stays open; the
        # thread is a daemon and ends with the process.
        stuck = self._alert_thread is not None and self._alert_thread.is_alive()
        if stuck:
            log.warning("alert_thread_still_running", waited_seconds=ALERT_THREAD_JOIN_SECONDS)
        if checkpoint and not stuck:
            await asyncio.to_thread(self._checkpoint)
        await self.dispatcher.stop()
        if self.admin is not None:
            await self.admin.stop()
        if not stuck:
            self.incidents.close()

    # -- the alert thread: evaluation, incidents, checkpoints --------------------------------

    def _alert_loop(self) -> None:
        interval = self.settings.alert_evaluation_seconds
        checkpoint_every = self.settings.checkpoints.interval_seconds
        next_checkpoint = time.monotonic() + checkpoint_every
        retention = self.settings.retention
        next_pruning = time.monotonic()  # the first round prunes, then every interval
        while not self._stopping.wait(interval):
            try:
                with self._alert_lock:
                    self.alerts.evaluate()
            except Exception:  # one bad evaluation must not end alerting for good
                log.exception("alert_evaluation_failed")
            self._last_evaluation = time.monotonic()
            if time.monotonic() >= next_checkpoint:
                self._checkpoint()
                next_checkpoint = time.monotonic() + checkpoint_every
            if retention.enabled and time.monotonic() >= next_pruning:
                self._prune_state()
                next_pruning = time.monotonic() + retention.interval_hours * 3600

    def _prune_state(self) -> None:
        """Deletes state older than `retention.days`, part by part; one info line of counts.

        A part that fails is logged and left for the next interval; the others still run.
        Between parts a stop request wins, so a long first pruning cannot hold up shutdown's
        final checkpoint for more than one part.
        """
        days = self.settings.retention.days
        horizon = time.time() - days * 86400.0
        root = self.state_dir.root
        parts: dict[str, Callable[[], dict[str, int]]] = {
            "incidents": lambda: _as_counts(self.incidents.prune_resolved(horizon)),
            "probe_runs": lambda: {"probe_runs": prune_probe_runs(root, horizon)},
            "set_aside_files": lambda: {"set_aside_files": remove_set_aside_files(root, horizon)},
        }
        counts: dict[str, int] = {}
        failed: list[str] = []
        for name, prune in parts.items():
            if self._stopping.is_set():
                return
            try:
                counts.update(prune())
            except Exception:  # a locked or full disk: the next interval tries again
                log.exception(
                    "state_pruning_failed",
                    part=name,
                    retry_in_hours=self.settings.retention.interval_hours,
                )
                failed.append(name)
        log.info("state_pruned", older_than_days=days, failed=failed, **counts)

    def _checkpoint(self) -> None:
        try:
            with self._alert_lock:
                state = {
                    "format": _CHECKPOINT_FORMAT,
                    "pipeline": self.pipeline.state_dict(),
                    "alerts": self.alerts.state_dict(),
                    "history": self.readings.state_dict(),
                    "labels": self.labels.state_dict(),
                }
            self.checkpoints.save(CHECKPOINT_NAME, state)
        except Exception:  # the next interval tries again; traffic is unaffected
            log.exception("checkpoint_failed")

    def _restore(self) -> None:
        state = self.checkpoints.load(CHECKPOINT_NAME)
        if state is None:
            return
        try:
            if int(state.get("format", -1)) != _CHECKPOINT_FORMAT:
                raise ValueError(
                    f"checkpoint format {state.get('format')!r} is not {_CHECKPOINT_FORMAT}"
                )
            skipped = self.pipeline.load_state_dict(state["pipeline"])
            self.alerts.load_state_dict(state["alerts"])
            self.readings.load_state_dict(state["history"])
            if "labels" in state:  # absent from checkpoints of earlier releases
                self.labels.load_state_dict(state["labels"])
        except Exception as error:  # incompatible: set aside, start fresh, never crash-loop
            log.warning("checkpoint_incompatible", error=str(error))
            self.checkpoints.set_aside(CHECKPOINT_NAME, reason=str(error))
            return
        log.info("checkpoint_restored", skipped=skipped)


def _as_counts(pruning: IncidentPruning) -> dict[str, int]:
    return {"incidents": pruning.incidents, "actions": pruning.actions, "plots": pruning.plots}


async def serve(settings: OutriderSettings) -> None:
    """Runs outrider until SIGTERM or SIGINT; then drains in-flight RPCs and exits."""
    app = OutriderApp(settings)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("outrider.stopping", grace_seconds=settings.dataplane.shutdown_grace_seconds)
    await app.stop()
