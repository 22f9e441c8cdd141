"""Probe results as Prometheus metrics on an injected registry, with the shared label policy."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from service import metric_families as families
from service.label_bounds import LabelPolicy
from service.probes.evaluation import RunResults


class ProbeMetrics:
    """The probe metric families; one instance per registry."""

    def __init__(self, registry: CollectorRegistry, *, labels: LabelPolicy) -> None:
        self.labels = labels
        # Families are declared in service/metric_families.py (the one list).
        self.accuracy = families.PROBE_ACCURACY.gauge(registry)
        self.attack_success = families.PROBE_ATTACK_SUCCESS.gauge(registry)
        self.median_queries = families.PROBE_ATTACK_MEDIAN_QUERIES.gauge(registry)
        self.flip = families.PROBE_FLIP.gauge(registry)
        self.confidence = families.PROBE_CONFIDENCE.gauge(registry)
        self.margin = families.PROBE_MARGIN.gauge(registry)
        self.stability = families.PROBE_STABILITY.gauge(registry)
        self.regression = families.PROBE_REGRESSION.gauge(registry)
        self.regression_p_value = families.PROBE_REGRESSION_P_VALUE.gauge(registry)
        self.runs = families.PROBE_RUNS.counter(registry)
        self.last_run = families.PROBE_LAST_RUN.gauge(registry)
        self.duration = families.PROBE_RUN_DURATION.gauge(registry)

    def record_outcome(
        self, model: str, suite: str, outcome: str, finished_at: float, duration: float
    ) -> None:
        self.runs.labels(model, suite, outcome).inc()
        self.last_run.labels(model, suite, outcome).set(finished_at)
        self.duration.labels(model, suite).set(duration)

    def record_results(self, model: str, version: str, suite: str, results: RunResults) -> None:
        v = self.labels.version(model, version)
        self.accuracy.labels(model, v, suite, "all").set(results.accuracy)
        for variant, value in results.variant_accuracy.items():
            self.accuracy.labels(model, v, suite, variant).set(value)
        if results.attack_success is not None:
            self.attack_success.labels(model, v, suite).set(results.attack_success)
        if results.median_queries is not None:
            self.median_queries.labels(model, v, suite).set(results.median_queries)
        if results.flip_rate is not None:
            self.flip.labels(model, v, suite).set(results.flip_rate)
        for stat, value in results.confidence.items():
            self.confidence.labels(model, v, suite, stat).set(value)
        for stat, value in results.margin.items():
            self.margin.labels(model, v, suite, stat).set(value)
        for stat, value in results.stability_radius.items():
            self.stability.labels(model, v, suite, stat).set(value)

    def record_attack(
        self, model: str, version: str, suite: str, success: float, median_queries: float | None
    ) -> None:
        v = self.labels.version(model, version)
        self.attack_success.labels(model, v, suite).set(success)
        if median_queries is not None:
            self.median_queries.labels(model, v, suite).set(median_queries)

    def record_regression(
        self, model: str, version: str, suite: str, regression: bool, p_value: float | None
    ) -> None:
        v = self.labels.version(model, version)
        self.regression.labels(model, v, suite).set(1.0 if regression else 0.0)
        if p_value is not None:
            self.regression_p_value.labels(model, v, suite).set(p_value)
