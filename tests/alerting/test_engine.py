"""Alert rules: settings parsing, the Prometheus-style state machine, metrics and checkpoints."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timezone
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError
from structlog.testing import capture_logs

from service.alerting.conditions import condition_value
from service.alerting.engine import AlertEngine
from service.alerting.instances import AlertTransition
from service.alerting.readings import Reading, ReadingKey
from service.alerting.settings import AlertRules, AlertRuleSettings, parse_duration
from tests.support.readings import drift_reading, probe_reading

RULES = TypeAdapter(AlertRules)


def rule(**fields: Any) -> AlertRuleSettings:
    fields.setdefault("name", "Drift")
    fields.setdefault("condition", "drift_detected")
    return AlertRuleSettings.model_validate(fields)


def reading(
    detected: bool = True,
    *,
    at: float = 0.0,
    model: str = "resnet",
    version: str = "1",
    signal: str = "embedding",
    detector: str = "mmd",
    score: float | None = 0.5,
    threshold: float | None = 0.2,
    p_value: float | None = 0.001,
    ood_ratio: float | None = 0.1,
) -> Reading:
    return drift_reading(
        model=model,
        version=version,
        signal=signal,
        detector=detector,
        timestamp=at,
        drift_detected=detected,
        score=score,
        threshold=threshold,
        p_value=p_value,
        ood_ratio=ood_ratio,
        window_fill=1.0,
        top_mean_shifts=((3, 0.9), (7, 0.4)),
        example_request_ids=("req-1", "req-2"),
    )


def probe(regression: bool = True, *, at: float = 0.0, suite: str = "fgsm") -> Reading:
    return probe_reading(
        model="resnet",
        version="1",
        suite=suite,
        timestamp=at,
        regression=regression,
        accuracy=0.61,
        baseline_accuracy=0.9,
        p_value=0.002,
    )


class Harness:
    """An engine with its own registry, a recording callback and a fake clock."""

    def __init__(self, *rules: AlertRuleSettings, stale_after: float | None = None) -> None:
        self.registry = CollectorRegistry()
        self.transitions: list[AlertTransition] = []
        self.now = 0.0
        self.engine = AlertEngine(
            list(rules),
            registry=self.registry,
            on_transition=self.transitions.append,
            clock=lambda: self.now,
            stale_after=stale_after,
        )

    def step(self, at: float, *readings: Reading) -> list[str]:
        self.now = at
        for item in readings:
            self.engine.observe(item)
        return [t.to_state for t in self.engine.evaluate()]

    def gauge(self, alert: str = "Drift", severity: str = "warning", model: str = "resnet") -> Any:
        return self.registry.get_sample_value(
            "outrider_alert_state", {"alert": alert, "severity": severity, "model": model}
        )


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        (12, 12.0),
        ("0s", 0.0),
        (" 1.5s ", 1.5),
    ],
)
def test_durations_parse_like_prometheus(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "s", "10", "-5s", "5s junk", True, [1]])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_rules_parse_from_yaml_shaped_config() -> None:
    rules = RULES.validate_python(
        [
            {
                "name": "Drift",
                "severity": "critical",
                "condition": "drift_detected",
                "for": "2m",
                "keep_firing_for": "5m",
                "selector": {"model": "res*"},
                "annotations": {"summary": "{model} drifted"},
            },
            {"name": "Ood", "condition": {"ood_ratio_above": 0.2}},
        ]
    )
    assert rules[0].for_ == 120.0
    assert rules[0].keep_firing_for == 300.0
    assert rules[0].selector.model == "res*"
    assert rules[0].selector.signal == "*"
    assert rules[1].condition.ood_ratio_above == 0.2  # type: ignore[union-attr]
    assert rules[1].severity == "warning"


@pytest.mark.parametrize(
    ("entry", "location", "message"),
    [
        ({"condition": {"score_abov": 1}}, ("condition",), "a condition is one of"),
        ({"condition": "drifted"}, ("condition", "flag"), "drift_detected"),
        (
            {"condition": {"p_value_below": 1.5}},
            ("condition", "p_value_below", "p_value_below"),
            "less than 1",
        ),
        ({"condition": "drift_detected", "for": "3x"}, ("for",), "invalid duration '3x'"),
        (
            {"condition": "drift_detected", "annotations": {"summary": "{modl}"}},
            ("annotations", "summary"),
            "unknown placeholder(s) ['modl']",
        ),
        ({"condition": "drift_detected", "severity": "page"}, ("severity",), "critical"),
        ({"condition": "drift_detected", "colour": "red"}, ("colour",), "Extra inputs"),
        ({"condition": "drift_detected", "name": "bad name"}, ("name",), "invalid alert name"),
    ],
)
def test_bad_rules_name_the_field(
    entry: dict[str, Any], location: tuple[str, ...], message: str
) -> None:
    entry = {"name": "Drift", **entry}
    with pytest.raises(ValidationError) as caught:
        AlertRuleSettings.model_validate(entry)
    errors = caught.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == location
    assert message in errors[0]["msg"]


def test_rule_names_must_be_unique() -> None:
    with pytest.raises(ValidationError, match="'Drift' is used more than once"):
        RULES.validate_python([{"name": "Drift", "condition": "drift_detected"}] * 2)
    with pytest.raises(ValueError, match=r"repeated: \['Drift'\]"):
        AlertEngine([rule(), rule()], registry=None, on_transition=lambda t: None)


# --- state machine --------------------------------------------------------------------------


def test_pending_firing_resolved_at_exact_boundaries() -> None:
    h = Harness(rule(**{"for": "30s", "keep_firing_for": "60s"}))
    assert h.gauge() is None  # no stream seen yet: no series
    assert h.step(0.0, reading(True, at=0.0)) == ["pending"]
    assert h.gauge() == 1.0
    assert h.step(29.999) == []
    assert h.step(30.0) == ["firing"]
    assert h.gauge() == 2.0
    assert h.step(50.0) == []
    assert h.step(100.0, reading(False, at=100.0)) == []  # keep firing from here
    assert h.gauge() == 2.0
    assert h.step(159.999) == []
    assert h.step(160.0) == ["resolved"]
    assert h.gauge() == 0.0
    assert h.step(170.0) == []
    firing, resolved = h.transitions[1], h.transitions[2]
    assert (firing.from_state, firing.at, firing.instance.active_since) == ("pending", 30.0, 0.0)
    assert firing.instance.fired_at == 30.0
    assert (resolved.from_state, resolved.at, resolved.instance.state) == (
        "firing",
        160.0,
        "inactive",
    )


def test_pending_that_clears_goes_back_to_inactive_and_restarts_its_clock() -> None:
    h = Harness(rule(**{"for": "30s"}))
    assert h.step(0.0, reading(True, at=0.0)) == ["pending"]
    assert h.step(10.0, reading(False, at=10.0)) == ["inactive"]
    assert h.gauge() == 0.0
    assert h.step(20.0, reading(True, at=20.0)) == ["pending"]
    assert h.step(49.9) == []
    assert h.step(50.0) == ["firing"]


def test_zero_for_fires_at_once_and_zero_keep_firing_resolves_at_once() -> None:
    h = Harness(rule())
    assert h.step(5.0, reading(True, at=5.0)) == ["firing"]
    assert h.transitions[0].from_state == "inactive"
    assert h.step(6.0, reading(False, at=6.0)) == ["resolved"]


def test_condition_returning_during_keep_firing_restarts_the_countdown() -> None:
    h = Harness(rule(keep_firing_for="60s"))
    assert h.step(0.0, reading(True)) == ["firing"]
    assert h.step(100.0, reading(False, at=100.0)) == []
    assert h.step(130.0, reading(True, at=130.0)) == []
    assert h.step(140.0, reading(False, at=140.0)) == []
    assert h.step(160.0) == []  # would have resolved had the countdown not restarted
    assert h.step(199.9) == []
    assert h.step(200.0) == ["resolved"]


def test_older_reading_does_not_replace_a_newer_one() -> None:
    h = Harness(rule())
    assert h.step(10.0, reading(True, at=10.0), reading(False, at=5.0)) == ["firing"]


# --- conditions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "fields", "holds", "value"),
    [
        ("drift_detected", {"detected": True, "score": 0.5}, True, 0.5),
        ("drift_detected", {"detected": False, "score": 0.5}, False, 0.5),
        ({"score_above": 0.3}, {"score": 0.30001}, True, 0.30001),
        ({"score_above": 0.3}, {"score": 0.3}, False, 0.3),
        ({"score_above": 0.3}, {"score": None}, False, None),
        ({"score_above": 0.3}, {"score": math.nan}, False, None),
        ({"p_value_below": 0.01}, {"p_value": 0.00999}, True, 0.00999),
        ({"p_value_below": 0.01}, {"p_value": 0.01}, False, 0.01),
        ({"p_value_below": 0.01}, {"p_value": None}, False, None),
        ({"ood_ratio_above": 0.2}, {"ood_ratio": 0.25}, True, 0.25),
        ({"ood_ratio_above": 0.2}, {"ood_ratio": 0.2}, False, 0.2),
        ({"ood_ratio_above": 0.2}, {"ood_ratio": math.inf}, False, None),
        ("probe_regression", {"detected": True}, False, None),
    ],
)
def test_each_condition_on_detector_readings(
    condition: object, fields: dict[str, Any], holds: bool, value: float | None
) -> None:
    fields = dict(fields)
    detected = fields.pop("detected", False)
    assert condition_value(rule(condition=condition), reading(detected, **fields)) == (holds, value)


def test_probe_regression_watches_probes_only() -> None:
    h = Harness(
        rule(name="Robustness", condition="probe_regression", selector={"signal": "fg*"}),
        rule(name="Drift"),
    )
    assert h.step(0.0, probe(True, suite="fgsm"), probe(True, suite="noise")) == ["firing"]
    [fired] = h.transitions
    assert fired.instance.alert == "Robustness"
    assert fired.instance.key == ReadingKey("resnet", "1", "fgsm", "")
    assert dict(fired.instance.labels) == {
        "alertname": "Robustness",
        "severity": "warning",
        "model": "resnet",
        "version": "1",
        "suite": "fgsm",
    }
    assert fired.instance.value == 0.61
    assert fired.evidence()["baseline_accuracy"] == 0.9
    assert h.step(1.0, probe(False, at=1.0, suite="fgsm")) == ["resolved"]


def test_selector_globs_pick_streams() -> None:
    h = Harness(rule(selector={"model": "res*", "signal": "embedding", "detector": "m?d"}))
    assert h.step(
        0.0,
        reading(model="resnet"),
        reading(model="bert"),
        reading(signal="logits"),
        reading(detector="ks"),
    ) == ["firing"]
    assert h.transitions[0].instance.key == ReadingKey("resnet", "1", "embedding", "mmd")


# --- labels, cardinality, annotations, metrics, logs ----------------------------------------


def test_one_instance_per_stream_and_one_gauge_series_per_model() -> None:
    h = Harness(rule(severity="critical", **{"for": "10s"}))
    h.step(
        0.0,
        reading(version="1"),
        reading(version="2"),
        reading(model="bert"),
        reading(False, model="vit"),
    )
    assert h.step(10.0, reading(False, version="2", at=10.0)) == ["firing", "inactive", "firing"]
    assert len(h.engine.instances()) == 2
    assert [(e.name, e.status, e.model, e.version) for e in h.engine.firing()] == [
        ("Drift", "firing", "bert", "1"),
        ("Drift", "firing", "resnet", "1"),
    ]
    # Evidence of a firing alert is what its stream's latest reading says now.
    assert h.engine.firing()[1].evidence["example_request_ids"] == ["req-1", "req-2"]
    samples = [
        (s.labels["model"], s.value)
        for metric in h.registry.collect()
        if metric.name == "outrider_alert_state"
        for s in metric.samples
    ]
    assert samples == [("bert", 2.0), ("resnet", 2.0), ("vit", 0.0)]


def test_labels_and_rendered_annotations() -> None:
    h = Harness(
        rule(
            labels={"team": "vision", "model": "ignored"},
            annotations={
                "summary": "{model} v{version}: {detector} score {score:.2f} > {threshold}",
                "runbook_url": "https://runbooks.example/{alert}",
                "description": "p={p_value:.3f} ood={ood_ratio} unknown-format {value:.2f}",
            },
        )
    )
    h.step(0.0, reading(True, score=0.4567, threshold=0.2, p_value=None))
    instance = h.transitions[0].instance
    assert dict(instance.labels) == {
        "team": "vision",
        "alertname": "Drift",
        "severity": "warning",
        "model": "resnet",
        "version": "1",
        "signal": "embedding",
        "detector": "mmd",
    }
    assert dict(instance.annotations) == {
        "summary": "resnet v1: mmd score 0.46 > 0.2",
        "runbook_url": "https://runbooks.example/Drift",
        # p_value is missing, so {p_value:.3f} cannot be formatted: the raw template is kept.
        "description": "p={p_value:.3f} ood={ood_ratio} unknown-format {value:.2f}",
    }


def test_transitions_are_logged_and_a_failing_callback_does_not_stop_others() -> None:
    seen: list[str] = []

    def callback(transition: AlertTransition) -> None:
        seen.append(transition.instance.key.model)
        if transition.instance.key.model == "a":
            raise RuntimeError("incident store down")

    engine = AlertEngine([rule()], registry=None, on_transition=callback)
    engine.observe(reading(model="a"))
    engine.observe(reading(model="b"))
    with capture_logs() as logs:
        transitions = engine.evaluate(now=1.0)
    assert [t.to_state for t in transitions] == ["firing", "firing"]
    assert seen == ["a", "b"]
    events = [(e["event"], e.get("model"), e["log_level"]) for e in logs]
    assert events == [
        ("alert_transition", "a", "warning"),
        ("alert_transition", "b", "warning"),
        ("alert_transition_callback_failed", None, "error"),
    ]
    assert str(logs[2]["exc_info"]) == "incident store down"
    assert logs[0]["to_state"] == "firing"
    assert logs[0]["fingerprint"] == transitions[0].instance.fingerprint


def test_alert_event_conversion() -> None:
    h = Harness(rule(severity="critical", annotations={"summary": "{model} drifted"}))
    h.step(1_700_000_000.0, reading(True, at=1_700_000_000.0))
    h.step(1_700_000_060.0, reading(False, at=1_700_000_060.0))
    firing, resolved = h.transitions
    event = firing.to_alert_event(incident_id=7, incident_url="http://127.0.0.1/incidents/7")
    assert event is not None
    assert (event.name, event.severity, event.status, event.model, event.version) == (
        "Drift",
        "critical",
        "firing",
        "resnet",
        "1",
    )
    assert event.starts_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert event.ends_at is None
    assert event.incident_id == 7
    assert event.fingerprint == firing.instance.fingerprint
    assert len(event.fingerprint) == 16
    assert dict(event.annotations) == {"summary": "resnet drifted"}
    assert event.evidence["top_mean_shifts"] == [
        {"dimension": 3, "shift": 0.9},
        {"dimension": 7, "shift": 0.4},
    ]
    assert event.evidence["example_request_ids"] == ["req-1", "req-2"]
    ended = resolved.to_alert_event()
    assert ended is not None
    assert ended.status == "resolved"
    assert ended.starts_at == event.starts_at
    assert ended.ends_at == datetime(2023, 11, 14, 22, 14, 20, tzinfo=timezone.utc)
    assert ended.fingerprint == event.fingerprint
    pending = Harness(rule(**{"for": "1m"}))
    pending.step(0.0, reading(True))
    assert pending.transitions[0].to_alert_event() is None


# --- checkpoints ----------------------------------------------------------------------------


def _only_numbers_and_strings(state: object) -> bool:
    if isinstance(state, dict):
        return all(isinstance(k, str) and _only_numbers_and_strings(v) for k, v in state.items())
    return isinstance(state, int | float | str) and not isinstance(state, bool)


def test_state_dict_round_trip_keeps_states_and_clocks() -> None:
    rules = [
        rule(**{"for": "30s", "keep_firing_for": "60s"}),
        rule(name="Score", condition={"score_above": 0.3}, **{"for": "1m"}),
    ]
    first = Harness(*rules)
    first.step(0.0, reading(True))
    first.step(30.0)
    first.step(40.0, reading(False, at=40.0))  # Drift keeps firing since 40; Score pending
    state = first.engine.state_dict()
    assert _only_numbers_and_strings(state)
    assert state["format_version"] == 1
    assert sorted((i["alert"], i["state"]) for i in state["instances"].values()) == [
        ("Drift", "firing"),
        ("Score", "pending"),
    ]

    second = Harness(rules[0], rules[1], rule(name="Unrelated", condition="probe_regression"))
    second.engine.load_state_dict(state)
    assert second.gauge() == 2.0
    assert second.gauge(alert="Score") == 1.0
    assert [(i.alert, i.state, i.fired_at) for i in second.engine.instances()] == [
        ("Drift", "firing", 30.0),
        ("Score", "pending", None),
    ]
    [event] = second.engine.firing()
    assert (event.name, event.starts_at) == (
        "Drift",
        datetime(1970, 1, 1, 0, 0, 30, tzinfo=timezone.utc),
    )
    assert dict(event.evidence) == {"value": 0.5}  # no reading since the restart
    # No reading yet after the restart: instances hold their state.
    assert second.step(90.0) == []
    # Score (score 0.5 > 0.3) has been pending since the restored active_since 0: >= 1m.
    assert second.step(99.9, reading(False, at=99.9)) == ["firing"]
    assert (
        second.transitions[-1].instance.alert,
        second.transitions[-1].instance.active_since,
    ) == ("Score", 0.0)
    # Drift's condition has been false since the restored keep_firing_since 40: 60 s later.
    assert second.step(100.0) == ["resolved"]
    assert second.transitions[-1].instance.alert == "Drift"


def test_state_of_removed_rules_is_dropped() -> None:
    first = Harness(rule(name="Old"))
    first.step(0.0, reading(True))
    second = Harness(rule())
    second.engine.load_state_dict(first.engine.state_dict())
    assert second.engine.instances() == []


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"format_version": 2, "instances": {}}, "format_version 2 is not 1"),
        ({"format_version": 1, "instances": {"0": {"alert": "Drift"}}}, "instance '0'"),
        (
            {
                "format_version": 1,
                "instances": {
                    "0": {
                        "alert": "Drift",
                        "model": "m",
                        "version": "1",
                        "source": "s",
                        "detector": "d",
                        "state": "exploded",
                        "active_since": 0.0,
                        "fired_at": 1.0,
                        "keep_firing_since": math.nan,
                        "value": 1.0,
                    }
                },
            },
            "state 'exploded'",
        ),
        ({"format_version": 1, "instances": []}, "must be a mapping"),
    ],
)
def test_malformed_state_is_refused_and_changes_nothing(
    state: dict[str, Any], message: str
) -> None:
    h = Harness(rule())
    h.step(0.0, reading(True))
    with pytest.raises(ValueError, match=message):
        h.engine.load_state_dict(state)
    assert len(h.engine.firing()) == 1


# --- staleness ------------------------------------------------------------------------------


def stale_harness(*rules: AlertRuleSettings) -> Harness:
    return Harness(*rules, stale_after=60.0)


def test_a_stream_that_stops_reporting_resolves_after_stale_after() -> None:
    h = stale_harness(rule(keep_firing_for="30s"))
    assert h.step(0.0, reading(True, at=0.0)) == ["firing"]
    assert h.step(59.9) == []
    assert h.step(60.0) == []  # stale from here: condition false, keep firing 30 s
    assert h.step(89.9) == []
    assert h.step(90.0) == ["resolved"]
    assert h.transitions[-1].instance.value is None
    assert h.gauge() == 0.0
    assert h.step(100.0) == []  # still stale: nothing fires again
    assert h.step(101.0, reading(True, at=101.0)) == ["firing"]


def test_probe_verdicts_never_go_stale() -> None:
    h = stale_harness(rule(name="Robustness", condition="probe_regression"))
    assert h.step(0.0, probe(True)) == ["firing"]
    assert h.step(100_000.0) == []
    state = h.engine.state_dict()
    restored = stale_harness(rule(name="Robustness", condition="probe_regression"))
    restored.engine.load_state_dict(state)
    assert restored.step(100_000.0) == []
    assert [i.state for i in restored.engine.instances()] == ["firing"]


def test_restored_instance_without_readings_goes_stale_from_its_restore_time() -> None:
    first = Harness(rule())
    first.step(0.0, reading(True))
    h = stale_harness(rule())
    h.now = 1000.0
    h.engine.load_state_dict(first.engine.state_dict())
    assert h.step(1059.9) == []
    assert h.step(1060.0) == ["resolved"]
    resolved = h.transitions[-1]
    assert (resolved.reading, resolved.instance.fired_at, resolved.at) == (None, 0.0, 1060.0)


def test_stale_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stale_after must be > 0 seconds or None, got 0"):
        AlertEngine([rule()], registry=None, on_transition=lambda t: None, stale_after=0)


# --- callbacks that fail: kept, retried in order, bounded ---------------------------------


class DiskFullCallback:
    """An `on_transition` that raises for the models in `down`, as a full disk would."""

    def __init__(self, *down: str) -> None:
        self.down = set(down)
        self.attempts: list[tuple[str, str, float]] = []
        self.delivered: list[tuple[str, str, float]] = []

    def __call__(self, transition: AlertTransition) -> None:
        call = (transition.instance.key.model, transition.to_state, transition.at)
        self.attempts.append(call)
        if call[0] in self.down:
            raise OSError("database or disk is full")
        self.delivered.append(call)


def test_a_failed_transition_is_handed_over_again_until_it_goes_through_once() -> None:
    callback = DiskFullCallback("a")
    registry = CollectorRegistry()
    engine = AlertEngine([rule()], registry=registry, on_transition=callback)
    engine.observe(reading(model="a"))
    assert [t.to_state for t in engine.evaluate(now=1.0)] == ["firing"]
    assert (engine.undelivered, engine.callback_failures) == (1, 1)
    state = {"alert": "Drift", "severity": "warning", "model": "a"}
    assert registry.get_sample_value("outrider_alert_state", state) == 2.0  # still firing

    assert engine.evaluate(now=2.0) == []  # nothing new; the waiting one is tried again
    assert (engine.undelivered, engine.callback_failures) == (1, 2)
    callback.down.clear()
    with capture_logs() as logs:
        assert engine.evaluate(now=3.0) == []
    assert callback.delivered == [("a", "firing", 1.0)]  # the original transition, once
    assert engine.undelivered == 0
    assert [(e["event"], e["attempts"], e["delay_seconds"]) for e in logs] == [
        ("alert_transition_delivered_late", 3, 2.0)
    ]
    engine.evaluate(now=4.0)
    assert callback.attempts == [("a", "firing", 1.0)] * 3
    assert registry.get_sample_value("outrider_alert_state", state) == 2.0


def test_later_transitions_wait_behind_a_failed_one_of_their_instance_only() -> None:
    callback = DiskFullCallback("a")
    engine = AlertEngine([rule()], registry=None, on_transition=callback)
    engine.observe(reading(True, at=1.0, model="a"))
    engine.observe(reading(True, at=1.0, model="b"))
    engine.evaluate(now=1.0)
    engine.observe(reading(False, at=2.0, model="a"))
    engine.observe(reading(False, at=2.0, model="b"))
    assert [t.to_state for t in engine.evaluate(now=2.0)] == ["resolved", "resolved"]
    engine.observe(reading(True, at=3.0, model="a"))
    assert [t.to_state for t in engine.evaluate(now=3.0)] == ["firing"]
    # a's resolve and second firing were never tried before its first firing went through
    assert [call for call in callback.attempts if call[0] == "a"] == [("a", "firing", 1.0)] * 3
    assert callback.delivered == [("b", "firing", 1.0), ("b", "resolved", 2.0)]
    assert engine.undelivered == 3

    callback.down.clear()
    engine.evaluate(now=4.0)
    assert callback.delivered[2:] == [
        ("a", "firing", 1.0),
        ("a", "resolved", 2.0),
        ("a", "firing", 3.0),
    ]
    assert engine.undelivered == 0


def test_waiting_transitions_are_bounded_the_oldest_dropped_and_logged() -> None:
    callback = DiskFullCallback("a", "b", "c")
    engine = AlertEngine([rule()], registry=None, on_transition=callback, max_undelivered=2)
    for model in ("a", "b", "c"):
        engine.observe(reading(model=model))
    with capture_logs() as logs:
        transitions = engine.evaluate(now=1.0)
    dropped = [e for e in logs if e["event"] == "alert_transition_dropped"]
    assert [(e["log_level"], e["to_state"], e["fingerprint"], e["at"]) for e in dropped] == [
        ("error", "firing", transitions[0].instance.fingerprint, 1.0)
    ]
    assert (engine.undelivered, engine.callback_failures) == (2, 3)
    callback.down.clear()
    engine.evaluate(now=2.0)
    assert callback.delivered == [("b", "firing", 1.0), ("c", "firing", 1.0)]


def test_failing_rounds_log_one_error_line_at_most_once_a_minute() -> None:
    callback = DiskFullCallback("a", "b")
    engine = AlertEngine([rule()], registry=None, on_transition=callback)
    engine.observe(reading(model="a"))
    engine.observe(reading(model="b"))
    with capture_logs() as logs:
        for now in (0.0, 10.0, 59.9, 60.0, 70.0):
            engine.evaluate(now=now)  # never raises, however long the store is down
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [
        (
            e["event"],
            e["failed"],
            e["undelivered"],
            e["failures_total"],
            e["failing_rounds_not_logged"],
        )
        for e in errors
    ] == [
        ("alert_transition_callback_failed", 2, 2, 2, 0),
        ("alert_transition_callback_failed", 2, 2, 8, 2),
    ]
    assert str(errors[0]["exc_info"]) == "database or disk is full"
    assert engine.callback_failures == 10


def test_max_undelivered_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_undelivered must be >= 1, got 0"):
        AlertEngine([rule()], registry=None, on_transition=lambda t: None, max_undelivered=0)


def test_concurrent_evaluations_hand_a_waiting_transition_over_once() -> None:
    entered, release = threading.Event(), threading.Event()
    delivered: list[float] = []
    failing = [True]

    def callback(transition: AlertTransition) -> None:
        if failing[0]:
            failing[0] = False
            raise OSError("database or disk is full")
        delivered.append(transition.at)
        entered.set()
        assert release.wait(30.0)

    engine = AlertEngine([rule()], registry=None, on_transition=callback)
    engine.observe(reading(model="a"))
    engine.evaluate(now=1.0)
    results: dict[str, list[AlertTransition]] = {}
    first = threading.Thread(target=lambda: results.update(first=engine.evaluate(now=2.0)))
    second = threading.Thread(target=lambda: results.update(second=engine.evaluate(now=3.0)))
    first.start()
    assert entered.wait(30.0)  # the retry is inside the callback
    second.start()
    # The second evaluation waits for the first one's hand-over. The window only gives a
    # broken engine the chance to hand the same transition over twice; a correct one passes
    # however long the machine takes.
    second.join(0.2)
    assert second.is_alive()
    release.set()
    first.join(30.0)
    second.join(30.0)
    assert results == {"first": [], "second": []}
    assert delivered == [1.0]
    assert engine.undelivered == 0
