"""The one list of metric families is what outrider exports, and nothing else makes metrics."""

from __future__ import annotations

import ast
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from service.app import OutriderApp
from service.config import OutriderSettings
from service.metric_families import FAMILIES, Family
from service.modelserver.demo_model import build_demo_model, load_demo_data
from service.modelserver.server import start_model_server
from service.oip.client import InferenceClient
from tests.support.waiting import poll

ROOT = Path(__file__).resolve().parents[1]
# prometheus_client's metric classes and scrape-time families: only metric_families.py
# may make them.
METRIC_MAKERS = {
    "Counter", "Gauge", "Histogram", "Summary", "Info", "Enum",
    "CounterMetricFamily", "GaugeMetricFamily", "HistogramMetricFamily",
    "SummaryMetricFamily", "InfoMetricFamily", "StateSetMetricFamily", "UnknownMetricFamily",
}


def test_only_the_family_list_makes_metrics() -> None:
    makers: list[str] = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        if path.name == "metric_families.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "prometheus_client"
            ):
                makers += [
                    f"{path.relative_to(ROOT)}: {alias.name}"
                    for alias in node.names
                    if alias.name in METRIC_MAKERS
                ]
    assert makers == []


def test_declarations_are_unique_and_checked() -> None:
    names = [family.name for family in FAMILIES]
    assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="counters, and only counters, end in _total"):
        Family("outrider_things", "counter", (), "Things.")
    with pytest.raises(TypeError, match="'outrider_incidents_open' is a gauge, not a counter"):
        next(f for f in FAMILIES if f.name == "outrider_incidents_open").counter(
            CollectorRegistry()
        )


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[OutriderApp]:
    """outrider in front of the bundled model server with every room switched on."""
    server = await start_model_server(build_demo_model(tmp_path / "models", "digits"), port=0)
    settings = OutriderSettings.model_validate({
        "state_dir": str(tmp_path / "state"),
        "admin": {"port": 0},
        "dataplane": {"listen_port": 0, "upstream": {"port": server.port}, "sampling_rate": 1.0},
        "models": {"demo": {"signals": [{
            "name": "embedding",
            "source": {"output": "embedding"},
            "reference": {"capture": 200},
            "detectors": [{"type": "ks", "window": 20},
                          {"type": "knn", "window": 20, "params": {"k": 5}}],
        }]}},
        "alerts": [{"name": "Drift", "condition": "drift_detected"}],
        "hooks": {"hooks": [{"name": "log", "type": "exec", "argv": ["true"], "dry_run": True}]},
        "probes": {"enabled": True, "run_on_start": False},
    })
    app = OutriderApp(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
        await server.stop(None)


@pytest.mark.e2e
async def test_a_running_outrider_exports_exactly_the_declared_families(
    running: OutriderApp,
) -> None:
    data = load_demo_data("digits")
    async with InferenceClient(f"127.0.0.1:{running.relay.port}") as client:
        for start in range(0, 300, 10):
            await client.infer("demo", {"pixels": data.x_test[start : start + 10]})
        with contextlib.suppress(grpc.aio.AioRpcError):  # a failed call has metrics too
            await client.infer("no-such-model", {"pixels": data.x_test[:1]})
    await poll(lambda: bool(running.pipeline.readings()), "detector readings")
    state = {"alert": "Drift", "severity": "warning", "model": "demo"}
    await poll(lambda: running.registry.get_sample_value("outrider_alert_state", state) is not None,
               "an alert rule evaluation")

    exported: dict[str, Metric] = {m.name: m for m in running.registry.collect()}
    declared = {family.base: family for family in FAMILIES}
    assert sorted(exported) == sorted(declared)
    for name, metric in exported.items():
        family = declared[name]
        assert (metric.type, metric.documentation) == (family.kind, family.help), name
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            assert set(sample.labels) - {"le"} == set(family.labels), sample
    sampled = {name for name, metric in exported.items() if metric.samples}
    # The run reaches every room: requests, drift and OOD, alerts, hooks, incidents.
    assert {"outrider_requests", "outrider_drift_score", "outrider_ood_ratio",
            "outrider_alert_state", "outrider_hook_actions", "outrider_incidents_open"} <= sampled
