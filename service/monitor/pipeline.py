"""The monitor pipeline: sampled observations -> signals -> detectors -> readings.

The relay hands observations to `offer`, which never blocks: a bounded queue takes them or
says no. One background worker thread drains the queue in batches, decodes the calls,
builds each signal's rows, updates the detectors of each (model, version, signal) and
publishes a `drift` (or, for OOD scorers, `ood`) reading per detector it updated to
alerting's reading store. Overload sheds work, counted: rows past
a signal's rate limit and observations that waited longer than `max_lag_seconds`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from prometheus_client.registry import CollectorRegistry

from service.alerting.reading_store import ReadingStore
from service.alerting.readings import Reading, ReadingKey
from service.dataplane.observation import RpcObservation
from service.label_bounds import VersionLabels
from service.monitor.decoding import DecodedCall, DecodeError, decode_observation
from service.monitor.detector_factory import DetectorBuildError, build_detector
from service.monitor.embedder import OnnxEmbedder
from service.monitor.error_counts import ThrottledCounter
from service.monitor.model_versions import VersionResolver
from service.monitor.monitored_detector import MonitoredDetector
from service.monitor.rate_limit import TokenBucket
from service.monitor.reference import (
    Reference,
    ReferenceCapture,
    ReferenceError,
    ReferenceStore,
    check_reference,
)
from service.monitor.settings import MonitorSettings, PipelineConfig, SignalSettings
from service.monitor.signals import SignalError, SignalExtractor

_log = structlog.get_logger("outrider.monitor")

STATE_FORMAT_VERSION = 1
TOP_MEAN_SHIFTS = 3
RECENT_ROWS = 512  # rows per stream kept to name the dimensions whose mean moved most
IDLE_REFRESH_SECONDS = 1.0  # time windows move on without traffic: re-read them this often


@dataclass
class _Stream:
    """Detectors and evidence of one (model, version, signal)."""

    detectors: dict[str, MonitoredDetector]
    recent: np.ndarray
    recent_pos: int = 0
    recent_count: int = 0
    example_ids: deque[str] = field(default_factory=deque)
    last_refresh: float = 0.0

    def remember(self, rows: np.ndarray, ids: list[str]) -> None:
        capacity = self.recent.shape[0]
        rows = rows[-capacity:]
        idx = (self.recent_pos + np.arange(rows.shape[0])) % capacity
        self.recent[idx] = rows
        self.recent_pos = int((self.recent_pos + rows.shape[0]) % capacity)
        self.recent_count = min(capacity, self.recent_count + rows.shape[0])
        self.example_ids.extend(i for i in ids if i)

    def evidence_state(self) -> dict[str, Any]:
        return {
            "recent": self.recent[: self.recent_count].copy()
            if self.recent_count < self.recent.shape[0]
            else np.roll(self.recent, -self.recent_pos, axis=0),
            "example_ids": json.dumps(list(self.example_ids)),
        }

    def load_evidence_state(self, state: Mapping[str, Any]) -> None:
        recent = np.asarray(state["recent"], dtype=np.float64)
        ids = json.loads(str(state["example_ids"]))
        if recent.ndim != 2 or recent.shape[1] != self.recent.shape[1]:
            raise ValueError(f"recent rows have shape {recent.shape}")
        if not isinstance(ids, list):
            raise ValueError("example_ids is not a list")
        self.recent[:] = 0.0
        self.recent_pos = self.recent_count = 0
        self.remember(recent, [str(i) for i in ids])


class _Signal:
    """One configured signal of one model: extractor, reference (or capture), streams."""

    def __init__(
        self,
        model: str,
        settings: SignalSettings,
        monitor: MonitorSettings,
        store: ReferenceStore,
        now: float,
    ) -> None:
        self.model = model
        self.settings = settings
        self.monitor = monitor
        self.store = store
        embedder = OnnxEmbedder(settings.source.embedder) if settings.source.embedder else None
        self.extractor = SignalExtractor(model, settings, embedder=embedder)
        self.reference: Reference | None = None
        self.capture: ReferenceCapture | None = None
        self.streams: dict[str, _Stream] = {}
        rate = monitor.max_samples_per_second
        self.bucket = TokenBucket(rate, rate, now) if rate is not None else None
        stored = store.load(model, settings.name, settings.reference.path)
        if stored is not None:
            self.set_reference(stored)
        elif settings.reference.capture is not None:
            self.capture = ReferenceCapture(model, settings.name, settings.reference.capture)
        else:
            where = settings.reference.path or store.path(model, settings.name)
            raise ReferenceError(
                f"signal {model}/{settings.name}: no reference at {where}; build one with "
                f"`outrider reference build --signal {model}/{settings.name} --from FILE` "
                "or set reference.capture"
            )

    @property
    def name(self) -> str:
        return self.settings.name

    def set_reference(self, reference: Reference) -> None:
        check_reference(reference, self.model, self.settings, self.extractor.embedder)
        self.reference = reference
        self.capture = None
        self.extractor.dims = reference.dims
        self._ref_mean = reference.data.mean(axis=0)
        self._ref_scale = reference.data.std(axis=0) + 1e-12
        if not self.streams:
            # Fit every detector once now so bad parameters fail at start, not on traffic.
            for d in self.settings.detectors:
                self.build(d.label)

    def stream(self, version: str) -> _Stream:
        stream = self.streams.get(version)
        if stream is None:
            assert self.reference is not None
            detectors = {d.label: self.build(d.label) for d in self.settings.detectors}
            stream = _Stream(
                detectors=detectors,
                recent=np.zeros((RECENT_ROWS, self.reference.dims)),
                example_ids=deque(maxlen=max(1, self.monitor.example_ids)),
            )
            self.streams[version] = stream
        return stream

    def build(self, label: str) -> MonitoredDetector:
        """A fresh detector `label` of this signal, fitted on the reference."""
        assert self.reference is not None
        (settings,) = [d for d in self.settings.detectors if d.label == label]
        return build_detector(
            settings,
            self.reference.data,
            max_samples_per_second=self.monitor.max_samples_per_second,
        )

    def top_mean_shifts(self, stream: _Stream) -> tuple[tuple[int, float], ...]:
        """Dimensions whose recent mean moved furthest from the reference, in reference SDs."""
        if self.reference is None or stream.recent_count == 0:
            return ()
        recent = stream.recent[: stream.recent_count]
        shift = np.abs(recent.mean(axis=0) - self._ref_mean) / self._ref_scale
        order = np.argsort(-shift, kind="stable")[:TOP_MEAN_SHIFTS]
        return tuple((int(i), round(float(shift[i]), 6)) for i in order)


def _payload_preview(extractor: SignalExtractor, call: DecodedCall, limit: int = 8) -> str:
    """The first values of the offending tensor, for logs when `log_payloads` allows it."""
    try:
        tensor = extractor.tensor_of(call)
    except SignalError:
        return "absent"
    flat = tensor.reshape(-1)[:limit]
    return f"shape {list(tensor.shape)} {tensor.dtype} first {flat.tolist()!r}"


class MonitorPipeline:
    """The observation sink and detector worker; see the module docstring.

    Readings go to `sink` (alerting's reading store; a store of its own when None), on the
    worker thread.
    """

    def __init__(
        self,
        settings: PipelineConfig,
        *,
        registry: CollectorRegistry | None,
        state_dir: Path,
        sink: ReadingStore | None = None,
        version_lookup: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.monitor = settings.monitor
        self._clock = clock
        self._monotonic = monotonic
        self._sink = sink if sink is not None else ReadingStore()
        self._store = ReferenceStore(state_dir)
        now = monotonic()
        # Raises ReferenceError/ReferenceMismatch/EmbedderError now, at start, not mid-stream.
        self._signals: dict[str, list[_Signal]] = {
            model: [_Signal(model, s, self.monitor, self._store, now) for s in ms.signals]
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
        self._versions = VersionLabels(self.monitor.version_label_limit)
        self.signal_errors = ThrottledCounter(
            "signal_error", ("model", "signal", "reason"), clock=monotonic
        )
        self.shed_samples = ThrottledCounter("samples_shed", ("model", "signal"), clock=monotonic)
        self.decode_errors = ThrottledCounter("decode_error", ("reason",), clock=monotonic)
        self.samples_fed = ThrottledCounter("samples_fed", ("model", "signal"), log=False)
        self.observations = ThrottledCounter(
            "observation", ("outcome",), log=False, clock=monotonic
        )
        self._queue: deque[tuple[float, RpcObservation]] = deque()
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._state_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if registry is not None:
            from service.monitor.collector import MonitorCollector

            registry.register(MonitorCollector(self))

    # -- the sink -------------------------------------------------------------------------

    def offer(self, obs: RpcObservation) -> bool:
        """Queues a sampled observation; False (dropped) when the queue is full. Never blocks."""
        with self._queue_lock:
            if len(self._queue) >= self.monitor.queue_size:
                return False
            self._queue.append((self._monotonic(), obs))
            full_batch = len(self._queue) >= self.monitor.batch_size
        if full_batch:
            self._wake.set()
        return True

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    # -- the worker -----------------------------------------------------------------------

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
        interval = self.monitor.evaluation_interval_seconds
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            self._drain_safely(limit_batches=None)
        self._drain_safely(limit_batches=None)

    def _drain_safely(self, limit_batches: int | None) -> int:
        try:
            return self.drain(limit_batches=limit_batches)
        except Exception:  # noqa: BLE001 - the worker must outlive any bug in one batch
            self.observations.inc(("internal_error",))
            _log.exception("monitor_batch_failed")
            return 0

    def drain(self, *, limit_batches: int | None = None) -> int:
        """Processes queued observations in batches on the calling thread; returns how many.

        The worker calls this; tests call it directly for deterministic runs.
        """
        done = 0
        batches = 0
        while limit_batches is None or batches < limit_batches:
            with self._queue_lock:
                n = min(len(self._queue), self.monitor.batch_size)
                batch = [self._queue.popleft() for _ in range(n)]
            if not batch:
                break
            self.process(batch)
            done += len(batch)
            batches += 1
        if done == 0:
            self._refresh_idle()
        return done

    # -- one batch ------------------------------------------------------------------------

    def process(self, batch: list[tuple[float, RpcObservation]]) -> None:
        """Decodes, extracts, updates detectors and emits readings for one batch."""
        mono = self._monotonic()
        grouped: dict[tuple[str, str], list[DecodedCall]] = defaultdict(list)
        for enqueued, obs in batch:
            if obs.probe:
                self.observations.inc(("probe",))
                continue
            if mono - enqueued > self.monitor.max_lag_seconds:
                self._shed_observation(obs)
                continue
            if not obs.sampled:
                self.observations.inc(("unsampled",))
                continue
            try:
                calls = decode_observation(obs, self._resolver, self._wanted_sides)
            except DecodeError as exc:
                self.decode_errors.inc((exc.reason,), detail=exc.detail)
                self.observations.inc(("decode_error",))
                continue
            if not calls:
                self.observations.inc(("no_calls",))
            for call in calls:
                if call.model not in self._signals:
                    self.observations.inc(("unmonitored",))
                    continue
                self.observations.inc(("decoded",))
                grouped[(call.model, self._versions.label(call.model, call.version))].append(call)
        touched: list[tuple[_Signal, str]] = []
        with self._state_lock:
            now = self._clock()
            for (model, version), calls in grouped.items():
                for signal in self._signals[model]:
                    if self._feed(signal, version, calls, mono, now):
                        touched.append((signal, version))
            readings = [r for s, v in touched for r in self._read(s, v, now)]
        self._publish(readings)

    def _wanted_sides(self, model: str) -> tuple[bool, bool]:
        return self._sides.get(model, (False, False))

    def _shed_observation(self, obs: RpcObservation) -> None:
        self.observations.inc(("shed_lag",))
        for signal in self._signals.get(obs.model_name, ()):
            self.shed_samples.inc((signal.model, signal.name), detail="waited past max_lag")

    def _rows_of(self, signal: _Signal, calls: list[DecodedCall], mono: float) -> tuple[
        np.ndarray | None, list[str]
    ]:
        """The signal's rows from calls, rate-limited; bad calls counted and skipped."""
        parts: list[np.ndarray] = []
        ids: list[str] = []
        for call in calls:
            try:
                rows = (
                    signal.extractor.tensor_of(call)
                    if signal.extractor.embedder is not None
                    else signal.extractor.rows(call)
                )
            except SignalError as exc:
                detail = exc.detail
                if self.monitor.log_payloads:
                    detail += f"; payload: {_payload_preview(signal.extractor, call)}"
                self.signal_errors.inc((signal.model, signal.name, exc.reason), detail=detail)
                continue
            if signal.extractor.embedder is None and parts and rows.shape[1] != parts[0].shape[1]:
                self.signal_errors.inc(
                    (signal.model, signal.name, "wrong_shape"),
                    detail=f"rows have {rows.shape[1]} dims, earlier rows {parts[0].shape[1]}",
                )
                continue
            parts.append(rows)
            ids.append(call.request_id)
        if not parts:
            return None, ids
        total = sum(p.shape[0] for p in parts)
        allowed = signal.bucket.take(total, mono) if signal.bucket is not None else total
        if allowed < total:
            self.shed_samples.inc(
                (signal.model, signal.name), float(total - allowed), detail="rate limit"
            )
        if allowed == 0:
            return None, ids
        if signal.extractor.embedder is not None:
            return self._embed(signal, parts, allowed), ids
        return np.concatenate(parts, axis=0)[:allowed], ids

    def _embed(self, signal: _Signal, tensors: list[np.ndarray], allowed: int) -> np.ndarray | None:
        """Embeds the first `allowed` rows of the calls' tensors in one batched run."""
        # One run needs one row shape: keep the most common one, count the others.
        shapes = Counter((t.shape[1:], t.dtype.str) for t in tensors)
        (shape, dtype), _ = shapes.most_common(1)[0]
        same = [t for t in tensors if t.shape[1:] == shape and t.dtype.str == dtype]
        if len(same) < len(tensors):
            self.signal_errors.inc(
                (signal.model, signal.name, "wrong_shape"),
                float(len(tensors) - len(same)),
                detail="embedder inputs of differing shapes in one batch",
            )
        stacked = np.concatenate(same, axis=0)[:allowed]
        try:
            return signal.extractor.rows_from_tensor(stacked)
        except SignalError:
            # One bad call (say, an input the embedder turns into NaN) must not cost the
            # others in its batch: embed call by call, counting and skipping only the bad.
            return self._embed_each(signal, same, allowed)

    def _embed_each(
        self, signal: _Signal, tensors: list[np.ndarray], allowed: int
    ) -> np.ndarray | None:
        kept: list[np.ndarray] = []
        for tensor in tensors:
            if allowed <= 0:
                break
            tensor = tensor[:allowed]
            allowed -= tensor.shape[0]
            try:
                kept.append(signal.extractor.rows_from_tensor(tensor))
            except SignalError as exc:
                self.signal_errors.inc((signal.model, signal.name, exc.reason), detail=exc.detail)
        return np.concatenate(kept, axis=0) if kept else None

    def _feed(
        self, signal: _Signal, version: str, calls: list[DecodedCall], mono: float, now: float
    ) -> bool:
        rows, ids = self._rows_of(signal, calls, mono)
        if rows is None:
            return False
        if signal.reference is None:
            rows = self._capture(signal, rows, version)
            if rows is None or signal.reference is None:
                return False
        try:
            stream = signal.stream(version)
        except DetectorBuildError as exc:  # only after a live capture: params are checked at start
            self.signal_errors.inc((signal.model, signal.name, "detector_error"), detail=str(exc))
            return False
        for label, detector in stream.detectors.items():
            try:
                detector.update(rows, now)
            except ValueError as exc:  # a detector refusing rows must not stop the others
                self.signal_errors.inc(
                    (signal.model, signal.name, "detector_error"), detail=f"{label}: {exc}"
                )
        stream.remember(rows, ids)
        self.samples_fed.inc((signal.model, signal.name), float(rows.shape[0]))
        return True

    def _capture(self, signal: _Signal, rows: np.ndarray, version: str) -> np.ndarray | None:
        """Feeds a live capture; returns rows left over once it completes (else None)."""
        capture = signal.capture
        assert capture is not None
        try:
            before = capture.count
            capture.add(rows, version)
        except SignalError as exc:
            self.signal_errors.inc((signal.model, signal.name, exc.reason), detail=exc.detail)
            return None
        signal.extractor.dims = rows.shape[1]
        if not capture.done:
            return None
        reference = capture.reference()
        path = self._store.save(reference, signal.settings.reference.path)
        signal.set_reference(reference)
        _log.info(
            "reference_captured",
            model=signal.model,
            signal=signal.name,
            count=reference.count,
            dims=reference.dims,
            path=str(path),
        )
        used = capture.size - before
        return rows[used:] if used < rows.shape[0] else None

    def _read(self, signal: _Signal, version: str, now: float) -> list[Reading]:
        stream = signal.streams[version]
        stream.last_refresh = now
        shifts = tuple(
            {"dimension": dim, "shift": shift} for dim, shift in signal.top_mean_shifts(stream)
        )
        examples = tuple(stream.example_ids)[-self.monitor.example_ids :] if (
            self.monitor.example_ids
        ) else ()
        out = []
        for label, detector in stream.detectors.items():
            snap = detector.snapshot(now)
            out.append(
                Reading(
                    kind="ood" if detector.kind == "ood_rate" else "drift",
                    model=signal.model,
                    version=version,
                    signal=signal.name,
                    detector=label,
                    timestamp=now,
                    verdict=snap.drift_detected,
                    score=snap.score,
                    threshold=snap.threshold,
                    p_value=snap.p_value,
                    evidence={
                        "ood_ratio": snap.ood_ratio,
                        "window_fill": snap.window_fill,
                        "top_mean_shifts": shifts,
                        "example_request_ids": examples,
                    },
                )
            )
        return out

    def _refresh_idle(self) -> None:
        """Re-reads streams with time windows when no traffic came, so their windows move on."""
        with self._state_lock:
            now = self._clock()
            readings = []
            for signals in self._signals.values():
                for signal in signals:
                    for version, stream in signal.streams.items():
                        timed = any(d.kind != "streaming" for d in stream.detectors.values())
                        if timed and now - stream.last_refresh >= IDLE_REFRESH_SECONDS:
                            readings.extend(self._read(signal, version, now))
        self._publish(readings)

    def _publish(self, readings: list[Reading]) -> None:
        for reading in readings:
            try:
                self._sink.publish(reading)
            except Exception:  # noqa: BLE001 - alerting bugs must not stop monitoring
                _log.exception("reading_not_published", key=reading.key)

    # -- views ----------------------------------------------------------------------------

    def readings(self) -> dict[ReadingKey, Reading]:
        """The latest reading per (model, version, signal, detector) of the monitored models."""
        return {
            key: reading
            for key, reading in self._sink.latest(("drift", "ood")).items()
            if key.model in self._signals
        }

    def reference_sizes(self) -> dict[tuple[str, str, str], int]:
        """Reference rows per (model, version the reference came from, signal)."""
        out = {}
        for model, signals in self._signals.items():
            for signal in signals:
                ref = signal.reference
                if ref is not None:
                    out[(model, ref.version or "unknown", signal.name)] = ref.count
        return out

    def capture_progress(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(captured, wanted) rows per (model, signal) still capturing a reference."""
        return {
            (s.model, s.name): (s.capture.count, s.capture.size)
            for signals in self._signals.values()
            for s in signals
            if s.capture is not None
        }

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Detector states, time windows, partial captures and version labels (no pickle)."""
        with self._state_lock:
            streams: dict[str, Any] = {}
            evidence: dict[str, Any] = {}
            captures: dict[str, Any] = {}
            for model, signals in self._signals.items():
                for signal in signals:
                    if signal.capture is not None and signal.capture.count:
                        captures[str(len(captures))] = {
                            "model": model,
                            "signal": signal.name,
                            **signal.capture.state_dict(),
                        }
                    for version, stream in signal.streams.items():
                        evidence[str(len(evidence))] = {
                            "model": model,
                            "version": version,
                            "signal": signal.name,
                            **stream.evidence_state(),
                        }
                        for label, detector in stream.detectors.items():
                            streams[str(len(streams))] = {
                                "model": model,
                                "version": version,
                                "signal": signal.name,
                                "detector": label,
                                "kind": detector.kind,
                                "state": detector.state_dict(),
                            }
            return {
                "format_version": STATE_FORMAT_VERSION,
                "streams": streams,
                "captures": captures,
                "evidence": evidence,
                # JSON: model names may hold '/', which checkpoint keys may not.
                "versions": json.dumps(self._versions.state_dict()),
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> list[str]:
        """Restores `state_dict()`; returns what was skipped and why (logged too).

        Entries for signals or detectors no longer configured, or saved with other settings,
        are skipped one by one (those detectors start fresh). A state this pipeline did not
        write raises ValueError and changes nothing.
        """
        if not isinstance(state, Mapping) or state.get("format_version") != STATE_FORMAT_VERSION:
            found = state.get("format_version") if isinstance(state, Mapping) else None
            raise ValueError(
                f"monitor state format_version {found!r} is not {STATE_FORMAT_VERSION}"
            )
        for key in ("streams", "captures"):
            if not isinstance(state.get(key), Mapping):
                raise ValueError(f"monitor state lacks a {key!r} mapping")
        try:
            versions = json.loads(str(state.get("versions")))
            if not isinstance(versions, dict):
                raise ValueError("not a mapping")
        except ValueError as exc:
            raise ValueError(f"monitor state versions unreadable: {exc}") from None
        skipped: list[str] = []
        with self._state_lock:
            self._versions.load_state_dict(versions)
            for entry in state["captures"].values():
                signal = self._find(str(entry.get("model")), str(entry.get("signal")))
                if signal is None or signal.capture is None:
                    skipped.append(f"capture {entry.get('model')}/{entry.get('signal')}: unused")
                    continue
                try:
                    signal.capture.load_state_dict(dict(entry))
                    if signal.capture.count:
                        signal.extractor.dims = signal.capture.rows().shape[1]
                except (KeyError, ValueError) as exc:
                    skipped.append(f"capture {signal.model}/{signal.name}: {exc}")
            for entry in state["streams"].values():
                what = (
                    f"{entry.get('model')}/{entry.get('version')}/{entry.get('signal')}/"
                    f"{entry.get('detector')}"
                )
                signal = self._find(str(entry.get("model")), str(entry.get("signal")))
                if signal is None or signal.reference is None:
                    skipped.append(f"{what}: signal not configured or has no reference")
                    continue
                version = str(entry.get("version"))
                if str(entry.get("detector")) not in {d.label for d in signal.settings.detectors}:
                    skipped.append(f"{what}: detector not configured")
                    continue
                label = str(entry["detector"])
                stream = signal.stream(version)
                detector = stream.detectors[label]
                try:
                    if entry.get("kind") != detector.kind:
                        raise ValueError(f"kind {entry.get('kind')!r} is now {detector.kind!r}")
                    detector.load_state_dict(dict(entry["state"]))
                except (KeyError, TypeError, ValueError) as exc:
                    skipped.append(f"{what}: {exc}")
                    # A failed load may have changed part of the detector: start it fresh.
                    stream.detectors[label] = signal.build(label)
            for entry in state.get("evidence", {}).values():
                signal = self._find(str(entry.get("model")), str(entry.get("signal")))
                evidence_of = signal.streams.get(str(entry.get("version"))) if signal else None
                if evidence_of is None:
                    continue  # evidence of a stream with no restored detector: not needed
                try:
                    evidence_of.load_evidence_state(entry)
                except (KeyError, TypeError, ValueError) as exc:
                    skipped.append(f"evidence {entry.get('model')}/{entry.get('signal')}: {exc}")
            # Publish what the restored detectors say now, so metrics and alert rules see the
            # restored state at once rather than after the next window of traffic.
            now = self._clock()
            restored = [
                reading
                for signals in self._signals.values()
                for signal in signals
                for version in signal.streams
                for reading in self._read(signal, version, now)
            ]
        self._publish(restored)
        for reason in skipped:
            _log.warning("checkpoint_entry_skipped", reason=reason)
        return skipped

    def _find(self, model: str, name: str) -> _Signal | None:
        for signal in self._signals.get(model, ()):
            if signal.name == name:
                return signal
        return None
