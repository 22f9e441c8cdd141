"""Detectors as the monitor runs them: fed rows with timestamps, read as snapshots.

Three shapes cover every configured detector:
- `StreamingDetector`: a detectors/ drift detector fed directly (windows in samples, or
  online detectors with their own calibrated run length);
- `TumblingTimeWindow`: rows collected for `window_seconds` (the latest `cap` kept), then
  tested as one window by a detector built for that many rows;
- `OodRateWindow`: an OOD scorer's flags over the last `window` rows and/or seconds, with a
  one-sided binomial test of the OOD rate against the scorer's target false-positive rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import stats

from detectors.base import DriftDetector, OODScorer

StateDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DetectorSnapshot:
    """A detector's outputs at one moment (what readings and metrics are made of)."""

    drift_detected: bool
    score: float | None
    threshold: float | None
    p_value: float | None
    ood_ratio: float | None
    window_fill: float


class MonitoredDetector(Protocol):
    """What the pipeline needs from a detector on one (model, version, signal)."""

    kind: str

    def update(self, rows: np.ndarray, now: float) -> None: ...

    def snapshot(self, now: float) -> DetectorSnapshot: ...

    def state_dict(self) -> StateDict: ...

    def load_state_dict(self, state: StateDict) -> None: ...


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class StreamingDetector:
    """A drift detector updated with every accepted row; `window` rows fill it."""

    kind = "streaming"

    def __init__(self, detector: DriftDetector, window: int) -> None:
        self.detector = detector
        self.window = window

    def update(self, rows: np.ndarray, now: float) -> None:
        self.detector.update(rows)

    def snapshot(self, now: float) -> DetectorSnapshot:
        d = self.detector
        return DetectorSnapshot(
            drift_detected=d.drift_detected,
            score=_finite(d.score),
            threshold=_finite(d.threshold),
            p_value=_finite(d.p_value),
            ood_ratio=None,
            window_fill=min(1.0, d.n_seen / self.window),
        )

    def state_dict(self) -> StateDict:
        return {"detector": self.detector.state_dict()}

    def load_state_dict(self, state: StateDict) -> None:
        self.detector.load_state_dict(dict(state["detector"]))


