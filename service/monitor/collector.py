"""Prometheus metrics of the monitor, built from detector state when Prometheus scrapes.

Nothing is set on the hot path: `collect` reads one `MonitorStats` snapshot (latest readings,
reference sizes, counters, queue depth). Labels are bounded by construction: models come
from the config and versions past the configured limit already fold into `other`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from service.monitor.reference import reference_version_labels
from service.monitor.stats import MonitorStats

_DETECTOR_LABELS = ["model", "version", "signal", "detector"]


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


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


class _Families:
    """The metric families of one scrape."""

    def __init__(self) -> None:
        d = _DETECTOR_LABELS
        self.score = _gauge("outrider_drift_score", "Latest detector statistic.", d)
        self.threshold = _gauge(
            "outrider_drift_threshold",
            "Decision threshold on the score's scale: the score above it signals drift.",
            d,
        )
        self.p_value = _gauge("outrider_drift_p_value", "Latest detector p-value.", d)
        self.detected = _gauge(
            "outrider_drift_detected",
            "1 when the detector's latest evaluation signalled drift, else 0.",
            d,
        )
        self.ood = _gauge(
            "outrider_ood_ratio", "Share of the window's rows flagged out of distribution.", d
        )
        self.fill = _gauge(
            "outrider_window_fill_ratio",
            "Fraction of the detector's window holding samples (0..1).",
            d,
        )
        self.reference = _gauge(
            "outrider_reference_samples",
            "Rows in the signal's reference sample. A reference applies to every version of "
            "its model: one series per version of the signal's traffic (the drift metrics' "
            "version labels); before any traffic, the version it was built or captured from.",
            ["model", "version", "signal"],
        )
        self.errors = _counter(
            "outrider_signal_errors",
            "Calls skipped because their tensor did not fit the signal, by reason.",
            ["model", "signal", "reason"],
        )
        self.shed = _counter(
            "outrider_monitor_shed_samples",
            "Samples not fed to detectors because the monitor was overloaded.",
            ["model", "signal"],
        )
        self.fed = _counter(
            "outrider_monitor_samples",
            "Samples (rows) that reached the signal's detectors.",
            ["model", "signal"],
        )
        self.decode = _counter(
            "outrider_monitor_decode_errors",
            "Sampled observations that could not be decoded, by reason.",
            ["reason"],
        )
        self.observed = _counter(
            "outrider_monitor_observations",
            "Observations the monitor worker took from its queue, by outcome.",
            ["outcome"],
        )
        self.depth = _gauge(
            "outrider_monitor_queue_depth", "Observations waiting for the monitor worker.", []
        )

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
