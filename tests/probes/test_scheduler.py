from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.probes.builder import BuildOptions, build_suite
from service.probes.run_store import RunStore, run_store_path
from service.probes.scheduler import ProbeScheduler
from service.probes.settings import ProbeSettings
from service.probes.signature import TensorSpec
from service.probes.suite import ProbeSuite, load_suite, save_suite
from tests.probes.serving import RecordingServer, degraded_copy, start_recording_server
from tests.support.readings import RecordingSink


@pytest.fixture(scope="module")
def suite_path(
    demo_model_path: Path,
    digits_sample: tuple[np.ndarray, np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    out = tmp_path_factory.mktemp("suites") / "digits-c.npz"
    x, y = digits_sample
    build_suite(
        demo_model_path,
        x[:20],
        y[:20],
        name="digits-c",
        kind="corruptions",
        options=BuildOptions(seed=0),
        out=out,
    )
    return out


@pytest.fixture
async def served(demo_model_path: Path) -> AsyncIterator[RecordingServer]:
    server = await start_recording_server(demo_model_path, version="1")
    yield server
    await server.server.stop(None)


def _settings(suite_path: Path, **extra: object) -> ProbeSettings:
    return ProbeSettings.model_validate(
        {
            "enabled": True,
            "suites": [{"name": "digits-c", "path": str(suite_path), "model": "demo"}],
            "max_probes_per_second": 5000,
            "run_on_start": False,
            "regression": {"clean_period_seconds": 0, "alpha": 0.01, "min_accuracy_drop": 0.02},
            **extra,
        }
    )


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_run_sets_metrics_stores_row_and_sends_probe_header(
    served: RecordingServer, suite_path: Path, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    sink = RecordingSink()
    readings = sink.readings
    scheduler = ProbeScheduler(
        _settings(suite_path),
        target=served.target,
        state_dir=tmp_path,
        registry=registry,
        sink=sink,
    )
    scheduler.load_suites()
    try:
        record = await scheduler.run_suite("digits-c")
    finally:
        await scheduler.stop()
    suite = load_suite(suite_path)
    assert record is not None and record.outcome == "ok" and record.version == "1"
    assert record.probes == 20 * 46 == len(suite)
    # The live model is the model the suite was built on: live accuracy == build accuracy.
    built = suite.summary["accuracy"]
    labels = {"model": "demo", "version": "1", "suite": "digits-c"}
    for variant in ("clean", "gaussian_noise/5", "rotate/3"):
        assert _value(
            registry, "outrider_probe_accuracy_ratio", **labels, variant=variant
        ) == pytest.approx(built[variant], abs=1e-12)
    assert (
        _value(registry, "outrider_probe_runs_total", model="demo", suite="digits-c", outcome="ok")
        == 1.0
    )
    assert _value(registry, "outrider_probe_regression", **labels) == 0.0
    assert _value(registry, "outrider_probe_confidence_ratio", **labels, statistic="mean") > 0.5
    # Every call to the server carried the probe header.
    infer_calls = [m for method, m in served.recorder.calls if method.endswith("/ModelInfer")]
    assert len(infer_calls) == -(-len(suite) // 32)
    assert all(m.get("x-outrider-probe") == "1" for _, m in served.recorder.calls)
    with sqlite3.connect(tmp_path / "probes" / "runs.sqlite") as db:
        rows = db.execute(
            "SELECT model, version, suite, outcome, probes FROM probe_runs"
        ).fetchall()
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    assert rows == [("demo", "1", "digits-c", "ok", 920)]
    assert mode == "wal"
    assert len(readings) == 1
    assert readings[0].verdict is False and readings[0].p_value is None
    assert readings[0].score == pytest.approx(record.accuracy)


async def test_worse_new_version_is_a_regression_against_known_good(
    served: RecordingServer, suite_path: Path, demo_model_path: Path, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    sink = RecordingSink()
    readings = sink.readings
    scheduler = ProbeScheduler(
        _settings(suite_path),
        target=served.target,
        state_dir=tmp_path,
        registry=registry,
        sink=sink,
    )
    scheduler.load_suites()
    try:
        first = await scheduler.run_suite("digits-c")
        assert first is not None and first.outcome == "ok"
        assert scheduler.store.known_good("demo") == "1"  # clean period 0: promoted at once
        served.roll_out(degraded_copy(demo_model_path, tmp_path / "v2.onnx", noise=1.5), "2")
        # A new version seen in traffic triggers an immediate run.
        await scheduler.on_version_seen("demo", "2")
        for _ in range(200):
            if len(readings) == 2:
                break
            await asyncio.sleep(0.05)
        assert scheduler.store.known_good("demo") == "1"
    finally:
        await scheduler.stop()
    assert [r.version for r in readings] == ["1", "2"]
    second = readings[1]
    assert second.verdict is True
    assert second.p_value is not None and second.p_value < 0.01
    assert second.threshold == pytest.approx(readings[0].score)
    assert second.score <= second.threshold - 0.02
    labels = {"model": "demo", "version": "2", "suite": "digits-c"}
    assert _value(registry, "outrider_probe_regression", **labels) == 1.0
    assert _value(registry, "outrider_probe_flip_ratio", **labels) > 0.0


async def test_after_pruning_a_new_version_is_still_judged_against_the_known_good_baseline(
    served: RecordingServer, suite_path: Path, demo_model_path: Path, tmp_path: Path
) -> None:
    now = [1_800_000_000.0]
    sink = RecordingSink()
    readings = sink.readings
    scheduler = ProbeScheduler(
        _settings(suite_path),
        target=served.target,
        state_dir=tmp_path,
        registry=CollectorRegistry(),
        sink=sink,
        clock=lambda: now[0],
    )
    scheduler.load_suites()
    try:
        for _ in range(3):
            run = await scheduler.run_suite("digits-c")
            assert run is not None and run.outcome == "ok"
        assert scheduler.store.known_good("demo") == "1"
        last_v1 = run.id
        # Months later every run is past a 90-day horizon. Pruning happens on its own
        # connection while the scheduler's stays open, as outrider's alert thread does it.
        now[0] += 200 * 86400
        pruner = RunStore(run_store_path(tmp_path))
        try:
            assert pruner.prune_runs(now[0] - 90 * 86400) == 2
        finally:
            pruner.close()
        assert [r.id for r in scheduler.store.runs()] == [last_v1]

        served.roll_out(degraded_copy(demo_model_path, tmp_path / "v2.onnx", noise=1.5), "2")
        second = await scheduler.run_suite("digits-c")
    finally:
        await scheduler.stop()
    assert second is not None and second.version == "2"
    assert second.baseline_version == "1"
    assert second.regression is True
    assert readings[-1].verdict is True
    assert readings[-1].threshold == pytest.approx(readings[0].score)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_down_marks_the_run_failed_and_emits_no_reading(
    suite_path: Path, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    sink = RecordingSink()
    readings = sink.readings
    scheduler = ProbeScheduler(
        _settings(suite_path, request_timeout_seconds=2.0),
        target=f"127.0.0.1:{_free_port()}",
        state_dir=tmp_path,
        registry=registry,
        sink=sink,
    )
    scheduler.load_suites()
    try:
        record = await scheduler.run_suite("digits-c")
    finally:
        await scheduler.stop()
    assert record is not None and record.outcome == "failed"
    assert record.error is not None and record.error.startswith("gRPC UNAVAILABLE")
    assert readings == []
    assert (
        _value(
            registry, "outrider_probe_runs_total", model="demo", suite="digits-c", outcome="failed"
        )
        == 1.0
    )
    assert (
        _value(registry, "outrider_probe_runs_total", model="demo", suite="digits-c", outcome="ok")
        is None
    )
    with sqlite3.connect(tmp_path / "probes" / "runs.sqlite") as db:
        assert db.execute("SELECT outcome, regression FROM probe_runs").fetchall() == [
            ("failed", None)
        ]


async def test_suite_not_matching_the_model_is_refused_at_load(
    served: RecordingServer, suite_path: Path, tmp_path: Path
) -> None:
    good = load_suite(suite_path)
    bad = ProbeSuite(
        **{
            **good.__dict__,
            "input_spec": TensorSpec("pixels", "FP32", (-1, 63)),
            "inputs": good.inputs[:, :63],
        }
    )
    bad_path = save_suite(bad, tmp_path / "bad.npz")
    registry = CollectorRegistry()
    settings = ProbeSettings.model_validate(
        {"suites": [{"name": "bad", "path": str(bad_path), "model": "demo"}], "run_on_start": False}
    )
    scheduler = ProbeScheduler(
        settings, target=served.target, state_dir=tmp_path, registry=registry
    )
    try:
        await scheduler.start()
        assert scheduler.job_ids() == []
    finally:
        await scheduler.stop()
    assert scheduler.refused == {
        "bad": "suite 'digits-c' does not match model 'demo': tensor 'pixels': "
        "shape [-1, 63] in the suite, [-1, 64] in the model"
    }
    assert (
        _value(registry, "outrider_probe_runs_total", model="demo", suite="bad", outcome="refused")
        == 1.0
    )


async def test_start_schedules_suites_and_live_attack_and_runs_on_start(
    served: RecordingServer, suite_path: Path, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    sink = RecordingSink()
    readings = sink.readings
    settings = _settings(
        suite_path,
        run_on_start=True,
        live_attack={
            "enabled": True,
            "model": "demo",
            "source_suite": "digits-c",
            "samples": 20,
            "eps": 4.0,
            "max_queries": 100,
        },
    )
    scheduler = ProbeScheduler(
        settings,
        target=served.target,
        state_dir=tmp_path,
        registry=registry,
        sink=sink,
    )
    try:
        await scheduler.start()
        assert sorted(scheduler.job_ids()) == ["probe:digits-c", "probe:live-attack"]
        for _ in range(200):
            if readings:
                break
            await asyncio.sleep(0.05)
        attack = await scheduler.run_live_attack()
    finally:
        await scheduler.stop()
    assert len(readings) == 1
    assert attack is not None and attack.outcome == "ok" and attack.version == "1"
    success = _value(
        registry,
        "outrider_probe_attack_success_ratio",
        model="demo",
        version="1",
        suite="digits-c:live_square_linf",
    )
    assert success == attack.results["success_rate"]
    assert success is not None and success >= 0.8


async def test_a_slow_run_store_never_stalls_the_event_loop(
    served: RecordingServer, suite_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler shares the relay's event loop: store calls wait in a worker thread."""
    import threading
    import time

    scheduler = ProbeScheduler(
        _settings(suite_path), target=served.target, state_dir=tmp_path, registry=None
    )
    scheduler.load_suites()
    slow_record = scheduler.store.record_run
    on_loop: list[bool] = []

    def record_run_on_a_slow_disk(record: object) -> int:
        on_loop.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.5)
        return slow_record(record)  # type: ignore[arg-type]

    monkeypatch.setattr(scheduler.store, "record_run", record_run_on_a_slow_disk)
    try:
        record = await scheduler.run_suite("digits-c")
    finally:
        await scheduler.stop()
    assert record is not None and record.outcome == "ok"
    assert on_loop == [False]  # the slow write waited in a worker thread, not on the loop
