"""The alert thread: evaluates the rules every interval and runs the jobs scheduled on it.

Evaluating commits incidents to SQLite and draws plots; the jobs other parts schedule here
(checkpoints, retention) write and delete files. All of it runs on this one thread, so no
fsync or matplotlib call ever runs on the event loop that relays traffic, and a job never
runs while an evaluation does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from service.alerting.engine import AlertEngine

STALL_ROUNDS = 10
"""Rounds without an evaluation after which the thread is reported stalled."""

_log = structlog.get_logger("outrider.alerts")


@dataclass
class _Job:
    name: str
    seconds: float
    run: Callable[[], object]
    at_first_round: bool
    due: float = 0.0


class AlertLoop:
    """Runs `engine.evaluate()` every `interval` seconds on its own thread, then due jobs."""

    def __init__(
        self,
        engine: AlertEngine,
        interval: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.engine = engine
        self.interval = interval
        self._monotonic = monotonic
        self._jobs: list[_Job] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_round = monotonic()

    def every(
        self, name: str, seconds: float, job: Callable[[], object], *, now: bool = False
    ) -> None:
        """Run `job` every `seconds` after a round (at the first round too when `now`).

        A job that raises is logged and runs again when next due.
        """
        if not seconds > 0:
            raise ValueError(f"job {name!r}: seconds must be > 0, got {seconds!r}")
        self._jobs.append(_Job(name, seconds, job, now))

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called (long jobs check it between steps)."""
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Starts the thread."""
        self._last_round = started = self._monotonic()
        for job in self._jobs:
            job.due = started if job.at_first_round else started + job.seconds
        self._thread = threading.Thread(target=self._run, name="outrider-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Asks the thread to stop and waits up to `timeout`; False if it is still running.

        A thread still inside a round (a plot, a commit) may yet commit an incident: the
        caller keeps the stores it uses open. It is a daemon and ends with the process.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        stuck = self.alive
        if stuck:
            _log.warning("alert_thread_still_running", waited_seconds=timeout)
        return not stuck

    def health(self) -> tuple[bool, str]:
        """Running, stalled (no round for `STALL_ROUNDS` intervals) or not running."""
        since = self._monotonic() - self._last_round
        # A round takes milliseconds, seconds with a plot or a checkpoint: ten missed rounds
        # mean the thread is stuck.
        if not self.alive:
            state = "not running"
        elif since > STALL_ROUNDS * self.interval:
            state = "stalled"
        else:
            state = "running"
        return state == "running", f"{state}, last round {since:.1f} s ago"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.engine.evaluate()
            except Exception:  # one bad evaluation must not end alerting for good
                _log.exception("alert_evaluation_failed")
            self._last_round = self._monotonic()
            for job in self._jobs:
                if self._monotonic() < job.due or self._stop.is_set():
                    continue
                try:
                    job.run()
                except Exception:
                    _log.exception("scheduled_job_failed", job=job.name)
                job.due = self._monotonic() + job.seconds
