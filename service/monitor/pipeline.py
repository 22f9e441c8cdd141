"""The monitor pipeline: sampled observations -> signals -> detectors -> readings.

Three parts, each in its own module: the intake (`intake`: bounded queue and worker
thread; the relay's sink), the per-signal stream state (`monitored_signal`, with
`signal_rows` for extraction, rate limits and embedding, and `evidence`) and the
checkpoint encoding (`checkpoint_codec`). This module joins them: for each batch it
decodes the calls, groups them by (model, version), feeds each signal and publishes a
`drift` (or, for OOD scorers, `ood`) reading per detector it updated to alerting's
reading store. Overload sheds work, counted: rows past a signal's rate limit and
observations that waited longer than `max_lag_seconds`. Its metrics are read from an
immutable `MonitorStats` snapshot (`collector`).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from prometheus_client.registry import CollectorRegistry

from service.alerting.reading_store import ReadingStore
from service.alerting.readings import Reading, ReadingKey, SourceKind
from service.dataplane.observation import RpcObservation
from service.label_bounds import LabelPolicy
from service.monitor.checkpoint_codec import check_state, decode_state, encode_state
from service.monitor.collector import MonitorCollector
from service.monitor.decoding import DecodedCall, DecodeError, decode_observation
from service.monitor.intake import Batch, ObservationIntake
from service.monitor.model_versions import VersionResolver
from service.monitor.monitored_signal import MonitoredSignal
from service.monitor.reference import ReferenceStore
from service.monitor.settings import PipelineConfig
from service.monitor.signal_rows import rows_of
from service.monitor.stats import MonitorCounters, MonitorStats
from service.store.checkpointer import CheckpointRegistry

CHECKPOINT_PART = "pipeline"
IDLE_REFRESH_SECONDS = 1.0  # time windows move on without traffic: re-read them this often
DETECTOR_KINDS: tuple[SourceKind, ...] = ("drift", "ood")

_log = structlog.get_logger("outrider.monitor")


class MonitorPipeline:
    """The observation sink and detector worker; see the module docstring.

    Readings go to `sink` (alerting's reading store; a store of its own when None), on the
    worker thread. Version labels follow `labels`, the process's one label policy.
    """

    def __init__(
        self,
        settings: PipelineConfig,
        *,
        registry: CollectorRegistry | None,
        state_dir: Path,
        sink: ReadingStore | None = None,
        labels: LabelPolicy | None = None,
        checkpoints: CheckpointRegistry | None = None,
        version_lookup: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.monitor = settings.monitor
        self._clock = clock
        self._monotonic = monotonic
        self._sink = sink if sink is not None else ReadingStore()
        self._store = ReferenceStore(state_dir)
        self.counters = MonitorCounters(monotonic)
        now = monotonic()
        # Raises ReferenceError/ReferenceMismatch/EmbedderError now, at start, not mid-stream.
        self._signals: dict[str, list[MonitoredSignal]] = {
            model: [
                MonitoredSignal(model, s, self.monitor, self._store, self.counters, now)
                for s in ms.signals
            ]
            for model, ms in settings.models.items()
        }
        self._sides = {
            model: (
                any(s.settings.source.side == "input" for s in signals),
                any(s.settings.source.side == "output" for s in signals),
            )
            for model, signals in self._signals.items()
        }
        lookup = version_lookup if self.monitor.fetch_model_metadata else None
        self._resolver = VersionResolver(lookup)
        self._labels = labels or LabelPolicy(known_models=settings.models)
        self._state_lock = threading.RLock()
        self.intake = ObservationIntake(
            self.monitor,
            process=self.process,
            idle=self._refresh_idle,
            on_failure=lambda: self.counters.observations.inc(("internal_error",)),
            monotonic=monotonic,
        )
        if registry is not None:
            registry.register(MonitorCollector(self.stats))
        if checkpoints is not None:
            checkpoints.register(CHECKPOINT_PART, self)

    # -- the sink and the worker (see `intake`) ----------------------------------------------

    def offer(self, obs: RpcObservation) -> bool:
        """Queues a sampled observation; False (dropped) when the queue is full. Never blocks."""
        return self.intake.offer(obs)

    @property
    def queue_depth(self) -> int:
        return self.intake.queue_depth

    def start(self) -> None:
        """Starts the worker thread (idempotent)."""
        self.intake.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the worker after it processes what is queued (bounded by `timeout`)."""
        self.intake.stop(timeout)

    def drain(self, *, limit_batches: int | None = None) -> int:
        """Processes queued observations on the calling thread (tests, tools); how many."""
        return self.intake.drain(limit_batches=limit_batches)

    def health(self) -> tuple[bool, str]:
        """Not ok while the queue is full (the worker is behind or stalled)."""
        return self.intake.health()

    # -- one batch ------------------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        """Decodes, extracts, updates detectors and publishes readings for one batch."""
        mono = self._monotonic()
        observations = self.counters.observations
        grouped: dict[tuple[str, str], list[DecodedCall]] = defaultdict(list)
        for enqueued, obs in batch:
            if obs.probe:
                observations.inc(("probe",))
                continue
            if mono - enqueued > self.monitor.max_lag_seconds:
                self._shed_observation(obs)
                continue
            if not obs.sampled:
                observations.inc(("unsampled",))
                continue
            try:
                calls = decode_observation(obs, self._resolver, self._wanted_sides)
            except DecodeError as exc:
                self.counters.decode_errors.inc((exc.reason,), detail=exc.detail)
                observations.inc(("decode_error",))
                continue
            if not calls:
                observations.inc(("no_calls",))
            for call in calls:
                if call.model not in self._signals:
                    observations.inc(("unmonitored",))
                    continue
                observations.inc(("decoded",))
                grouped[(call.model, self._labels.version(call.model, call.version))].append(call)
        readings: list[Reading] = []
        with self._state_lock:
            now = self._clock()
            for (model, version), calls in grouped.items():
                for signal in self._signals[model]:
                    rows, ids = rows_of(signal, calls, mono)
                    if rows is not None and signal.feed(version, rows, ids, now):
                        readings += signal.read(version, now)
        self._publish(readings)

    def _wanted_sides(self, model: str) -> tuple[bool, bool]:
        return self._sides.get(model, (False, False))

    def _shed_observation(self, obs: RpcObservation) -> None:
        self.counters.observations.inc(("shed_lag",))
        for signal in self._signals.get(obs.model_name, ()):
            self.counters.shed_samples.inc(
                (signal.model, signal.name), detail="waited past max_lag"
            )

    def _refresh_idle(self) -> None:
        """Re-reads streams with time windows when no traffic came, so their windows move on."""
        with self._state_lock:
            now = self._clock()
            readings = [
                reading
                for signal in self._all_signals()
                for version, stream in signal.streams.items()
                if stream.timed and now - stream.last_refresh >= IDLE_REFRESH_SECONDS
                for reading in signal.read(version, now)
            ]
        self._publish(readings)

    def _publish(self, readings: list[Reading]) -> None:
        for reading in readings:
            try:
                self._sink.publish(reading)
            except Exception:  # noqa: BLE001 - alerting bugs must not stop monitoring
                _log.exception("reading_not_published", key=reading.key)

    def _all_signals(self) -> list[MonitoredSignal]:
        return [signal for signals in self._signals.values() for signal in signals]

    # -- views ----------------------------------------------------------------------------

    def readings(self) -> dict[ReadingKey, Reading]:
        """The latest reading per (model, version, signal, detector) of the monitored models."""
        return {
            key: reading
            for key, reading in self._sink.latest(DETECTOR_KINDS).items()
            if key.model in self._signals
        }

    def reference_sizes(self) -> dict[tuple[str, str, str], int]:
        """Reference rows per (model, version the reference came from, signal)."""
        return {
            (s.model, s.reference.version or "unknown", s.name): s.reference.count
            for s in self._all_signals()
            if s.reference is not None
        }

    def capture_progress(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(captured, wanted) rows per (model, signal) still capturing a reference."""
        return {
            (s.model, s.name): (s.capture.count, s.capture.size)
            for s in self._all_signals()
            if s.capture is not None
        }

    def stats(self) -> MonitorStats:
        """An immutable snapshot of what the monitor's metrics show."""
        return MonitorStats(
            readings=self.readings(),
            reference_sizes=self.reference_sizes(),
            counts=self.counters.counts(),
            queue_depth=self.queue_depth,
        )

    # -- checkpoints (see `checkpoint_codec`) -------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Detector states, time windows and partial captures (no pickle)."""
        with self._state_lock:
            return encode_state(self._all_signals(), versions=None)

    def load_state_dict(self, state: Mapping[str, Any]) -> list[str]:
        """Restores `state_dict()`; returns what was skipped and why (logged too).

        Entries for signals or detectors no longer configured, or saved with other settings,
        are skipped one by one (those detectors start fresh). A state this pipeline did not
        write raises ValueError and changes nothing.
        """
        versions = check_state(state)
        with self._state_lock:
            if versions is not None:  # saved by a release without a shared label policy
                self._labels.admit(versions)
            skipped = decode_state(state, self._all_signals())
            # Publish what the restored detectors say now, so metrics and alert rules see the
            # restored state at once rather than after the next window of traffic.
            now = self._clock()
            restored = [
                reading
                for signal in self._all_signals()
                for version in signal.streams
                for reading in signal.read(version, now)
            ]
        self._publish(restored)
        for reason in skipped:
            _log.warning("checkpoint_entry_skipped", reason=reason)
        return skipped
