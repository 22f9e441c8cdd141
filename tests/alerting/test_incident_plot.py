"""Reading history (bounded, checkpointable) and the incident plots drawn from it."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from service.alerting.engine import AlertEngine
from service.alerting.history import ReadingHistory
from service.alerting.incident_plot import render_incident_plot
from service.alerting.instances import AlertTransition
from service.alerting.reading_store import ReadingStore
from service.alerting.readings import Reading, ReadingKey
from service.alerting.settings import AlertRuleSettings
from service.store.incidents import IncidentStore
from service.store.state_dir import prepare_state_dir
from tests.support.readings import drift_reading, probe_reading

KEY = ReadingKey("resnet", "1", "embedding", "mmd")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def reading(at: float, score: float | None, detected: bool = False) -> Reading:
    return drift_reading(
        model="resnet", version="1", signal="embedding", detector="mmd", timestamp=at,
        drift_detected=detected, score=score, threshold=0.2, p_value=None, ood_ratio=0.05,
        window_fill=1.0,
    )


def drifting_history(seed: int = 3) -> ReadingHistory:
    rng = np.random.default_rng(seed)
    history = ReadingHistory(max_age_seconds=3600.0, max_points=500)
    start = 1_700_000_000.0
    for step in range(240):
        drift = 0.0 if step < 120 else (step - 120) * 0.004
        score = 0.1 + drift + float(rng.normal(0.0, 0.01))
        history.append(reading(start + 5.0 * step, score, detected=score > 0.2))
    return history


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- history --------------------------------------------------------------------------------


def test_history_keeps_the_last_max_age_seconds() -> None:
    history = ReadingHistory(max_age_seconds=60.0, max_points=100)
    for second in range(0, 100, 10):
        assert history.append(reading(float(second), float(second)))
    series = history.series(KEY)
    assert series.timestamp.tolist() == [30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert series.score.tolist() == [30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert history.series(KEY, since=45.0, until=70.0).timestamp.tolist() == [50.0, 60.0, 70.0]


def test_history_keeps_at_most_max_points_and_ignores_stragglers() -> None:
    history = ReadingHistory(max_age_seconds=1e9, max_points=3)
    for second in range(5):
        history.append(reading(float(second), 1.0))
    assert not history.append(reading(1.5, 9.0))
    assert history.series(KEY).timestamp.tolist() == [2.0, 3.0, 4.0]


def test_history_series_columns_and_kinds() -> None:
    history = ReadingHistory()
    history.append(reading(1.0, None, detected=True))
    history.append(probe_reading(model="resnet", version="1", suite="fgsm", timestamp=2.0,
                                regression=True, accuracy=0.6, baseline_accuracy=0.9,
                                p_value=0.01))
    series = history.series(KEY)
    assert series.kind == "drift"
    assert math.isnan(series.score[0]) and math.isnan(series.p_value[0])
    assert (series.threshold.tolist(), series.ood_ratio.tolist(), series.flagged.tolist()) == (
        [0.2], [0.05], [True]
    )
    probe = history.series(ReadingKey("resnet", "1", "fgsm", ""))
    assert probe.kind == "probe"
    assert (probe.score.tolist(), probe.threshold.tolist(), probe.p_value.tolist()) == (
        [0.6], [0.9], [0.01]
    )
    assert math.isnan(probe.ood_ratio[0])
    assert history.keys() == [ReadingKey("resnet", "1", "embedding", "mmd"),
                              ReadingKey("resnet", "1", "fgsm", "")]
    empty = history.series(ReadingKey("bert", "1", "x", "ks"))
    assert len(empty) == 0 and empty.kind == "drift"


def test_history_state_dict_round_trip() -> None:
    history = drifting_history()
    state = history.state_dict()
    restored = ReadingHistory(max_age_seconds=3600.0, max_points=100)
    restored.load_state_dict(state)
    before, after = history.series(KEY), restored.series(KEY)
    assert len(before) == 240 and len(after) == 100  # the restoring history's limit applies
    np.testing.assert_array_equal(after.timestamp, before.timestamp[-100:])
    np.testing.assert_array_equal(after.score, before.score[-100:])
    np.testing.assert_array_equal(after.flagged, before.flagged[-100:])
    broken = {"format_version": 1, "streams": {"0": {**state["streams"]["0"],
                                                     "score": np.zeros(3)}}}
    with pytest.raises(ValueError, match="stream '0' is malformed: columns differ in length"):
        restored.load_state_dict(broken)
    with pytest.raises(ValueError, match="format_version 9 is not 1"):
        restored.load_state_dict({"format_version": 9})
    assert len(restored.series(KEY)) == 100


@pytest.mark.parametrize("kwargs", [{"max_age_seconds": 0.0}, {"max_points": 1}])
def test_history_limits_are_checked(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ReadingHistory(**kwargs)  # type: ignore[arg-type]


# --- plots ----------------------------------------------------------------------------------


def test_plot_is_a_png_with_the_incident(tmp_path: Path) -> None:
    history = drifting_history()
    fired_at = 1_700_000_000.0 + 5.0 * 150
    path = render_incident_plot(
        tmp_path / "plots" / "incident-1.png",
        history.series(KEY, since=fired_at - 1800, until=fired_at + 600),
        title="Drift: resnet v1 embedding/mmd",
        fired_at=fired_at,
        active_since=fired_at - 60.0,
        ended_at=fired_at + 300.0,
        rule_limit=0.3,
    )
    assert path == tmp_path / "plots" / "incident-1.png"
    assert png_size(path) == (900, 400)
    assert path.stat().st_size > 20_000  # lines, markers, legend: far more than a blank canvas
    assert [p.name for p in path.parent.iterdir()] == ["incident-1.png"]  # no temp left


def test_plot_of_an_empty_series_and_a_probe(tmp_path: Path) -> None:
    history = ReadingHistory()
    empty = render_incident_plot(tmp_path / "empty.png", history.series(KEY), title="Drift",
                                 fired_at=1_700_000_000.0)
    assert png_size(empty) == (900, 400)
    for step in range(10):
        history.append(probe_reading(model="m", version="1", suite="fgsm",
                                    timestamp=1_700_000_000.0 + 60 * step, regression=step > 6,
                                    accuracy=0.9 - 0.05 * step, baseline_accuracy=0.9,
                                    p_value=None))
    probe = render_incident_plot(tmp_path / "probe.png",
                                 history.series(ReadingKey("m", "1", "fgsm", "")),
                                 title="Robustness", fired_at=1_700_000_420.0)
    assert png_size(probe) == (900, 400)
    assert probe.stat().st_size > empty.stat().st_size


def test_firing_alert_gets_an_incident_with_its_plot(tmp_path: Path) -> None:
    """The flow the app wires: one reading store; on firing, incident then plot."""
    import asyncio

    from service.alerting.incident_flow import IncidentFlow

    state = prepare_state_dir(tmp_path / "state")
    store = IncidentStore(state.incidents_db)
    readings = ReadingStore()
    loop = asyncio.new_event_loop()
    flow = IncidentFlow(store, readings.history, state, submit_event=lambda event: True, loop=loop)
    sizes: dict[str, int] = {}

    def on_transition(transition: AlertTransition) -> None:
        flow(transition)
        if transition.to_state in ("firing", "resolved"):
            [incident] = store.list_incidents()
            assert incident.plot_path is not None
            sizes[transition.to_state] = Path(incident.plot_path).stat().st_size

    rule = AlertRuleSettings.model_validate(
        {"name": "Drift", "condition": {"score_above": 0.2}, "for": "30s"}
    )
    engine = AlertEngine([rule], registry=None, on_transition=on_transition, readings=readings)
    start = 1_700_000_000.0
    source = drifting_history()
    for timestamp, score in zip(source.series(KEY).timestamp, source.series(KEY).score,
                                strict=True):
        item = reading(float(timestamp), float(score), detected=score > 0.2)
        readings.publish(item)
        engine.evaluate(now=float(timestamp))
    recovered = reading(start + 1200.0, 0.1)
    readings.publish(recovered)
    engine.evaluate(now=start + 1200.0)

    [incident] = store.list_incidents()
    plots = tmp_path / "state" / "plots"
    assert incident.plot_path == str(plots / "incident-1-resolved.png")
    assert incident.status == "resolved"
    assert png_size(Path(incident.plot_path)) == (900, 400)
    assert (incident.started_at, incident.ended_at) == (start + 765.0, start + 1200.0)
    # Rendered at firing, then at resolution (the whole incident) into a second file: the
    # picture the on-call was paged with is kept.
    assert sorted(sizes) == ["firing", "resolved"]
    assert sizes["firing"] > 20_000 and sizes["resolved"] > 20_000
    assert (plots / "incident-1-firing.png").stat().st_size == sizes["firing"]
    assert sorted(p.name for p in plots.iterdir()) == [
        "incident-1-firing.png", "incident-1-resolved.png"
    ]
    # Pruning the resolved incident removes both files.
    assert store.prune_resolved(ended_before=start + 10_000.0).plots == 2
    assert list(plots.iterdir()) == []
    store.close()
    loop.close()


def test_the_title_shows_the_version_as_labelled() -> None:
    """Was `digits vv1` for a version labelled `v1`."""
    from service.alerting.incident_plot import alert_plot_title

    assert alert_plot_title("Drift", "page", "digits", "v1", "input/ks") == (
        "Drift (page): digits version v1 input/ks"
    )


def test_traffic_gaps_break_the_line() -> None:
    from service.alerting.incident_plot import break_at_gaps

    times = np.array([0.0, 1.0, 2.0, 3.0, 60.0, 61.0, 62.0])
    stamps, (score,) = break_at_gaps(times, np.arange(7.0))
    assert stamps.tolist() == [0.0, 1.0, 2.0, 3.0, 31.5, 60.0, 61.0, 62.0]
    assert np.isnan(score[4]) and not np.isnan(np.delete(score, 4)).any()
    steady, _ = break_at_gaps(np.arange(0.0, 100.0, 10.0), np.zeros(10))
    assert len(steady) == 10  # sparse but regular readings are no gap


def test_readings_repeated_without_traffic_are_kept_as_gaps() -> None:
    """A time window re-read while no traffic comes repeats its last outcome (window empty):
    kept as a gap, not as a flat line of drift markers."""
    history = ReadingHistory()

    def windowed(at: float, score: float, fill: float) -> Reading:
        return drift_reading(
            model="resnet", version="1", signal="embedding", detector="mmd", timestamp=at,
            drift_detected=score > 0.2, score=score, threshold=0.2, p_value=0.01,
            ood_ratio=None, window_fill=fill,
        )

    history.append(windowed(0.0, 0.5, 0.5))   # traffic, a period in progress
    history.append(windowed(1.0, 0.5, 0.9))   # same outcome, still traffic
    history.append(windowed(2.0, 0.6, 0.0))   # the period just completed: a new outcome
    history.append(windowed(3.0, 0.6, 0.0))   # no traffic since: a repeat
    history.append(windowed(4.0, 0.6, 0.0))
    history.append(windowed(5.0, 0.7, 0.1))   # traffic again
    series = history.series(KEY)
    assert series.timestamp.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert series.flagged.tolist() == [True, True, True, False, False, True]
    assert np.isnan(series.score[3:5]).all() and not np.isnan(series.score[[0, 1, 2, 5]]).any()
