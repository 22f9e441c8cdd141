"""Probe results as Prometheus metrics on an injected registry, with the shared label policy."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from service.label_bounds import LabelPolicy
from service.probes.evaluation import RunResults


class ProbeMetrics:
    """The probe metric families; one instance per registry."""

    def __init__(self, registry: CollectorRegistry, *, labels: LabelPolicy) -> None:
        self.labels = labels
        mvs = ["model", "version", "suite"]
        self.accuracy = Gauge(
            "outrider_probe_accuracy_ratio",
            "Share of probes the model labels correctly, per variant (clean, corruption/"
            "severity, attack) and 'all'.",
            [*mvs, "variant"],
            registry=registry,
        )
        self.attack_success = Gauge(
            "outrider_probe_attack_success_ratio",
            "Share of correctly labelled clean probes whose adversarial version fools the model.",
            mvs,
            registry=registry,
        )
        self.median_queries = Gauge(
            "outrider_probe_attack_median_queries",
            "Median model queries an attack needed to succeed.",
            mvs,
            registry=registry,
        )
        self.flip = Gauge(
            "outrider_probe_flip_ratio",
            "Share of probes whose label differs from the last known-good version's label.",
            mvs,
            registry=registry,
        )
        self.confidence = Gauge(
            "outrider_probe_confidence_ratio",
            "Top-class score over the suite's probes (statistic: mean, p10).",
            [*mvs, "statistic"],
            registry=registry,
        )
        self.margin = Gauge(
            "outrider_probe_margin_ratio",
            "Top minus runner-up score over the suite's probes (statistic: mean, p10).",
            [*mvs, "statistic"],
            registry=registry,
        )
        self.stability = Gauge(
            "outrider_probe_stability_radius",
            "Gaussian-noise stability radius sigma * Phi^-1(p_A) in input units "
            "(statistic: median, mean).",
            [*mvs, "statistic"],
            registry=registry,
        )
        self.regression = Gauge(
            "outrider_probe_regression",
            "1 when the version regressed against the last known-good version on the suite.",
            mvs,
            registry=registry,
        )
        self.regression_p_value = Gauge(
            "outrider_probe_regression_p_value",
            "p-value of the paired McNemar test against the last known-good version.",
            mvs,
            registry=registry,
        )
        self.runs = Counter(
            "outrider_probe_runs",
            "Probe runs by outcome (ok, failed, refused).",
            ["model", "suite", "outcome"],
            registry=registry,
        )
        self.last_run = Gauge(
            "outrider_probe_last_run_timestamp_seconds",
            "When a suite last finished a run, by outcome.",
            ["model", "suite", "outcome"],
            registry=registry,
        )
        self.duration = Gauge(
            "outrider_probe_run_duration_seconds",
            "Wall time of the suite's last run.",
            ["model", "suite"],
            registry=registry,
        )

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
