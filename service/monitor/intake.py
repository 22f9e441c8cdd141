"""The monitor's intake: the relay's observation sink and the worker thread that drains it.

The relay hands observations to `offer`, which never blocks: a bounded queue takes them or
says no (the relay counts the drop). One background worker thread drains the queue in
batches and hands each batch to `process`; when a round finds nothing queued it calls
`idle` (time windows move on without traffic).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import structlog

from service.dataplane.observation import RpcObservation
from service.monitor.settings import MonitorSettings

Batch = list[tuple[float, RpcObservation]]
"""Observations with the monotonic time they were queued at."""

_log = structlog.get_logger("outrider.monitor")


class ObservationIntake:
    """A bounded queue of observations and the worker thread that processes it in batches.

    An exception in `process` is logged, reported to `on_failure` and never stops the
    worker.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        *,
        process: Callable[[Batch], None],
        idle: Callable[[], None],
        on_failure: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._process = process
        self._idle = idle
        self._on_failure = on_failure
        self._monotonic = monotonic
        self._queue: deque[tuple[float, RpcObservation]] = deque()
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def offer(self, obs: RpcObservation) -> bool:
        """Queues a sampled observation; False (dropped) when the queue is full. Never blocks."""
        with self._queue_lock:
            if len(self._queue) >= self.settings.queue_size:
                return False
            self._queue.append((self._monotonic(), obs))
            full_batch = len(self._queue) >= self.settings.batch_size
        if full_batch:
            self._wake.set()
        return True

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def health(self) -> tuple[bool, str]:
        """Not ok while the queue is full: the worker is behind or stalled, samples are shed."""
        depth, size = self.queue_depth, self.settings.queue_size
        return depth < size, f"{depth} of {size} observations queued"

    def start(self) -> None:
        """Starts the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outrider-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the worker after it processes what is queued (bounded by `timeout`)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        interval = self.settings.evaluation_interval_seconds
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            self._drain_safely()
        self._drain_safely()

    def _drain_safely(self) -> None:
        try:
            self.drain()
        except Exception:  # noqa: BLE001 - the worker must outlive any bug in one batch
            self._on_failure()
            _log.exception("monitor_batch_failed")

    def drain(self, *, limit_batches: int | None = None) -> int:
        """Processes queued observations in batches on the calling thread; returns how many.

        The worker calls this; tests call it directly for deterministic runs.
        """
        done = 0
        batches = 0
        while limit_batches is None or batches < limit_batches:
            with self._queue_lock:
                n = min(len(self._queue), self.settings.batch_size)
                batch = [self._queue.popleft() for _ in range(n)]
            if not batch:
                break
            self._process(batch)
            done += len(batch)
            batches += 1
        if done == 0:
            self._idle()
        return done
