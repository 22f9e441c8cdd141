"""Readings: what the detector worker and the probe scheduler hand to the alert rules.

A reading is one evaluation of one detector (or one probe suite) at one moment. It is a
plain value: the alert engine keeps the latest per key, the reading history keeps a bounded
ring of them for evidence and plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class ReadingKey(NamedTuple):
    """Which stream a reading belongs to: one detector on one signal of one model version.

    For probe readings `source` is the suite name and `detector` is empty, so a probe key
    never collides with a detector key (detector names are never empty).
    """

    model: str
    version: str
    source: str
    detector: str


@dataclass(frozen=True, slots=True)
class DetectorReading:
    """One detector's output on one signal of one model version, read at `timestamp`."""

    model: str
    version: str
    signal: str
    detector: str
    timestamp: float
    """Seconds since the epoch (`time.time()`)."""
    drift_detected: bool
    score: float | None
    threshold: float | None
    p_value: float | None
    ood_ratio: float | None
    window_fill: float
    """Fraction of the detector's window that holds samples, 0..1."""
    top_dimensions: tuple[tuple[int, float], ...] = ()
    """The most drifting dimensions with their statistic, most drifting first."""
    example_request_ids: tuple[str, ...] = ()

    @property
    def key(self) -> ReadingKey:
        """The stream this reading belongs to."""
        return ReadingKey(self.model, self.version, self.signal, self.detector)


@dataclass(frozen=True, slots=True)
class ProbeReading:
    """One probe suite's result against one model version, read at `timestamp`."""

    model: str
    version: str
    suite: str
    timestamp: float
    regression: bool
    accuracy: float
    baseline_accuracy: float
    p_value: float | None

    @property
    def key(self) -> ReadingKey:
        """The stream this reading belongs to (detector left empty: see `ReadingKey`)."""
        return ReadingKey(self.model, self.version, self.suite, "")


Reading = DetectorReading | ProbeReading
