"""The composition root of `outrider serve`: builds the parts, starts them, stops them.

A reading crosses each room once: relay -> monitor -> alerting (reading store, rules,
outbox, incident flow) -> hooks; the probes publish to the same reading store. Parts with
state register for the checkpoint themselves and answer their own `health()`. The event
loop runs the relay, admin server, hook dispatcher and probes (I/O-bound); the monitor
worker decodes and updates detectors; the alert thread evaluates rules, commits incidents,
draws plots, checkpoints and prunes, so no fsync or plot ever runs on the relay's loop.
Readiness is the relay's alone: the other parts are reported, never a gate.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from prometheus_client import CollectorRegistry

from service import metric_families as families
from service.admin.application import admin_application
from service.admin.server import AdminServer
from service.alerting.engine import AlertEngine
from service.alerting.incident_flow import IncidentFlow
from service.alerting.loop import AlertLoop
from service.alerting.reading_store import ReadingStore
from service.config import OutriderSettings
from service.dataplane.relay import Relay
from service.hooks.build import build_dispatcher
from service.label_bounds import LabelPolicy
from service.listeners import start_listener
from service.monitor.model_versions import upstream_lookup_for
from service.monitor.pipeline import MonitorPipeline
from service.monitor.reference import set_aside_unreadable_captures
from service.probes.run_store import prune_probe_runs
from service.probes.runner import ProbeRunner
from service.store.checkpointer import Checkpointer
from service.store.checkpoints import CheckpointStore
from service.store.incidents import IncidentStore
from service.store.retention import Retention
from service.store.set_aside import remove_set_aside_files
from service.store.state_dir import prepare_state_dir
from service.version import __version__

log = structlog.get_logger(__name__)

# How long stop waits for the alert thread to finish its evaluation (a plot, a commit).
ALERT_THREAD_JOIN_SECONDS = 10.0


class OutriderApp:
    """One sidecar: build with settings, `await start()`, `await stop()`."""

    def __init__(self, settings: OutriderSettings) -> None:
        self.settings = settings
        self.registry = registry = CollectorRegistry()
        families.BUILD_INFO.gauge(registry).labels(__version__).set(1)
        self.state_dir = state = prepare_state_dir(settings.state_dir)
        self.incidents = IncidentStore(state.incidents_db)
        families.INCIDENTS_OPEN.gauge(registry).set_function(self.incidents.count_open)
        self.checkpoints = checkpoints = Checkpointer(CheckpointStore(state.checkpoints))
        # One label rule for every metric family and reading (DESIGN.md: PromQL joins hold).
        probe_models = [suite.model for suite in settings.probes.suites]
        self.labels = LabelPolicy(
            settings.labels, known_models=[*settings.models, *probe_models], checkpoints=checkpoints
        )
        upstream = settings.dataplane.upstream
        self._upstream = target = f"{upstream.host}:{upstream.port}"
        # A damaged capture of outrider's own is captured again; a damaged built reference,
        # or one that does not fit its signal, fails here at start, not mid-stream.
        set_aside_unreadable_captures(settings, state.root)
        self.readings = ReadingStore(labels=self.labels, checkpoints=checkpoints)
        self.pipeline = MonitorPipeline(
            settings,
            registry=registry,
            state_dir=state.root,
            sink=self.readings,
            labels=self.labels,
            checkpoints=checkpoints,
            # Calls that name no version get the one the upstream's ModelMetadata reports.
            version_lookup=upstream_lookup_for(target, tls=upstream.tls is not None),
        )
        self.alerts = AlertEngine(
            settings.alerts,
            registry=registry,
            on_transition=None,  # the incident flow, once the event loop runs (see start)
            stale_after=settings.alert_stale_after_seconds,
            readings=self.readings,
            checkpoints=checkpoints,
        )
        self.relay = Relay(
            settings.dataplane, registry=registry, sink=self.pipeline, labels=self.labels
        )
        switch = self.relay if settings.dataplane.fallback_upstream is not None else None
        self.dispatcher = build_dispatcher(
            settings.hooks, recorder=self.incidents, registry=registry, upstream_switch=switch
        )
        self.probes = ProbeRunner(
            settings.probes,
            target=target,
            registry=registry,
            state_dir=state.root,
            sink=self.readings,
            labels=self.labels,
        )
        self.readings.subscribe(self.probes.note_version)  # new versions get their suites run
        self.alert_loop = AlertLoop(self.alerts, settings.alert_evaluation_seconds)
        self.alert_loop.every("checkpoint", settings.checkpoints.interval_seconds, checkpoints.save)
        Retention(
            settings.retention,
            {
                "incidents": lambda horizon: self.incidents.prune_resolved(horizon).counts(),
                "probe_runs": lambda horizon: prune_probe_runs(state.root, horizon),
                "set_aside_files": lambda horizon: remove_set_aside_files(state.root, horizon),
            },
        ).schedule(on=self.alert_loop)
        self.admin: AdminServer | None = None

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
        settings, relay = self.settings, self.relay
        for note in settings.deprecations:
            log.warning("config_key_deprecated", detail=note)
        self.alerts.on_transition = IncidentFlow(
            self.incidents, self.readings.history, self.state_dir,
            submit_event=self.dispatcher.submit, loop=asyncio.get_running_loop(),
        )
        self.checkpoints.restore()
        self.pipeline.start()
        self.dispatcher.start()
        self.alert_loop.start()
        dataplane = settings.dataplane
        await start_listener("relay", dataplane.listen_host, dataplane.listen_port, relay.start)
        # Traffic first: probes (which may replay suites at once) only once the relay is up.
        await self.probes.start()

        def relay_readiness() -> tuple[bool, str]:
            return relay.ready, "accepting" if relay.ready else "not accepting"

        workers = {"monitor": self.pipeline.health, "alerts": self.alert_loop.health}
        if settings.probes.enabled:
            workers["probes"] = self.probes.health
        admin = settings.admin
        self.admin = AdminServer(
            admin_application(
                self.registry,
                readiness={"relay": relay_readiness},
                workers=workers,
                incidents=self.incidents,
                dispatcher=self.dispatcher,
                alerts=self.alerts,
                inbound=settings.hooks.inbound,
                loopback_only=admin.loopback_only,
            ),
            admin.host,
            admin.port,
        )
        await start_listener("admin", admin.host, admin.port, self.admin.start)
        log.info("outrider.started", version=__version__, state_dir=str(self.state_dir.root),
                 relay=f"{dataplane.listen_host}:{relay.port}", upstream=self._upstream,
                 admin=f"{admin.host}:{self.admin.port}")

    async def stop(self, grace: float | None = None) -> None:
        """Stops accepting, lets in-flight RPCs finish within `grace`, then checkpoints."""
        await self._shutdown(grace, checkpoint=True)
        log.info("outrider.stopped")

    async def _shutdown(self, grace: float | None, *, checkpoint: bool) -> None:
        """Stops every part; safe on parts that never started."""
        await self.relay.stop(grace)
        await self.probes.stop()
        # Joins the monitor thread, which finishes its queue first: not on the loop.
        await asyncio.to_thread(self.pipeline.stop)
        # A thread stuck in a round may still commit an incident: no final checkpoint (the
        # last periodic one stands) and the store stays open.
        ended = await asyncio.to_thread(self.alert_loop.stop, ALERT_THREAD_JOIN_SECONDS)
        if checkpoint and ended:
            await asyncio.to_thread(self.checkpoints.save)
        await self.dispatcher.stop()
        if self.admin is not None:
            await self.admin.stop()
        if ended:
            self.incidents.close()


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
