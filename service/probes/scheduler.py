"""Replays probe suites against the live model on their schedules and judges each run.

One `ProbeScheduler` per outrider process: it loads the configured suites, runs each on its
cron or interval trigger (APScheduler, on the running asyncio loop) through one paced gRPC
client carrying the probe header, records every run (metrics, SQLite), compares each
version with the last known-good one on the same probes, and publishes a `probe` reading
to alerting's reading sink. A version it has not seen before triggers an immediate run of
the model's suites; a version that stays clean for the configured period becomes the
known-good one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from service.alerting.readings import ReadingSink
from service.label_bounds import LabelPolicy
from service.oip.client import InferenceClient
from service.probes.live_attack import live_attack
from service.probes.metrics import ProbeMetrics
from service.probes.rate_limit import ProbeRateLimiter
from service.probes.replay import (
    PROBE_METADATA,
    RUN_ERRORS,
    ProbeReplayer,
)
from service.probes.run_store import RunRecord, RunStore, run_store_path
from service.probes.settings import ProbeSettings, ScheduleSettings, SuiteSettings
from service.probes.signature import ModelSignature, SuiteMismatchError
from service.probes.suite import SuiteFormatError, load_suite
from service.probes.suite_run import LoadedSuite, SuiteRunner, off_loop

_T = TypeVar("_T")

log = structlog.get_logger(__name__)



def trigger_for(schedule: ScheduleSettings) -> BaseTrigger:
    """The APScheduler trigger of a schedule setting (UTC crontab or interval)."""
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone="UTC")
    assert schedule.interval_seconds is not None  # guaranteed by ScheduleSettings
    return IntervalTrigger(seconds=schedule.interval_seconds, timezone="UTC")


class ProbeScheduler:
    """Schedules, runs and judges probe suites against one model server.

    `target` is host:port of the model server (the upstream outrider relays to);
    `state_dir` holds `probes/runs.sqlite`; metrics go to the injected `registry`;
    `sink` receives one `probe` reading per successful run (never for failed runs): the
    score is the suite's accuracy, the threshold the baseline version's accuracy on the same
    probes, the verdict whether the paired test found a regression.
    """

    def __init__(
        self,
        settings: ProbeSettings,
        *,
        target: str,
        state_dir: Path,
        registry: CollectorRegistry,
        sink: ReadingSink | None = None,
        labels: LabelPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.target = settings.target or target
        self.metrics = ProbeMetrics(registry, labels=labels or LabelPolicy())
        self.store = RunStore(run_store_path(state_dir))
        self.sink = sink
        self._clock = clock
        self.suites: dict[str, LoadedSuite] = {}
        self.refused: dict[str, str] = {}
        """Suites refused at load, with the reason."""
        self._client: InferenceClient | None = None
        self._replayer: ProbeReplayer | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._running: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._runner = SuiteRunner(settings, self.store, self.metrics, sink, clock)

    # -- lifecycle ---------------------------------------------------------------------

    def load_suites(self) -> None:
        """Reads every configured suite; unreadable ones are refused (logged and counted)."""
        for cfg in self.settings.suites:
            try:
                suite = load_suite(cfg.path)
            except SuiteFormatError as exc:
                self._refuse(cfg, str(exc))
                continue
            self.suites[cfg.name] = LoadedSuite(cfg, suite, suite.digest())
            self._running[cfg.name] = asyncio.Lock()

    def _refuse(self, cfg: SuiteSettings, reason: str) -> None:
        self.refused[cfg.name] = reason
        self.suites.pop(cfg.name, None)
        now = self._clock()
        self.metrics.record_outcome(cfg.model, cfg.name, "refused", now, 0.0)
        log.error("probes.suite_refused", suite=cfg.name, model=cfg.model, reason=reason)

    async def check_signatures(self) -> None:
        """Refuses loaded suites that do not fit their model's signature (server reachable).

        An unreachable server is not a refusal: the check is repeated at every run.
        """
        client = self._ensure_client()
        signatures: dict[str, ModelSignature] = {}
        for name, loaded in list(self.suites.items()):
            model = loaded.settings.model
            try:
                if model not in signatures:
                    signatures[model] = ModelSignature.from_oip(await client.model_metadata(model))
                loaded.suite.check_against(model, signatures[model])
            except SuiteMismatchError as exc:
                self._refuse(loaded.settings, str(exc))
            except RUN_ERRORS as exc:
                log.warning("probes.signature_unchecked", suite=name, model=model, error=str(exc))

    def _ensure_client(self) -> InferenceClient:
        if self._client is None:
            self._client = InferenceClient(
                self.target,
                metadata=PROBE_METADATA,
                timeout=self.settings.request_timeout_seconds,
            )
            limiter = ProbeRateLimiter(
                self.settings.max_probes_per_second, self.settings.max_concurrency
            )
            self._replayer = ProbeReplayer(self._client, limiter)
        return self._client

    async def start(self) -> None:
        """Loads and checks the suites, then schedules them (and the live attack)."""
        self.load_suites()
        await self.check_signatures()
        scheduler = AsyncIOScheduler(timezone="UTC")
        for name, loaded in self.suites.items():
            scheduler.add_job(
                self.run_suite,
                trigger_for(loaded.settings.schedule),
                args=[name],
                id=f"probe:{name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        attack = self.settings.live_attack
        if attack.enabled and attack.source_suite in self.suites:
            scheduler.add_job(
                self.run_live_attack,
                trigger_for(attack.schedule),
                id="probe:live-attack",
                max_instances=1,
                coalesce=True,
            )
        scheduler.start()
        self._scheduler = scheduler
        if self.settings.run_on_start:
            for name in self.suites:
                self._spawn(self.run_suite(name))

    def job_ids(self) -> list[str]:
        """Ids of the scheduled jobs ('probe:<suite>', 'probe:live-attack')."""
        return [] if self._scheduler is None else [job.id for job in self._scheduler.get_jobs()]

    async def stop(self) -> None:
        """Stops scheduling, cancels runs in flight and closes the client and the store."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.store.close()

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _db(self, call: Callable[..., _T], *args: Any) -> _T:
        return await off_loop(call, *args)

    # -- one run -----------------------------------------------------------------------

    async def run_suite(self, name: str) -> RunRecord | None:
        """Replays one suite now; returns its run record (None if it is already running)."""
        loaded = self.suites.get(name)
        if loaded is None:
            raise KeyError(f"no loaded suite {name!r} (loaded: {sorted(self.suites)})")
        lock = self._running[name]
        if lock.locked():
            return None
        async with lock:
            return await self._run(loaded)

    async def _run(self, loaded: LoadedSuite) -> RunRecord:
        client = self._ensure_client()
        assert self._replayer is not None
        done = await self._runner.run(loaded, client, self._replayer)
        model, version = loaded.settings.model, done.record.version
        if done.record.outcome == "ok":
            # The run that saw the version first counts towards its clean period.
            name = loaded.settings.name
            await self.on_version_seen(model, version, exclude=name, at=done.started)
            await self._maybe_promote(model, version)
        for seen in done.versions_changed:
            await self.on_version_seen(model, seen)
        return done.record

    # -- versions ----------------------------------------------------------------------

    async def on_version_seen(
        self, model: str, version: str, *, exclude: str | None = None, at: float | None = None
    ) -> None:
        """Called when a model version shows up (in responses or metadata).

        The first sighting of a version starts an immediate run of every suite of the model
        (except `exclude`, the run that just saw it); `at` backdates the sighting.
        """
        if not version:
            return
        if not await self._db(
            self.store.note_version, model, version, self._clock() if at is None else at
        ):
            return
        log.info("probes.version_seen", model=model, version=version)
        for name, loaded in self.suites.items():
            if loaded.settings.model == model and name != exclude:
                self._spawn(self.run_suite(name))

    async def _maybe_promote(self, model: str, version: str) -> None:
        if await self._db(self.store.known_good, model) == version:
            return
        state = await self._db(self.store.version_state, model, version)
        if state is None:
            return
        first_seen, regressed_at = state
        now = self._clock()
        clean_for = now - first_seen
        if regressed_at is not None or clean_for < self.settings.regression.clean_period_seconds:
            return
        if await self._db(self.store.ok_runs_since, model, version, first_seen) == 0:
            return
        await self._db(self.store.set_known_good, model, version, now)
        log.info(
            "probes.known_good_promoted", model=model, version=version, clean_seconds=clean_for
        )

    # -- live attack -------------------------------------------------------------------

    async def run_live_attack(self) -> RunRecord | None:
        """A small Square Attack against the live model, from the source suite's clean rows."""
        cfg = self.settings.live_attack
        loaded = self.suites.get(cfg.source_suite)
        if loaded is None:
            return None
        self._ensure_client()
        assert self._replayer is not None
        record = await live_attack(
            cfg, loaded.suite, loaded.digest, self._replayer, self.metrics, self._clock
        )
        return _with_id(record, await self._db(self.store.record_run, record))


def _with_id(record: RunRecord, run_id: int) -> RunRecord:
    return replace(record, id=run_id)
