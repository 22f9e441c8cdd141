"""Prometheus metrics of the monitor, built from detector state when Prometheus scrapes.

Nothing is set on the hot path: `collect` reads one `MonitorStats` snapshot (latest readings,
reference sizes, counters, queue depth). Labels are bounded by construction: models come
from the config and versions past the configured limit already fold into `other`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from service import metric_families as families
from service.monitor.reference import reference_version_labels
from service.monitor.stats import MonitorStats


class MonitorCollector(Collector):
    """Exports drift scores, thresholds, p-values, OOD ratios, window fill and counters."""

    def __init__(self, snapshot: Callable[[], MonitorStats]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        # Families without samples: lets the registry check names without a scrape.
        return iter(_Families().all())

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        stats = self._snapshot()
        for key, r in sorted(stats.readings.items()):
            labels = [key.model, key.version, key.signal, key.detector]
            if r.score is not None:
                f.score.add_metric(labels, r.score)
            if r.threshold is not None:
                f.threshold.add_metric(labels, r.threshold)
            if r.p_value is not None:
                f.p_value.add_metric(labels, r.p_value)
            ood_ratio = r.value("ood_ratio")
            if ood_ratio is not None:
                f.ood.add_metric(labels, ood_ratio)
            f.detected.add_metric(labels, 1.0 if r.verdict else 0.0)
            f.fill.add_metric(labels, r.value("window_fill") or 0.0)
        traffic: dict[tuple[str, str], set[str]] = defaultdict(set)
        for key in stats.readings:
            traffic[(key.model, key.signal)].add(key.version)
        for (model, built_for, signal), count in sorted(stats.reference_sizes.items()):
            for version in reference_version_labels(built_for, traffic[(model, signal)]):
                f.reference.add_metric([model, version, signal], float(count))
        for counter, family in (
            ("signal_errors", f.errors),
            ("shed_samples", f.shed),
            ("samples_fed", f.fed),
            ("decode_errors", f.decode),
            ("observations", f.observed),
        ):
            for label_values, value in sorted(stats.counts[counter].items()):
                family.add_metric(list(label_values), value)
        f.depth.add_metric([], float(stats.queue_depth))
        return iter(f.all())


class _Families:
    """The metric families of one scrape (declared in service/metric_families.py)."""

    def __init__(self) -> None:
        self.score = families.DRIFT_SCORE.gauge_family()
        self.threshold = families.DRIFT_THRESHOLD.gauge_family()
        self.p_value = families.DRIFT_P_VALUE.gauge_family()
        self.detected = families.DRIFT_DETECTED.gauge_family()
        self.ood = families.OOD_RATIO.gauge_family()
        self.fill = families.WINDOW_FILL.gauge_family()
        self.reference = families.REFERENCE_SAMPLES.gauge_family()
        self.errors = families.SIGNAL_ERRORS.counter_family()
        self.shed = families.MONITOR_SHED_SAMPLES.counter_family()
        self.fed = families.MONITOR_SAMPLES.counter_family()
        self.decode = families.MONITOR_DECODE_ERRORS.counter_family()
        self.observed = families.MONITOR_OBSERVATIONS.counter_family()
        self.depth = families.MONITOR_QUEUE_DEPTH.gauge_family()

    def all(self) -> list[Metric]:
        return [
            self.score,
            self.threshold,
            self.p_value,
            self.detected,
            self.ood,
            self.fill,
            self.reference,
            self.errors,
            self.shed,
            self.fed,
            self.decode,
            self.observed,
            self.depth,
        ]
