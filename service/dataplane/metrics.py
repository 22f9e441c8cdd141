"""Prometheus metrics of the data plane, on an injected registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from service import metric_families as families
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
        # Families are declared in service/metric_families.py (the one list).
        self.requests = families.REQUESTS.counter(registry)
        self.duration = families.REQUEST_DURATION.histogram(registry, DURATION_BUCKETS)
        self.connections_active = families.CONNECTIONS_ACTIVE.gauge(registry)
        self.connections_rejected = families.CONNECTIONS_REJECTED.counter(registry)
        self.tap_samples = families.TAP_SAMPLES.counter(registry)
        self.tap_disabled = families.TAP_DISABLED.counter(registry)
        self.upstream_errors = families.UPSTREAM_ERRORS.counter(registry)
        self.drain_deadline_closes = families.DRAIN_DEADLINE_CLOSES.counter(registry)
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
        family = families.TAP_BYTES.counter_family()
        family.add_metric(["request"], self.request)
        family.add_metric(["response"], self.response)
        yield family
