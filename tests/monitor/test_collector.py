"""The scrape-time collector: exact values, bounded labels, and a clean `promtool check metrics`."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from service.monitor.pipeline import MonitorPipeline
from service.monitor.settings import PipelineSettings


@pytest.fixture
def scraped(tmp_path: Path, save_reference: Callable[..., Path],
            make_observation: Callable[..., Any]) -> tuple[CollectorRegistry, bytes]:
    rng = np.random.default_rng(5)
    save_reference(tmp_path, "demo", "emb", rng.normal(size=(300, 3)))
    settings = PipelineSettings.model_validate({
        "models": {"demo": {"signals": [{
            "name": "emb", "source": {"output": "embedding"},
            "detectors": [
                {"type": "ks", "window": 20},
                {"type": "mmd", "window": 20, "params": {"n_permutations": 50}},
            ],
        }]}},
        "monitor": {"max_samples_per_second": None},
    })
    registry = CollectorRegistry()
    pipeline = MonitorPipeline(settings, registry=registry, state_dir=tmp_path)
    for i in range(5):
        pipeline.offer(make_observation(outputs={"embedding": rng.normal(size=(4, 3))},
                                        request_id=f"id{i}"))
    pipeline.offer(make_observation(outputs={"probabilities": np.zeros((1, 3))}))
    pipeline.drain()
    return registry, generate_latest(registry)


def test_values_come_from_detector_state(scraped: tuple[CollectorRegistry, bytes]) -> None:
    registry, _ = scraped
    labels = {"model": "demo", "version": "1", "signal": "emb", "detector": "ks"}
    assert registry.get_sample_value("outrider_window_fill_ratio", labels) == 1.0
    assert registry.get_sample_value("outrider_drift_detected", labels) == 0.0
    assert registry.get_sample_value("outrider_drift_score", labels) is not None
    assert registry.get_sample_value("outrider_ood_ratio", labels) is None
    assert registry.get_sample_value(
        "outrider_signal_errors_total",
        {"model": "demo", "signal": "emb", "reason": "missing_tensor"},
    ) == 1.0
    assert registry.get_sample_value("outrider_monitor_queue_depth") == 0.0


def test_no_request_ids_or_payloads_in_labels(scraped: tuple[CollectorRegistry, bytes]) -> None:
    _, text = scraped
    assert b"id0" not in text and b"id4" not in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_metrics_is_clean(scraped: tuple[CollectorRegistry, bytes]) -> None:
    _, text = scraped
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")


def test_a_built_reference_is_reported_under_the_traffic_versions(
    tmp_path: Path, make_observation: Callable[..., Any]
) -> None:
    """Was `version="unknown"` for a reference built without --version, beside traffic `1`."""
    from tests.monitor.conftest import store_reference

    store_reference(tmp_path, "demo", "emb", np.ones((50, 3)), version="")
    settings = PipelineSettings.model_validate({
        "models": {"demo": {"signals": [{
            "name": "emb", "source": {"output": "embedding"},
            "detectors": [{"type": "ks", "window": 5}],
        }]}},
        "monitor": {"max_samples_per_second": None},
    })  # fmt: skip
    registry = CollectorRegistry()
    pipeline = MonitorPipeline(settings, registry=registry, state_dir=tmp_path)

    def versions() -> dict[str, float]:
        return {
            s.labels["version"]: s.value
            for family in registry.collect() if family.name == "outrider_reference_samples"
            for s in family.samples
        }

    assert versions() == {"unknown": 50.0}  # no traffic yet: nothing to agree with
    for version in ("1", "2"):
        pipeline.offer(make_observation(outputs={"embedding": np.ones((2, 3))}, version=version))
    pipeline.drain()
    assert versions() == {"1": 50.0, "2": 50.0}
