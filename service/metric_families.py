"""Every metric family outrider exports, with its type, labels and help: the one list.

Rooms make their metrics from these declarations (`Family.counter(registry)`, or
`Family.gauge_family()` in a scrape-time collector) and never name a family themselves, so
this list is exactly what /metrics shows: docs/metrics.md and the metric contract that
deploy/ is checked against are generated from it (scripts/generate_docs.py,
tests/deploy/deploy_contract.py), and a test compares it with a real scrape.

To add a family: declare it here (name as exposed, counters ending in `_total`; base units;
labels bounded by the label policy, never request ids, client identities or payload
values), add it to `FAMILIES`, make the metric from it in the room that owns it, and run
`python scripts/generate_docs.py`. `contract` says who relies on it: "design" (DESIGN.md's
metric table), "announced" (promised to dashboards and rules in deploy/), or "internal".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

Kind = Literal["counter", "gauge", "histogram"]
Contract = Literal["design", "announced", "internal"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its exposed name, type, label names, help text and contract."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    contract: Contract = "internal"

    def __post_init__(self) -> None:
        if not self.name.startswith("outrider_"):
            raise ValueError(f"metric {self.name!r} must start with 'outrider_'")
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"metric {self.name!r}: counters, and only counters, end in _total")

    @property
    def base(self) -> str:
        """The name prometheus_client takes (a counter's without `_total`)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name

    def _check(self, kind: Kind) -> None:
        if self.kind != kind:
            raise TypeError(f"metric {self.name!r} is a {self.kind}, not a {kind}")

    def counter(self, registry: CollectorRegistry) -> Counter:
        """The family as a `Counter` on `registry`."""
        self._check("counter")
        return Counter(self.base, self.help, list(self.labels), registry=registry)

    def gauge(self, registry: CollectorRegistry) -> Gauge:
        """The family as a `Gauge` on `registry`."""
        self._check("gauge")
        return Gauge(self.base, self.help, list(self.labels), registry=registry)

    def histogram(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> Histogram:
        """The family as a `Histogram` with `buckets` on `registry`."""
        self._check("histogram")
        return Histogram(
            self.base, self.help, list(self.labels), buckets=buckets, registry=registry
        )

    def gauge_family(self) -> GaugeMetricFamily:
        """An empty gauge family for a scrape-time collector to fill."""
        self._check("gauge")
        return GaugeMetricFamily(self.base, self.help, labels=list(self.labels))

    def counter_family(self) -> CounterMetricFamily:
        """An empty counter family for a scrape-time collector to fill."""
        self._check("counter")
        return CounterMetricFamily(self.base, self.help, labels=list(self.labels))


_DETECTOR = ("model", "version", "signal", "detector")
_PROBE = ("model", "version", "suite")

# -- process -----------------------------------------------------------------------------
BUILD_INFO = Family(
    "outrider_build_info", "gauge", ("version",), "outrider build information (always 1).",
    "design",
)

# -- data plane ----------------------------------------------------------------------------
REQUESTS = Family(
    "outrider_requests_total", "counter", ("model", "version", "method", "code"),
    "gRPC calls relayed, by model, version, method and status code.", "design",
)
REQUEST_DURATION = Family(
    "outrider_request_duration_seconds", "histogram", ("model", "version", "method"),
    "Duration of relayed gRPC calls as observed by the tap (request HEADERS to end).", "design",
)
CONNECTIONS_ACTIVE = Family(
    "outrider_connections_active", "gauge", (), "Client connections open on the relay.",
    "design",
)
CONNECTIONS_REJECTED = Family(
    "outrider_connections_rejected_total", "counter", ("reason",),
    "Client connections closed at once, by reason.",
)
TAP_SAMPLES = Family(
    "outrider_tap_samples_total", "counter", ("outcome",),
    "Inference calls by sampling outcome (sampled, dropped, skipped, error).", "design",
)
TAP_DISABLED = Family(
    "outrider_tap_disabled_connections_total", "counter", ("reason",),
    "Connections whose tap was switched off after an error, by reason.", "design",
)
UPSTREAM_ERRORS = Family(
    "outrider_upstream_errors_total", "counter", ("reason",),
    "Failures talking to the upstream, by reason.", "announced",
)
DRAIN_DEADLINE_CLOSES = Family(
    "outrider_drain_deadline_closes_total", "counter", (),
    "Connections closed at their drain deadline (shutdown or fallback switch) while calls "
    "may still have been open.",
)
TAP_BYTES = Family(
    "outrider_tap_bytes_total", "counter", ("direction",),
    "Bytes relayed, by direction (request: client to upstream).", "announced",
)

# -- monitor -------------------------------------------------------------------------------
DRIFT_SCORE = Family(
    "outrider_drift_score", "gauge", _DETECTOR, "Latest detector statistic.", "design"
)
DRIFT_THRESHOLD = Family(
    "outrider_drift_threshold", "gauge", _DETECTOR,
    "Decision threshold on the score's scale: the score above it signals drift.", "design",
)
DRIFT_P_VALUE = Family(
    "outrider_drift_p_value", "gauge", _DETECTOR, "Latest detector p-value.", "design"
)
DRIFT_DETECTED = Family(
    "outrider_drift_detected", "gauge", _DETECTOR,
    "1 when the detector's latest evaluation signalled drift, else 0.", "design",
)
OOD_RATIO = Family(
    "outrider_ood_ratio", "gauge", _DETECTOR,
    "Share of the window's rows flagged out of distribution.", "design",
)
WINDOW_FILL = Family(
    "outrider_window_fill_ratio", "gauge", _DETECTOR,
    "Fraction of the detector's window holding samples (0..1).", "announced",
)
REFERENCE_SAMPLES = Family(
    "outrider_reference_samples", "gauge", ("model", "version", "signal"),
    "Rows in the signal's reference sample. A reference applies to every version of its "
    "model: one series per version of the signal's traffic (the drift metrics' version "
    "labels); before any traffic, the version it was built or captured from.", "announced",
)
SIGNAL_ERRORS = Family(
    "outrider_signal_errors_total", "counter", ("model", "signal", "reason"),
    "Calls skipped because their tensor did not fit the signal, by reason.", "design",
)
MONITOR_SHED_SAMPLES = Family(
    "outrider_monitor_shed_samples_total", "counter", ("model", "signal"),
    "Samples not fed to detectors because the monitor was overloaded.", "announced",
)
MONITOR_SAMPLES = Family(
    "outrider_monitor_samples_total", "counter", ("model", "signal"),
    "Samples (rows) that reached the signal's detectors.",
)
MONITOR_DECODE_ERRORS = Family(
    "outrider_monitor_decode_errors_total", "counter", ("reason",),
    "Sampled observations that could not be decoded, by reason.",
)
MONITOR_OBSERVATIONS = Family(
    "outrider_monitor_observations_total", "counter", ("outcome",),
    "Observations the monitor worker took from its queue, by outcome.",
)
MONITOR_QUEUE_DEPTH = Family(
    "outrider_monitor_queue_depth", "gauge", (), "Observations waiting for the monitor worker."
)

# -- probes --------------------------------------------------------------------------------
PROBE_ACCURACY = Family(
    "outrider_probe_accuracy_ratio", "gauge", (*_PROBE, "variant"),
    "Share of probes the model labels correctly, per variant (clean, corruption/severity, "
    "attack) and 'all'.", "design",
)
PROBE_ATTACK_SUCCESS = Family(
    "outrider_probe_attack_success_ratio", "gauge", _PROBE,
    "Share of correctly labelled clean probes whose adversarial version fools the model.",
    "design",
)
PROBE_ATTACK_MEDIAN_QUERIES = Family(
    "outrider_probe_attack_median_queries", "gauge", _PROBE,
    "Median model queries an attack needed to succeed.",
)
PROBE_FLIP = Family(
    "outrider_probe_flip_ratio", "gauge", _PROBE,
    "Share of probes whose label differs from the last known-good version's label.",
)
PROBE_CONFIDENCE = Family(
    "outrider_probe_confidence_ratio", "gauge", (*_PROBE, "statistic"),
    "Top-class score over the suite's probes (statistic: mean, p10).",
)
PROBE_MARGIN = Family(
    "outrider_probe_margin_ratio", "gauge", (*_PROBE, "statistic"),
    "Top minus runner-up score over the suite's probes (statistic: mean, p10).",
)
PROBE_STABILITY = Family(
    "outrider_probe_stability_radius", "gauge", (*_PROBE, "statistic"),
    "Gaussian-noise stability radius sigma * Phi^-1(p_A) in input units (statistic: median, "
    "mean).",
)
PROBE_REGRESSION = Family(
    "outrider_probe_regression", "gauge", _PROBE,
    "1 when the version regressed against the last known-good version on the suite.",
    "announced",
)
PROBE_REGRESSION_P_VALUE = Family(
    "outrider_probe_regression_p_value", "gauge", _PROBE,
    "p-value of the paired McNemar test against the last known-good version.", "announced",
)
PROBE_RUNS = Family(
    "outrider_probe_runs_total", "counter", ("model", "suite", "outcome"),
    "Probe runs by outcome (ok, failed, refused).", "announced",
)
PROBE_LAST_RUN = Family(
    "outrider_probe_last_run_timestamp_seconds", "gauge", ("model", "suite", "outcome"),
    "When a suite last finished a run, by outcome.",
)
PROBE_RUN_DURATION = Family(
    "outrider_probe_run_duration_seconds", "gauge", ("model", "suite"),
    "Wall time of the suite's last run.",
)

# -- alerting ------------------------------------------------------------------------------
ALERT_STATE = Family(
    "outrider_alert_state", "gauge", ("alert", "severity", "model"),
    "State of in-process alert rules: 0 inactive, 1 pending, 2 firing (highest over the "
    "model's versions and streams).", "design",
)
ALERT_TRANSITIONS_UNDELIVERED = Family(
    "outrider_alert_transitions_undelivered", "gauge", (),
    "Alert transitions waiting for their incident to be recorded (retried each round).",
    "announced",
)
ALERT_TRANSITION_FAILURES = Family(
    "outrider_alert_transition_failures_total", "counter", (),
    "Failed attempts to record an alert transition (incident, hooks).",
)
INCIDENTS_OPEN = Family(
    "outrider_incidents_open", "gauge", (), "Incidents opened and not yet resolved.",
    "announced",
)

# -- hooks ---------------------------------------------------------------------------------
HOOK_ACTIONS = Family(
    "outrider_hook_actions_total", "counter", ("hook", "outcome"),
    "Hook actions and dispatcher decisions, by hook and outcome.", "design",
)

FAMILIES: tuple[Family, ...] = (
    BUILD_INFO,
    REQUESTS,
    REQUEST_DURATION,
    CONNECTIONS_ACTIVE,
    CONNECTIONS_REJECTED,
    TAP_SAMPLES,
    TAP_DISABLED,
    UPSTREAM_ERRORS,
    DRAIN_DEADLINE_CLOSES,
    TAP_BYTES,
    DRIFT_SCORE,
    DRIFT_THRESHOLD,
    DRIFT_P_VALUE,
    DRIFT_DETECTED,
    OOD_RATIO,
    WINDOW_FILL,
    REFERENCE_SAMPLES,
    SIGNAL_ERRORS,
    MONITOR_SHED_SAMPLES,
    MONITOR_SAMPLES,
    MONITOR_DECODE_ERRORS,
    MONITOR_OBSERVATIONS,
    MONITOR_QUEUE_DEPTH,
    PROBE_ACCURACY,
    PROBE_ATTACK_SUCCESS,
    PROBE_ATTACK_MEDIAN_QUERIES,
    PROBE_FLIP,
    PROBE_CONFIDENCE,
    PROBE_MARGIN,
    PROBE_STABILITY,
    PROBE_REGRESSION,
    PROBE_REGRESSION_P_VALUE,
    PROBE_RUNS,
    PROBE_LAST_RUN,
    PROBE_RUN_DURATION,
    ALERT_STATE,
    ALERT_TRANSITIONS_UNDELIVERED,
    ALERT_TRANSITION_FAILURES,
    INCIDENTS_OPEN,
    HOOK_ACTIONS,
)
"""Every family, grouped by room."""


def contract(*kinds: Contract) -> frozenset[str]:
    """The names of the families with these contracts (counters with `_total`)."""
    return frozenset(f.name for f in FAMILIES if f.contract in kinds)
