"""The pipeline end to end on synthetic observations encoded with the real codec (no network)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.alerting.reading_store import ReadingStore
from service.alerting.readings import Reading
from service.label_bounds import LabelPolicy, LabelSettings
from service.monitor.pipeline import MonitorPipeline
from service.monitor.reference import ReferenceError, ReferenceMismatch, ReferenceStore
from service.monitor.settings import PipelineSettings
from service.store.checkpoints import CheckpointStore

D = 4


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _settings(
    detectors: list[dict[str, Any]] | None = None,
    reference: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    **monitor: Any,
) -> PipelineSettings:
    return PipelineSettings.model_validate(
        {
            "models": {
                "demo": {
                    "signals": [
                        {
                            "name": "features",
                            "source": source or {"input": "x"},
                            "reference": reference or {},
                            "detectors": detectors
                            or [{"type": "ks", "window": 50, "params": {"alpha": 0.01}}],
                        }
                    ]
                }
            },
            "monitor": {"max_samples_per_second": None, **monitor},
        }
    )


@pytest.fixture
def reference_dir(tmp_path: Path, save_reference: Callable[..., Path]) -> Path:
    rng = np.random.default_rng(0)
    save_reference(tmp_path, "demo", "features", rng.normal(size=(400, D)))
    return tmp_path


def _pipeline(settings: PipelineSettings, state_dir: Path, **kw: Any) -> tuple[
    MonitorPipeline, CollectorRegistry, list[Reading]
]:
    registry = CollectorRegistry()
    store = ReadingStore()
    readings: list[Reading] = []
    store.subscribe(readings.append)
    pipeline = MonitorPipeline(
        settings, registry=registry, state_dir=state_dir, sink=store, **kw
    )
    return pipeline, registry, readings


def _feed(pipeline: MonitorPipeline, make: Callable[..., Any], rows: np.ndarray, k: int = 5,
          **kw: Any) -> None:
    for start in range(0, rows.shape[0], k):
        assert pipeline.offer(
            make(inputs={"x": rows[start : start + k].astype(np.float32)},
                 request_id=f"r{start}", **kw)
        )
    pipeline.drain()


LABELS = {"model": "demo", "version": "1", "signal": "features", "detector": "ks"}


def test_in_distribution_then_shift_is_detected_and_exported(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    pipeline, registry, readings = _pipeline(_settings(), reference_dir, clock=FakeClock())
    rng = np.random.default_rng(1)
    _feed(pipeline, make_observation, rng.normal(size=(50, D)))
    assert registry.get_sample_value("outrider_drift_detected", LABELS) == 0.0
    assert registry.get_sample_value("outrider_window_fill_ratio", LABELS) == 1.0
    p_before = registry.get_sample_value("outrider_drift_p_value", LABELS)
    assert p_before is not None and p_before > 0.01
    shifted = rng.normal(size=(50, D))
    shifted[:, 2] += 1.5
    _feed(pipeline, make_observation, shifted)
    assert registry.get_sample_value("outrider_drift_detected", LABELS) == 1.0
    last = readings[-1]
    assert (last.kind, last.verdict) == ("drift", True)
    assert last.p_value is not None and last.p_value < 0.01
    assert last.evidence["top_mean_shifts"][0]["dimension"] == 2
    assert last.evidence["example_request_ids"] == ("r25", "r30", "r35", "r40", "r45")
    assert registry.get_sample_value(
        "outrider_reference_samples", {"model": "demo", "version": "1", "signal": "features"}
    ) == 400.0
    # 20 observations, each one call with 5 rows; one reading per drained batch.
    assert registry.get_sample_value("outrider_monitor_observations_total",
                                     {"outcome": "decoded"}) == 20.0
    assert len(readings) == 2


def test_bad_tensors_are_counted_per_reason_and_never_reach_detectors(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    pipeline, registry, readings = _pipeline(_settings(), reference_dir)
    nan = np.ones((3, D), dtype=np.float32)
    nan[1, 2] = np.nan
    bad = [
        make_observation(inputs={"y": np.zeros((3, D), dtype=np.float32)}),  # missing
        make_observation(inputs={"x": np.zeros((3, D + 1), dtype=np.float32)}),  # shape
        make_observation(inputs={"x": np.array([[b"a"] * D], dtype=object)}),  # dtype
        make_observation(inputs={"x": nan}),  # NaN
        make_observation(raw_request=b"\xff\xff\xff"),  # bad protobuf
    ]
    for obs in bad:
        assert pipeline.offer(obs)
    assert pipeline.drain() == 5
    errors = {
        reason: registry.get_sample_value(
            "outrider_signal_errors_total",
            {"model": "demo", "signal": "features", "reason": reason},
        )
        for reason in ("missing_tensor", "wrong_shape", "wrong_dtype", "non_finite")
    }
    assert errors == {"missing_tensor": 1.0, "wrong_shape": 1.0, "wrong_dtype": 1.0,
                      "non_finite": 1.0}
    assert registry.get_sample_value(
        "outrider_monitor_decode_errors_total", {"reason": "bad_protobuf"}
    ) == 1.0
    assert readings == []
    # No stream was even created: the detectors never saw a row.
    assert pipeline.state_dict()["streams"] == {}


def test_probe_traffic_never_feeds_detectors(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    pipeline, registry, readings = _pipeline(_settings(), reference_dir)
    pipeline.offer(make_observation(inputs={"x": np.zeros((5, D), dtype=np.float32)}, probe=True))
    pipeline.drain()
    assert readings == []
    assert registry.get_sample_value("outrider_monitor_observations_total",
                                     {"outcome": "probe"}) == 1.0


def test_state_round_trip_continues_identically(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    rng = np.random.default_rng(2)
    first = rng.normal(size=(70, D))
    second = rng.normal(size=(60, D)) + 0.4
    a, _, _ = _pipeline(_settings(), reference_dir, clock=FakeClock())
    _feed(a, make_observation, first)
    state = a.state_dict()
    # Through the real checkpoint store, as the app does it.
    store = CheckpointStore(reference_dir / "checkpoints")
    store.save("monitor", state)
    restored = store.load("monitor")
    assert restored is not None
    b, _, b_readings = _pipeline(_settings(), reference_dir, clock=FakeClock())
    assert b.load_state_dict(restored) == []
    _feed(a, make_observation, second)
    _feed(b, make_observation, second)
    ra = a.readings()
    rb = b.readings()
    assert list(ra) == list(rb)
    (key,) = ra
    assert ra[key] == rb[key]
    assert rb[key].score is not None


def test_incompatible_checkpoint_entries_are_skipped_not_fatal(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    a, _, _ = _pipeline(_settings(), reference_dir)
    _feed(a, make_observation, np.random.default_rng(3).normal(size=(50, D)))
    state = a.state_dict()
    other = _settings(detectors=[{"type": "ks", "window": 80}])
    b, _, _ = _pipeline(other, reference_dir)
    skipped = b.load_state_dict(state)
    assert len(skipped) == 1 and skipped[0].startswith("demo/1/features/ks: state was saved")
    with pytest.raises(ValueError, match="format_version"):
        b.load_state_dict({"format_version": 99})


def test_full_queue_refuses_and_rate_limit_sheds_counted(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    mono = FakeClock(50.0)
    settings = _settings(queue_size=10, max_samples_per_second=20.0)
    pipeline, registry, _ = _pipeline(settings, reference_dir, monotonic=mono)
    obs = make_observation(inputs={"x": np.zeros((5, D), dtype=np.float32)})
    accepted = [pipeline.offer(obs) for _ in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert registry.get_sample_value("outrider_monitor_queue_depth") == 10.0
    pipeline.drain()
    # 50 rows offered within the same instant, 20 rows/s with a 1 s burst: 20 pass.
    assert registry.get_sample_value(
        "outrider_monitor_shed_samples_total", {"model": "demo", "signal": "features"}
    ) == 30.0


def test_observations_waiting_past_max_lag_are_shed(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    mono = FakeClock(50.0)
    pipeline, registry, readings = _pipeline(
        _settings(max_lag_seconds=1.0), reference_dir, monotonic=mono
    )
    obs = make_observation(inputs={"x": np.zeros((5, D), dtype=np.float32)})
    for _ in range(4):
        pipeline.offer(obs)
    mono.t += 1.5
    pipeline.offer(obs)
    pipeline.drain()
    assert registry.get_sample_value(
        "outrider_monitor_shed_samples_total", {"model": "demo", "signal": "features"}
    ) == 4.0
    assert registry.get_sample_value("outrider_monitor_observations_total",
                                     {"outcome": "decoded"}) == 1.0


def test_worker_thread_under_a_flood_refuses_past_the_queue_bound_and_counts_shedding(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    settings = _settings(queue_size=200, batch_size=50, evaluation_interval_seconds=0.02,
                         max_samples_per_second=500.0)
    pipeline, registry, _ = _pipeline(settings, reference_dir)
    obs = make_observation(inputs={"x": np.zeros((8, D), dtype=np.float32)})
    pipeline.start()
    deepest = 0
    try:
        results = []
        for _ in range(5000):
            results.append(pipeline.offer(obs))
            deepest = max(deepest, pipeline.queue_depth)
    finally:
        pipeline.stop()
    assert pipeline.queue_depth == 0
    taken = sum(results)
    # The queue never holds more than its bound (what bounds the wait of an accepted
    # observation), and offers past it are refused at once rather than queued.
    assert deepest <= 200
    assert 200 <= taken < 5000
    decoded = registry.get_sample_value("outrider_monitor_observations_total",
                                        {"outcome": "decoded"}) or 0.0
    shed = registry.get_sample_value(
        "outrider_monitor_shed_samples_total", {"model": "demo", "signal": "features"}
    ) or 0.0
    assert decoded == taken
    assert shed > 0  # 8 rows per call far beyond 500 rows/s: shedding is counted


def test_versions_beyond_the_limit_fold_into_other(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    policy = LabelPolicy(LabelSettings(max_versions_per_model=2), known_models=["demo"])
    pipeline, _, _ = _pipeline(_settings(), reference_dir, labels=policy)
    for v in ("1", "2", "3", "4"):
        pipeline.offer(make_observation(inputs={"x": np.zeros((2, D), dtype=np.float32)},
                                        version=v))
    pipeline.drain()
    assert sorted({k.version for k in pipeline.readings()}) == ["1", "2", "other"]


def test_version_falls_back_to_request_then_lookup_once(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    asked: list[str] = []

    def lookup(model: str) -> str:
        asked.append(model)
        return "7"

    pipeline, _, _ = _pipeline(_settings(), reference_dir, version_lookup=lookup)
    x = {"x": np.zeros((2, D), dtype=np.float32)}
    pipeline.offer(make_observation(inputs=x, version="", request_version="3"))
    pipeline.offer(make_observation(inputs=x, version=""))
    pipeline.offer(make_observation(inputs=x, version=""))
    pipeline.drain()
    assert sorted({k.version for k in pipeline.readings()}) == ["3", "7"]
    assert asked == ["demo"]


def test_capture_takes_first_rows_persists_and_is_not_retaken(
    tmp_path: Path, make_observation: Callable[..., Any]
) -> None:
    settings = _settings(reference={"capture": 30})
    pipeline, _, readings = _pipeline(settings, tmp_path)
    rows = np.arange(40 * D, dtype=np.float32).reshape(40, D)
    _feed(pipeline, make_observation, rows[:20])
    assert pipeline.capture_progress() == {("demo", "features"): (20, 30)}
    partial = pipeline.state_dict()
    assert readings == []
    _feed(pipeline, make_observation, rows[20:])
    stored = ReferenceStore(tmp_path).load("demo", "features")
    assert stored is not None
    np.testing.assert_array_equal(stored.data, rows[:30].astype(np.float64))
    assert (stored.count, stored.dims, stored.version) == (30, D, "1")
    assert pipeline.capture_progress() == {}
    assert len(readings) == 1  # the 10 rows past the capture reached the detector
    # A restart with the file present does not capture again.
    again, _, _ = _pipeline(settings, tmp_path)
    assert again.capture_progress() == {}
    # A restart before the capture completed resumes it from the checkpoint.
    fresh_dir = tmp_path / "fresh"
    resumed, _, _ = _pipeline(settings, fresh_dir)
    store = CheckpointStore(fresh_dir / "checkpoints")
    store.save("monitor", partial)
    assert resumed.load_state_dict(store.load("monitor") or {}) == []
    assert resumed.capture_progress() == {("demo", "features"): (20, 30)}


def test_missing_or_mismatched_reference_is_refused_at_start(
    tmp_path: Path, save_reference: Callable[..., Path]
) -> None:
    with pytest.raises(ReferenceError, match="no reference at .*outrider reference build"):
        MonitorPipeline(_settings(), registry=None, state_dir=tmp_path)
    save_reference(tmp_path, "demo", "features", np.zeros((20, 3)))
    cols = PipelineSettings.model_validate(
        {"models": {"demo": {"signals": [{
            "name": "features", "source": {"input": "x"},
            "transform": {"columns": [0, 1]},
            "detectors": [{"type": "ks", "window": 10}]}]}}}
    )
    with pytest.raises(ReferenceMismatch, match="reference has 3 dims, the signal produces 2"):
        MonitorPipeline(cols, registry=None, state_dir=tmp_path)


def test_time_window_tests_each_period(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    clock = FakeClock()
    settings = _settings(detectors=[{"type": "ks", "window_seconds": 10.0}])
    pipeline, registry, readings = _pipeline(settings, reference_dir, clock=clock)
    rng = np.random.default_rng(4)
    _feed(pipeline, make_observation, rng.normal(size=(40, D)) + 2.0)
    assert readings[-1].score is None
    assert readings[-1].evidence["window_fill"] == 0.0
    clock.t += 5.0
    _feed(pipeline, make_observation, rng.normal(size=(10, D)) + 2.0)
    assert readings[-1].evidence["window_fill"] == 0.5
    clock.t += 6.0  # the period ended: its 50 rows are tested
    _feed(pipeline, make_observation, rng.normal(size=(5, D)))
    assert readings[-1].verdict is True
    assert registry.get_sample_value("outrider_drift_detected", LABELS) == 1.0
    store = CheckpointStore(reference_dir / "checkpoints")
    store.save("monitor", pipeline.state_dict())
    again, _, _ = _pipeline(settings, reference_dir, clock=clock)
    assert again.load_state_dict(store.load("monitor") or {}) == []
    assert again.state_dict()["streams"]["0"]["state"]["last"].tolist() == (
        pipeline.state_dict()["streams"]["0"]["state"]["last"].tolist()
    )


def test_a_failing_reading_listener_does_not_stop_the_pipeline(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    def boom(reading: Reading) -> None:
        raise RuntimeError("alerting bug")

    store = ReadingStore()
    store.subscribe(boom)
    pipeline = MonitorPipeline(_settings(), registry=None, state_dir=reference_dir, sink=store)
    _feed(pipeline, make_observation, np.zeros((10, D)))
    assert len(pipeline.readings()) == 1


def test_streamed_infer_is_decoded_like_unary(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    pipeline, _, readings = _pipeline(_settings(), reference_dir)
    _feed(pipeline, make_observation, np.zeros((10, D)), stream=True)
    assert len(readings) == 1 and readings[0].version == "1"


def test_reference_rows_subsample_is_seeded_and_bounded() -> None:
    from service.monitor.detector_factory import subsample_reference

    ref = np.arange(100, dtype=np.float64).reshape(50, 2)
    a = subsample_reference(ref, 10, 3)
    b = subsample_reference(ref, 10, 3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10, 2)
    assert len({tuple(r) for r in a}) == 10
    assert subsample_reference(ref, 80, 3) is ref


def test_bad_detector_params_fail_at_start(
    reference_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.monitor import detector_factory
    from service.monitor.detector_factory import DetectorBuildError
    from service.monitor.detector_registry import DETECTORS, DetectorKind

    registry = {**DETECTORS, "energy": DetectorKind("energy", "NoSuchScorer", "scorer")}
    monkeypatch.setattr(detector_factory, "DETECTORS", registry)
    settings = _settings(detectors=[{"type": "ks", "window": 10, "params": {"alpha": 2.0}}])
    with pytest.raises(DetectorBuildError, match="detector 'ks' \\(ks\\): alpha must be"):
        MonitorPipeline(settings, registry=None, state_dir=reference_dir)
    missing = _settings(detectors=[{"type": "energy", "window": 10}])
    with pytest.raises(DetectorBuildError, match="needs detectors.NoSuchScorer, not available"):
        MonitorPipeline(missing, registry=None, state_dir=reference_dir)


def test_payloads_reach_logs_only_when_allowed(
    reference_dir: Path, make_observation: Callable[..., Any]
) -> None:
    from structlog.testing import capture_logs

    nan = np.array([[np.nan, 1.0, 2.0, 3.0]], dtype=np.float32)
    for allowed in (False, True):
        pipeline, _, _ = _pipeline(_settings(log_payloads=allowed), reference_dir)
        pipeline.offer(make_observation(inputs={"x": nan}))
        with capture_logs() as logs:
            pipeline.drain()
        (event,) = [e for e in logs if e["event"] == "signal_error"]
        assert event["reason"] == "non_finite"
        assert ("first [nan, 1.0, 2.0, 3.0]" in event["detail"]) is allowed


def _save_linear_embedder(path: Path, w: np.ndarray) -> Path:
    """An ONNX embedder computing x @ w, saved at `path`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["e"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, w.shape[0]])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [None, w.shape[1]])],
        initializer=[numpy_helper.from_array(w, name="w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _embedder_settings(model: Path, batch_size: int) -> PipelineSettings:
    """One embedder signal on input `x` that captures a 10-row reference."""
    return _settings(
        source={"embedder": {"path": str(model), "input": "x", "batch_size": batch_size}},
        reference={"capture": 10},
    )


def test_embedder_signal_embeds_calls_in_one_batch(
    tmp_path: Path, make_observation: Callable[..., Any]
) -> None:
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    settings = _embedder_settings(_save_linear_embedder(tmp_path / "e.onnx", w), batch_size=5)
    pipeline, registry, _ = _pipeline(settings, tmp_path)
    x = np.arange(36, dtype=np.float32).reshape(12, 3)
    # The odd one first: the batch still keeps the common shape.
    pipeline.offer(make_observation(inputs={"x": np.zeros((2, 4), dtype=np.float32)}))
    for start in range(0, 12, 4):
        pipeline.offer(make_observation(inputs={"x": x[start : start + 4]}))
    pipeline.drain()
    stored = ReferenceStore(tmp_path).load("demo", "features")
    assert stored is not None
    np.testing.assert_array_equal(stored.data, (x @ w)[:10].astype(np.float64))
    assert registry.get_sample_value(
        "outrider_signal_errors_total",
        {"model": "demo", "signal": "features", "reason": "wrong_shape"},
    ) == 1.0
    assert registry.get_sample_value(
        "outrider_monitor_samples_total", {"model": "demo", "signal": "features"}
    ) == 2.0


def test_one_bad_call_does_not_cost_its_batch_the_embedding(
    tmp_path: Path, make_observation: Callable[..., Any]
) -> None:
    # Identity embedder: a NaN input row becomes a NaN embedding row.
    identity = np.eye(3, dtype=np.float32)
    settings = _embedder_settings(
        _save_linear_embedder(tmp_path / "e.onnx", identity), batch_size=16
    )
    pipeline, registry, _ = _pipeline(settings, tmp_path)
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    bad = np.full((2, 3), np.nan, dtype=np.float32)
    pipeline.offer(make_observation(inputs={"x": x[:5]}))
    pipeline.offer(make_observation(inputs={"x": bad}))
    pipeline.offer(make_observation(inputs={"x": x[5:]}))
    pipeline.drain()
    stored = ReferenceStore(tmp_path).load("demo", "features")
    assert stored is not None  # the two good calls (10 rows) completed the capture
    np.testing.assert_array_equal(stored.data, x.astype(np.float64))
    assert registry.get_sample_value(
        "outrider_signal_errors_total",
        {"model": "demo", "signal": "features", "reason": "non_finite"},
    ) == 1.0