class TumblingTimeWindow:
    """Rows of each `seconds`-long period (the latest `cap`) tested as one window.

    `make(n)` returns a detector fitted on the reference whose window holds n rows; the
    outcome of the last completed period is what `snapshot` reports until the next one.
    """

    kind = "time_window"

    def __init__(
        self,
        make: Callable[[int], DriftDetector],
        seconds: float,
        cap: int,
        *,
        min_rows: int = 2,
    ) -> None:
        self.make = make
        self.seconds = seconds
        self.cap = cap
        self.min_rows = max(2, min_rows)
        self._rows: list[np.ndarray] = []
        self._count = 0
        self._period_start: float | None = None
        self._last = DetectorSnapshot(False, None, None, None, None, 0.0)

    def update(self, rows: np.ndarray, now: float) -> None:
        self._roll(now)
        if self._period_start is None:
            self._period_start = now
        self._rows.append(rows)
        self._count += rows.shape[0]
        if self._count > 2 * self.cap:  # keep memory bounded; only the latest `cap` matter
            kept = np.concatenate(self._rows, axis=0)[-self.cap :]
            self._rows, self._count = [kept], kept.shape[0]

    def _roll(self, now: float) -> None:
        if self._period_start is None or now - self._period_start < self.seconds:
            return
        rows = np.concatenate(self._rows, axis=0)[-self.cap :] if self._rows else None
        self._rows, self._count = [], 0
        self._period_start = None
        if rows is None or rows.shape[0] < self.min_rows:
            return
        detector = self.make(rows.shape[0]).update(rows)
        self._last = DetectorSnapshot(
            drift_detected=detector.drift_detected,
            score=_finite(detector.score),
            threshold=_finite(detector.threshold),
            p_value=_finite(detector.p_value),
            ood_ratio=None,
            window_fill=1.0,
        )

    def snapshot(self, now: float) -> DetectorSnapshot:
        self._roll(now)
        fill = 0.0
        if self._period_start is not None:
            fill = min(1.0, (now - self._period_start) / self.seconds)
        last = self._last
        return DetectorSnapshot(
            last.drift_detected, last.score, last.threshold, last.p_value, None, fill
        )

    def state_dict(self) -> StateDict:
        rows = np.concatenate(self._rows, axis=0) if self._rows else np.zeros((0, 0))
        last = self._last
        return {
            "rows": rows,
            "period_start": -1.0 if self._period_start is None else self._period_start,
            "last": np.array(
                [
                    float(last.drift_detected),
                    _nan(last.score),
                    _nan(last.threshold),
                    _nan(last.p_value),
                ]
            ),
        }

    def load_state_dict(self, state: StateDict) -> None:
        rows = np.asarray(state["rows"], dtype=np.float64)
        last = np.asarray(state["last"], dtype=np.float64)
        if last.shape != (4,) or rows.ndim != 2:
            raise ValueError("time window state has the wrong shape")
        start = float(state["period_start"])
        self._rows = [rows] if rows.shape[0] else []
        self._count = rows.shape[0]
        self._period_start = None if start < 0 else start
        self._last = DetectorSnapshot(
            bool(last[0]), _opt(last[1]), _opt(last[2]), _opt(last[3]), None, 0.0
        )


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _opt(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class OodRateWindow:
    """The share of OOD-flagged rows over the last `window` rows and/or `seconds`.

    Drift is signalled when a one-sided binomial test rejects "the OOD rate is the scorer's
    target false-positive rate" at `alpha`; `score` is the mean OOD score of the window and
    `threshold` the scorer's calibrated per-row threshold.
    """

    kind = "ood_rate"

    def __init__(
        self,
        scorer: OODScorer,
        *,
        window: int | None,
        seconds: float | None,
        alpha: float = 0.01,
        cap: int = 100_000,
    ) -> None:
        if window is None and seconds is None:
            raise ValueError("an OOD window needs window rows, seconds, or both")
        self.scorer = scorer
        self.window = window
        self.seconds = seconds
        self.alpha = alpha
        self._capacity = window if window is not None else cap
        self._scores = np.full(self._capacity, np.nan)
        self._times = np.full(self._capacity, -np.inf)
        self._pos = 0
        self._count = 0

    def update(self, rows: np.ndarray, now: float) -> None:
        scores = self.scorer.score(rows)
        k = scores.shape[0]
        if k >= self._capacity:
            self._scores[:] = scores[-self._capacity :]
            self._times[:] = now
            self._pos = 0
        else:
            idx = (self._pos + np.arange(k)) % self._capacity
            self._scores[idx] = scores
            self._times[idx] = now
            self._pos = int((self._pos + k) % self._capacity)
        self._count = min(self._capacity, self._count + k)

    def _live(self, now: float) -> np.ndarray:
        mask = np.isfinite(self._scores)
        if self.seconds is not None:
            mask &= self._times >= now - self.seconds
        return np.asarray(self._scores[mask])

    def snapshot(self, now: float) -> DetectorSnapshot:
        scores = self._live(now)
        threshold = self.scorer.threshold
        n = scores.shape[0]
        if self.window is not None:
            fill = min(1.0, n / self.window)
        else:
            assert self.seconds is not None
            recent = self._times[np.isfinite(self._scores)]
            span = now - float(recent.min()) if recent.size else 0.0
            fill = min(1.0, max(0.0, span / self.seconds))
        if n == 0 or threshold is None:
            return DetectorSnapshot(False, None, threshold, None, None, fill)
        flagged = int((scores > threshold).sum())
        p_value = float(stats.binom.sf(flagged - 1, n, self.scorer.target_fpr))
        # Wait for a full window before signalling: a few early rows prove nothing.
        detected = p_value < self.alpha and fill >= 1.0
        return DetectorSnapshot(
            drift_detected=detected,
            score=float(scores.mean()),
            threshold=threshold,
            p_value=p_value,
            ood_ratio=flagged / n,
            window_fill=fill,
        )

    def state_dict(self) -> StateDict:
        return {
            "scorer": self.scorer.state_dict(),
            "scores": self._scores.copy(),
            "times": self._times.copy(),
            "pos": self._pos,
            "count": self._count,
        }

    def load_state_dict(self, state: StateDict) -> None:
        scores = np.asarray(state["scores"], dtype=np.float64)
        times = np.asarray(state["times"], dtype=np.float64)
        if scores.shape != (self._capacity,) or times.shape != (self._capacity,):
            raise ValueError(
                f"OOD window state holds {scores.shape} rows, expected ({self._capacity},)"
            )
        self.scorer.load_state_dict(dict(state["scorer"]))
        self._scores, self._times = scores.copy(), times.copy()
        self._pos = int(state["pos"]) % self._capacity
        self._count = int(state["count"])
