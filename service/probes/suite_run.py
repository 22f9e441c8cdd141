"""One run of one probe suite against the live model, and its judgement.

Replay the suite's rows (paced, with the probe header), score them, compare the version
with the last known-good one on the same probes (paired regression test), record the run,
update the metrics and publish the `probe` reading. Which suites run when, and which
version is known-good, is the scheduler's business (`scheduler`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import structlog

from service.alerting.readings import ReadingSink
from service.oip.client import InferenceClient
from service.probes.evaluation import RunResults, evaluate_run, probe_reading
from service.probes.metrics import ProbeMetrics
from service.probes.regression import RegressionVerdict, paired_regression
from service.probes.replay import RUN_ERRORS, ProbeReplayer, describe_run_error
from service.probes.run_store import RunOutcome, RunRecord, RunStore
from service.probes.settings import ProbeSettings, SuiteSettings
from service.probes.signature import ModelSignature, SuiteMismatchError
from service.probes.suite import ProbeSuite

_T = TypeVar("_T")

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LoadedSuite:
    """A configured suite and its rows."""

    settings: SuiteSettings
    suite: ProbeSuite
    digest: str


@dataclass(frozen=True)
class SuiteRunDone:
    """A finished run: its record, when it started, and the versions met mid-run (if any)."""

    record: RunRecord
    started: float
    versions_changed: tuple[str, ...] = ()
    """The versions that answered when the model version changed during the run."""


async def off_loop(call: Callable[..., _T], *args: Any) -> _T:
    """Runs a run-store call in a worker thread: SQLite waits on the disk (fsync), and this
    event loop is the relay's, so it must never wait on SQLite itself."""
    return await asyncio.to_thread(call, *args)


class SuiteRunner:
    """Runs and judges suites; one per scheduler (it shares the store and the metrics)."""

    def __init__(
        self,
        settings: ProbeSettings,
        store: RunStore,
        metrics: ProbeMetrics,
        sink: ReadingSink | None,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.sink = sink
        self._clock = clock

    async def run(
        self, loaded: LoadedSuite, client: InferenceClient, replayer: ProbeReplayer
    ) -> SuiteRunDone:
        """Replays `loaded` now and judges it; the run is recorded whatever its outcome."""
        cfg, suite = loaded.settings, loaded.suite
        model = cfg.model
        started = self._clock()
        t0 = time.monotonic()
        version = ""
        try:
            metadata = await client.model_metadata(model)
            suite.check_against(model, ModelSignature.from_oip(metadata))
            answers = await replayer.replay(
                model,
                suite.input_spec.name,
                suite.score_output,
                suite.inputs,
                batch_size=cfg.batch_size,
            )
            versions = [v for v in answers.versions if v] or list(metadata.versions[-1:])
            version = versions[0] if versions else ""
            if len(versions) > 1:
                raise _VersionChanged(versions)
        except SuiteMismatchError as exc:
            return await self._unscored(loaded, "refused", started, t0, version, str(exc))
        except _VersionChanged as exc:
            done = await self._unscored(loaded, "failed", started, t0, exc.versions[-1], str(exc))
            return SuiteRunDone(done.record, started, tuple(exc.versions))
        except RUN_ERRORS as exc:
            return await self._unscored(
                loaded, "failed", started, t0, version, describe_run_error(exc)
            )

        baseline_version = await off_loop(self.store.known_good, model)
        baseline_run = None
        if baseline_version is not None and baseline_version != version:
            baseline_run = await off_loop(
                self.store.last_ok_run, model, cfg.name, baseline_version, loaded.digest
            )
        baseline_predictions = None if baseline_run is None else baseline_run.predictions
        results = evaluate_run(suite, answers.scores, baseline_predictions=baseline_predictions)
        verdict = self._judge(results, baseline_predictions, suite)
        finished = self._clock()
        predictions = np.argmax(answers.scores, axis=1)
        record = RunRecord(
            model=model,
            version=version,
            suite=cfg.name,
            suite_digest=loaded.digest,
            kind=suite.kind,
            started_at=started,
            finished_at=finished,
            outcome="ok",
            probes=len(suite),
            accuracy=results.accuracy,
            regression=None if verdict is None else verdict.regression,
            p_value=None if verdict is None else verdict.p_value,
            baseline_version=None if baseline_run is None else baseline_version,
            predictions=predictions,
            results=results.as_json(),
        )
        record = _with_id(record, await off_loop(self.store.record_run, record))
        self.metrics.record_outcome(model, cfg.name, "ok", finished, time.monotonic() - t0)
        self.metrics.record_results(model, version, cfg.name, results)
        self.metrics.record_regression(
            model,
            version,
            cfg.name,
            bool(verdict and verdict.regression),
            None if verdict is None else verdict.p_value,
        )
        log.info(
            "probes.run_ok",
            suite=cfg.name,
            model=model,
            version=version,
            accuracy=round(results.accuracy, 4),
            regression=None if verdict is None else verdict.regression,
            baseline_version=record.baseline_version,
        )
        if verdict is not None and verdict.regression:
            await off_loop(self.store.mark_regressed, model, version, finished)
        self._emit(model, version, cfg.name, finished, results, verdict)
        return SuiteRunDone(record, started)

    def _judge(
        self, results: RunResults, baseline: np.ndarray | None, suite: ProbeSuite
    ) -> RegressionVerdict | None:
        if baseline is None or len(baseline) != len(suite):
            return None
        return paired_regression(
            results.correct,
            baseline == suite.labels,
            alpha=self.settings.regression.alpha,
            min_accuracy_drop=self.settings.regression.min_accuracy_drop,
        )

    def _emit(
        self,
        model: str,
        version: str,
        suite: str,
        at: float,
        results: RunResults,
        verdict: RegressionVerdict | None,
    ) -> None:
        if self.sink is None:
            return
        try:
            self.sink.publish(probe_reading(model, version, suite, at, results, verdict))
        except Exception:  # the alert engine's failure must not fail the probe run
            log.exception("probes.reading_sink_failed", suite=suite, model=model)

    async def _unscored(
        self,
        loaded: LoadedSuite,
        outcome: RunOutcome,
        started: float,
        t0: float,
        version: str,
        error: str,
    ) -> SuiteRunDone:
        cfg = loaded.settings
        finished = self._clock()
        record = RunRecord(
            model=cfg.model,
            version=version,
            suite=cfg.name,
            suite_digest=loaded.digest,
            kind=loaded.suite.kind,
            started_at=started,
            finished_at=finished,
            outcome=outcome,
            probes=len(loaded.suite),
            error=error,
        )
        record = _with_id(record, await off_loop(self.store.record_run, record))
        self.metrics.record_outcome(cfg.model, cfg.name, outcome, finished, time.monotonic() - t0)
        log.error(
            "probes.run_" + outcome,
            suite=cfg.name,
            model=cfg.model,
            error=error,
            retry="at the next scheduled run",
        )
        return SuiteRunDone(record, started)


class _VersionChanged(Exception):
    def __init__(self, versions: list[str]) -> None:
        self.versions = versions
        super().__init__(f"model version changed during the run: {versions}")


def _with_id(record: RunRecord, run_id: int) -> RunRecord:
    return replace(record, id=run_id)
