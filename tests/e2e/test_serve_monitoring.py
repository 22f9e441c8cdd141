"""tritonclient -> outrider -> bundled model server: drift becomes metrics, alerts, incidents.

outrider runs as a real subprocess (so it can be killed with SIGKILL); the model server runs
in the test's event loop; traffic is seeded held-out digits, then inverted digits.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as triton

from service.config import load_settings
from service.modelserver.demo_model import load_demo_data
from service.modelserver.server import ModelServer
from service.monitor.reference import build_reference
from tests.e2e.outrider_process import OutriderProcess, wait_for

pytestmark = pytest.mark.e2e

WINDOW = 100


def _config(model_port: int, state_dir: Path, tensor: str = "embedding") -> dict[str, Any]:
    return {
        "state_dir": str(state_dir),
        "dataplane": {
            "upstream": {"host": "127.0.0.1", "port": model_port},
            "sampling_rate": 1.0,
            "max_samples_per_second": 10000,
        },
        "checkpoints": {"interval_seconds": 1.0},
        # This shared machine can be slow: let the worker catch up instead of shedding.
        "monitor": {"max_lag_seconds": 120.0},
        "alert_evaluation_seconds": 0.25,
        "models": {
            "demo": {
                "signals": [
                    {
                        "name": "embedding",
                        "source": {"output": tensor},
                        "reference": {"path": str(state_dir / "references/demo/embedding.npz")},
                        "detectors": [
                            {
                                "type": "mmd",
                                "window": WINDOW,
                                "reference_rows": 500,
                                "params": {"alpha": 0.005, "n_permutations": 400},
                            },
                        ],
                    }
                ]
            }
        },
        "alerts": [
            {
                "name": "EmbeddingDrift",
                "severity": "critical",
                "condition": "drift_detected",
                "for": "2s",
                "keep_firing_for": "60s",
            },
        ],
    }


def _build_reference(config_path: Path, model_path: Path, state_dir: Path) -> None:
    data = load_demo_data("digits", seed=0)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (embedding,) = session.run(["embedding"], {"pixels": data.x_reference})
    source = state_dir / "embedding-source.npy"
    np.save(source, embedding)
    build_reference(
        load_settings(config_path),
        "demo/embedding",
        source,
        state_dir=state_dir,
        version="1",
        progress=False,
    )


@pytest.fixture
async def outrider(
    model_server: ModelServer, demo_model_path: Path, tmp_path: Path
) -> AsyncIterator[OutriderProcess]:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    process = OutriderProcess(_config(model_server.port, state_dir), tmp_path)
    _build_reference(process.config_path, demo_model_path, state_dir)
    await asyncio.to_thread(process.start)
    yield process
    await asyncio.to_thread(process.stop)


async def _send(target: str, pixels: np.ndarray, rows_per_request: int = 10) -> None:
    client = triton.InferenceServerClient(target)
    try:
        for start in range(0, len(pixels), rows_per_request):
            batch = pixels[start : start + rows_per_request].astype(np.float32)
            tensor = triton.InferInput("pixels", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            result = await client.infer("demo", [tensor])
            assert result.as_numpy("embedding").shape == (len(batch), 32)
    finally:
        await client.close()


def _firing_transitions(log_path: Path, alert: str) -> int:
    """`alert_transition` log lines that moved `alert` to firing (JSON log lines)."""
    count = 0
    for line in log_path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(event, dict)
            and event.get("event") == "alert_transition"
            and event.get("alert") == alert
            and event.get("to_state") == "firing"
        ):
            count += 1
    return count


def _held_out(rows: int, seed: int) -> np.ndarray:
    test = load_demo_data("digits", seed=0).x_test
    return test[np.random.default_rng(seed).integers(0, len(test), rows)]


async def test_quiet_traffic_opens_nothing_and_drift_fires_with_evidence(
    outrider: OutriderProcess,
) -> None:
    labels = {"model": "demo", "signal": "embedding", "detector": "mmd"}
    await _send(outrider.target, _held_out(3000, seed=1))  # 30 windows of in-distribution rows
    await asyncio.to_thread(
        wait_for,
        lambda: outrider.metric("outrider_monitor_observations_total", outcome="decoded") == 300,
        120,
        "every request decoded",
    )
    await asyncio.to_thread(
        wait_for,
        lambda: outrider.metric("outrider_monitor_queue_depth") == 0,
        120,
        "the queue drained",
    )
    assert outrider.metric("outrider_window_fill_ratio", **labels) == 1.0
    await asyncio.sleep(3)  # longer than the rule's `for:`
    assert outrider.metric("outrider_drift_detected", **labels) == 0.0
    assert outrider.get_json("/incidents") == {"incidents": []}
    assert outrider.metric("outrider_alert_state", alert="EmbeddingDrift") == 0.0

    # Inverted digits: the embedding moves far from the reference.
    await _send(outrider.target, 16.0 - _held_out(600, seed=2))
    assert await asyncio.to_thread(
        wait_for, lambda: outrider.metric("outrider_drift_detected", **labels) == 1.0, 60, "drift"
    )
    incidents = await asyncio.to_thread(
        wait_for, lambda: outrider.get_json("/incidents")["incidents"], 30, "an incident"
    )
    (incident,) = incidents
    assert incident["alert"] == "EmbeddingDrift"
    assert incident["severity"] == "critical"
    assert incident["model"] == "demo"
    assert incident["version"] == "1"
    assert incident["evidence"]["drift_detected"] is True
    assert incident["evidence"]["p_value"] < 0.005
    assert incident["evidence"]["detector"] == "mmd"
    assert outrider.metric("outrider_alert_state", alert="EmbeddingDrift") == 2.0
    plot = wait_for(
        lambda: outrider.get_json(f"/incidents/{incident['id']}")["plot_path"],
        10,
        "the incident plot",
    )
    assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_kill_9_restart_restores_detector_and_alert_state(
    outrider: OutriderProcess,
) -> None:
    labels = {"model": "demo", "signal": "embedding", "detector": "mmd"}
    await _send(outrider.target, 16.0 - _held_out(600, seed=3))
    await asyncio.to_thread(
        wait_for,
        lambda: outrider.metric("outrider_alert_state", alert="EmbeddingDrift") == 2.0,
        60,
        "the alert firing",
    )
    await asyncio.to_thread(
        wait_for, lambda: outrider.metric("outrider_monitor_queue_depth") == 0, 60, "the queue"
    )
    await asyncio.sleep(0.5)  # the worker may still hold the last batch it dequeued
    before = outrider.metric("outrider_drift_score", **labels)
    # Wait for a checkpoint written after the last reading (checkpoints come every second).
    drained_at = time.time()
    checkpoints = outrider.state_dir / "checkpoints"
    await asyncio.to_thread(
        wait_for,
        lambda: any(p.stat().st_mtime > drained_at + 0.1 for p in checkpoints.glob("*.npz")),
        30,
        "a checkpoint after the traffic",
    )
    (incident,) = outrider.get_json("/incidents")["incidents"]
    await asyncio.to_thread(outrider.kill_hard)
    await asyncio.to_thread(outrider.start)
    # No traffic since the restart: what the metrics show came from the checkpoint.
    assert outrider.metric("outrider_drift_score", **labels) == pytest.approx(before)
    assert outrider.metric("outrider_drift_detected", **labels) == 1.0
    assert outrider.metric("outrider_alert_state", alert="EmbeddingDrift") == 2.0
    # The incident stays one incident, and restoring does not fire the alert a second time:
    # a re-fire would find the open incident and reuse it, so count the firing transitions
    # both processes logged (the log file is appended across the restart).
    await asyncio.sleep(1.5)
    assert outrider.get_json("/incidents")["incidents"] == [incident]
    assert _firing_transitions(outrider.log_path, "EmbeddingDrift") == 1


async def test_a_signal_naming_a_missing_tensor_counts_errors_and_says_so(
    model_server: ModelServer, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    config = _config(model_server.port, state_dir, tensor="no_such_output")
    config["models"]["demo"]["signals"][0]["reference"] = {"capture": 100}
    process = OutriderProcess(config, tmp_path)
    await asyncio.to_thread(process.start)
    try:
        await _send(process.target, _held_out(200, seed=4))
        # One error per request: 200 rows in requests of 10. The monitor works behind the
        # relay, so wait for the count to settle rather than for the first error.
        assert await asyncio.to_thread(
            wait_for,
            lambda: (
                process.metric(
                    "outrider_signal_errors_total",
                    model="demo",
                    signal="embedding",
                    reason="missing_tensor",
                )
                == 20.0
            ),
            30,
            "an error for each of the 20 requests",
        )
        log = process.log_path.read_text()
        assert log.count("no_such_output") >= 1
        # Throttled: one log line per (model, signal, reason) per minute, not one per request.
        assert sum("missing_tensor" in line for line in log.splitlines()) == 1
        # Traffic itself was untouched.
        assert await asyncio.to_thread(
            wait_for,
            lambda: process.metric("outrider_requests_total", model="demo", code="OK") == 20.0,
            30,
            "20 requests counted OK",
        )
    finally:
        await asyncio.to_thread(process.stop)
