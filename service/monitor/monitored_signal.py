"""One configured signal of one model, as the monitor runs it: per-version stream state.

A `MonitoredSignal` holds the signal's extractor, its reference (or the live capture that
will become it) and one `VersionStream` per model version: that version's detectors and
evidence. `feed` takes rows (from `signal_rows`), finishes a capture when it can, updates
the detectors and keeps the evidence; `read` turns a stream's detectors into readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import structlog

from service.alerting.readings import Reading
from service.monitor.detector_factory import DetectorBuildError, build_detector
from service.monitor.embedder import OnnxEmbedder
from service.monitor.evidence import TOP_MEAN_SHIFTS, StreamEvidence
from service.monitor.mean_shift import MeanShifts
from service.monitor.monitored_detector import MonitoredDetector
from service.monitor.rate_limit import TokenBucket
from service.monitor.reference import (
    Reference,
    ReferenceCapture,
    ReferenceError,
    ReferenceStore,
    check_reference,
)
from service.monitor.settings import MonitorSettings, SignalSettings
from service.monitor.signals import SignalError, SignalExtractor
from service.monitor.stats import MonitorCounters

_log = structlog.get_logger("outrider.monitor")


@dataclass
class VersionStream:
    """Detectors and evidence of one (model, version, signal)."""

    detectors: dict[str, MonitoredDetector]
    evidence: StreamEvidence
    last_refresh: float = 0.0

    @property
    def timed(self) -> bool:
        """Whether a detector has time windows (they move on without traffic)."""
        return any(d.kind != "streaming" for d in self.detectors.values())


class MonitoredSignal:
    """One configured signal of one model: extractor, reference (or capture), streams."""

    def __init__(
        self,
        model: str,
        settings: SignalSettings,
        monitor: MonitorSettings,
        store: ReferenceStore,
        counters: MonitorCounters,
        now: float,
    ) -> None:
        self.model = model
        self.settings = settings
        self.monitor = monitor
        self.store = store
        self.counters = counters
        embedder = OnnxEmbedder(settings.source.embedder) if settings.source.embedder else None
        self.extractor = SignalExtractor(model, settings, embedder=embedder)
        self.reference: Reference | None = None
        self.capture: ReferenceCapture | None = None
        self.streams: dict[str, VersionStream] = {}
        self._shifts: MeanShifts | None = None
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
        """Use `reference` from now on (checked against the signal first)."""
        check_reference(reference, self.model, self.settings, self.extractor.embedder)
        self.reference = reference
        self.capture = None
        self.extractor.expect_dims(reference.dims)
        self._shifts = MeanShifts(reference.data)
        if not self.streams:
            # Fit every detector once now so bad parameters fail at start, not on traffic.
            for d in self.settings.detectors:
                self.build(d.label)

    def stream(self, version: str) -> VersionStream:
        """The stream of `version`, made (detectors fitted) on first use."""
        stream = self.streams.get(version)
        if stream is None:
            assert self.reference is not None
            detectors = {d.label: self.build(d.label) for d in self.settings.detectors}
            evidence = StreamEvidence(self.reference.dims, self.monitor.example_ids)
            stream = self.streams[version] = VersionStream(detectors, evidence)
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

    def resume_capture(self) -> None:
        """After a capture's rows were restored: rows must have the captured length."""
        if self.capture is not None and self.capture.count:
            self.extractor.expect_dims(self.capture.rows().shape[1])

    # -- feeding ----------------------------------------------------------------------------

    def feed(self, version: str, rows: np.ndarray, ids: list[str], now: float) -> bool:
        """Update `version`'s detectors and evidence with `rows`; False if none reached them."""
        if self.reference is None:
            left = self._capture(rows, version)
            if left is None or self.reference is None:
                return False
            rows = left
        try:
            stream = self.stream(version)
        except DetectorBuildError as exc:  # only after a live capture: params are checked at start
            self._count_error("detector_error", str(exc))
            return False
        for label, detector in stream.detectors.items():
            try:
                detector.update(rows, now)
            except ValueError as exc:  # a detector refusing rows must not stop the others
                self._count_error("detector_error", f"{label}: {exc}")
        stream.evidence.remember(rows, ids)
        self.counters.samples_fed.inc((self.model, self.name), float(rows.shape[0]))
        return True

    def _count_error(self, reason: str, detail: str) -> None:
        self.counters.signal_errors.inc((self.model, self.name, reason), detail=detail)

    def _capture(self, rows: np.ndarray, version: str) -> np.ndarray | None:
        """Feeds the live capture; returns rows left over once it completes (else None)."""
        capture = self.capture
        assert capture is not None
        try:
            before = capture.count
            capture.add(rows, version)
        except SignalError as exc:
            self._count_error(exc.reason, exc.detail)
            return None
        self.extractor.expect_dims(rows.shape[1])
        if not capture.done:
            return None
        reference = capture.reference()
        path = self.store.save(reference, self.settings.reference.path)
        self.set_reference(reference)
        _log.info(
            "reference_captured",
            model=self.model,
            signal=self.name,
            count=reference.count,
            dims=reference.dims,
            path=str(path),
        )
        used = capture.size - before
        return rows[used:] if used < rows.shape[0] else None

    # -- reading ----------------------------------------------------------------------------

    def read(self, version: str, now: float) -> list[Reading]:
        """One reading per detector of `version`'s stream, as it stands at `now`."""
        stream = self.streams[version]
        stream.last_refresh = now
        rows = stream.evidence.rows()
        shifts = () if self._shifts is None else self._shifts.top(rows, TOP_MEAN_SHIFTS)
        evidence_shifts = tuple({"dimension": dim, "shift": shift} for dim, shift in shifts)
        keep = self.monitor.example_ids
        examples = tuple(stream.evidence.example_ids)[-keep:] if keep else ()
        readings = []
        for label, detector in stream.detectors.items():
            snap = detector.snapshot(now)
            readings.append(
                Reading(
                    kind="ood" if detector.kind == "ood_rate" else "drift",
                    model=self.model,
                    version=version,
                    signal=self.name,
                    detector=label,
                    timestamp=now,
                    verdict=snap.drift_detected,
                    score=snap.score,
                    threshold=snap.threshold,
                    p_value=snap.p_value,
                    evidence={
                        "ood_ratio": snap.ood_ratio,
                        "window_fill": snap.window_fill,
                        "top_mean_shifts": evidence_shifts,
                        "example_request_ids": examples,
                    },
                )
            )
        return readings
