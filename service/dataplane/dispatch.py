"""Routes tap observations to metrics and, when sampled, to the monitor's sink."""

from __future__ import annotations

import logging
from typing import Any

from service.dataplane.metrics import DataplaneMetrics, code_label
from service.dataplane.observation import ObservationSink, RpcObservation

log = logging.getLogger(__name__)


class ObservationDispatcher:
    """Counts every observed call; offers sampled ones to the sink without waiting."""

    def __init__(self, metrics: DataplaneMetrics, sink: ObservationSink | None) -> None:
        self.metrics = metrics
        self.sink = sink
        self._sampled = metrics.tap_samples.labels(outcome="sampled")
        self._dropped = metrics.tap_samples.labels(outcome="dropped")
        # label children by label values: `labels()` is slow next to the rest of the tap
        self._outcomes: dict[str, Any] = {}
        self._series: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def observed(self, obs: RpcObservation, rpc_end: bool) -> None:
        m = self.metrics
        if rpc_end:
            key = (
                obs.model_name,
                obs.model_version,
                obs.method,
                code_label(obs.grpc_status, obs.grpc_message),
            )
            series = self._series.get(key)
            if series is None:
                model = m.model_label(obs.model_name)
                version = m.version_label(obs.model_name, obs.model_version)
                method = m.method_label(obs.method)
                series = (
                    m.requests.labels(model, version, method, key[3]),
                    m.duration.labels(model, version, method),
                )
                if len(self._series) < 4096:
                    self._series[key] = series
            series[0].inc()
            series[1].observe(max(0.0, obs.end_time - obs.start_time))
        if obs.sampled and (rpc_end is False or obs.request_messages or obs.response_messages):
            if self.sink is not None and self.sink.offer(obs):
                self._sampled.inc()
            else:
                self._dropped.inc()

    def sample_outcome(self, outcome: str) -> None:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self.metrics.tap_samples.labels(outcome=outcome)
        child.inc()

    def tap_failed(self, connection_id: int, reason: str, error: BaseException) -> None:
        self.metrics.tap_disabled.labels(reason=reason).inc()
        log.warning("tap disabled on connection %d (%s): %s", connection_id, reason, error)
