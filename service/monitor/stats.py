"""The monitor's counters, and the immutable snapshot of them its metrics are read from.

`MonitorCounters` is written by the worker; `MonitorStats` is what one scrape reads: the
latest detector readings, reference sizes, counter values and queue depth at one moment.
The collector sees only the snapshot, never the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from service.alerting.readings import Reading, ReadingKey
from service.monitor.error_counts import LabelKey, ThrottledCounter


class MonitorCounters:
    """Work the monitor did or skipped, by label (each a `ThrottledCounter`)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.signal_errors = ThrottledCounter(
            "signal_error", ("model", "signal", "reason"), clock=monotonic
        )
        self.shed_samples = ThrottledCounter("samples_shed", ("model", "signal"), clock=monotonic)
        self.decode_errors = ThrottledCounter("decode_error", ("reason",), clock=monotonic)
        self.samples_fed = ThrottledCounter("samples_fed", ("model", "signal"), log=False)
        self.observations = ThrottledCounter(
            "observation", ("outcome",), log=False, clock=monotonic
        )

    def counts(self) -> dict[str, dict[LabelKey, float]]:
        """Every counter's values, by counter name."""
        return {
            "signal_errors": self.signal_errors.counts(),
            "shed_samples": self.shed_samples.counts(),
            "samples_fed": self.samples_fed.counts(),
            "decode_errors": self.decode_errors.counts(),
            "observations": self.observations.counts(),
        }


@dataclass(frozen=True, slots=True)
class MonitorStats:
    """What the monitor's metrics show at one moment."""

    readings: Mapping[ReadingKey, Reading]
    """The latest reading of every detector stream."""
    reference_sizes: Mapping[tuple[str, str, str], int]
    """Reference rows per (model, version the reference came from, signal)."""
    counts: Mapping[str, Mapping[LabelKey, float]]
    """`MonitorCounters.counts()`."""
    queue_depth: int
