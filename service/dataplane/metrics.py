"""Prometheus metrics of the data plane, on an injected registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

from service.label_bounds import OTHER, BoundedLabel, LabelPolicy

#: gRPC status codes by number, for the `code` label.
GRPC_CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


# Latency buckets from 0.5 ms: a relayed inference call on a local model is often ~1 ms.
DURATION_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def code_label(status: int | None, message: str) -> str:
    """The `code` label: the gRPC status name, or how the call ended without one."""
    if status is None:
        return "RESET" if message.startswith("RST_STREAM") else "NO_STATUS"
    if 0 <= status < len(GRPC_CODE_NAMES):
        return GRPC_CODE_NAMES[status]
    return OTHER


class DataplaneMetrics:
    """The `outrider_*` series the relay and tap maintain."""

    def __init__(self, registry: CollectorRegistry, *, labels: LabelPolicy) -> None:
        # The process's one model and version label rule (shared with monitor and probes).
        self.model_label = labels.model
        self.version_label = labels.version
        self.method_label = BoundedLabel(64)
        self.requests = Counter(
            "outrider_requests_total",
            "gRPC calls relayed, by model, version, method and status code.",
            ["model", "version", "method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "outrider_request_duration_seconds",
            "Duration of relayed gRPC calls as observed by the tap (request HEADERS to end).",
            ["model", "version", "method"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.connections_active = Gauge(
            "outrider_connections_active",
            "Client connections open on the relay.",
            registry=registry,
        )
        self.connections_rejected = Counter(
            "outrider_connections_rejected_total",
            "Client connections closed at once, by reason.",
            ["reason"],
            registry=registry,
        )
        self.tap_samples = Counter(
            "outrider_tap_samples_total",
            "Inference calls by sampling outcome (sampled, dropped, skipped, error).",
            ["outcome"],
            registry=registry,
        )
        self.tap_disabled = Counter(
            "outrider_tap_disabled_connections_total",
            "Connections whose tap was switched off after an error, by reason.",
            ["reason"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "outrider_upstream_errors_total",
            "Failures talking to the upstream, by reason.",
            ["reason"],
            registry=registry,
        )
        self.drain_deadline_closes = Counter(
            "outrider_drain_deadline_closes_total",
            "Connections closed at their drain deadline (shutdown or fallback switch) while "
            "calls may still have been open.",
            registry=registry,
        )
        self.relayed_bytes = RelayedBytes()
        registry.register(self.relayed_bytes)
        for outcome in ("sampled", "dropped", "skipped", "error"):
            self.tap_samples.labels(outcome=outcome)


class RelayedBytes:
    """`outrider_tap_bytes_total`: plain integers on the hot path, read at scrape time."""

    def __init__(self) -> None:
        self.request = 0
        self.response = 0

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "outrider_tap_bytes",
            "Bytes relayed, by direction (request: client to upstream).",
            labels=["direction"],
        )
        family.add_metric(["request"], self.request)
        family.add_metric(["response"], self.response)
        yield family
