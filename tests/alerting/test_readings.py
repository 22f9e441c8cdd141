"""One Reading type for every source: kinds, named values, evidence, and rules that need no
change when a new kind of source starts publishing."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from service.alerting.engine import AlertEngine
from service.alerting.instances import AlertTransition
from service.alerting.reading_store import ReadingStore
from service.alerting.readings import Reading
from service.alerting.settings import AlertRuleSettings
from tests.support.readings import drift_reading


def reading(kind: str = "performance", **fields: Any) -> Reading:
    values: dict[str, Any] = {
        "kind": kind,
        "model": "digits",
        "version": "3",
        "signal": "accuracy",
        "detector": "realized",
        "timestamp": 10.0,
        "verdict": False,
    }
    values.update(fields)
    return Reading(**values)


def engine(*rules: dict[str, Any]) -> tuple[AlertEngine, list[AlertTransition]]:
    transitions: list[AlertTransition] = []
    alerts = AlertEngine(
        [AlertRuleSettings.model_validate(rule) for rule in rules],
        registry=None,
        on_transition=transitions.append,
    )
    return alerts, transitions


def test_unknown_kinds_and_reserved_evidence_names_are_refused() -> None:
    with pytest.raises(ValueError, match="reading kind 'latency' is not one of"):
        reading("latency")
    with pytest.raises(ValueError, match=r"evidence names \['score'\] are reserved"):
        reading(evidence={"score": 1.0})


def test_named_values_are_finite_numbers_from_fields_or_evidence() -> None:
    r = reading(score=0.8, p_value=math.nan, evidence={"labels": 120, "note": "x", "ok": True})
    assert r.value("score") == 0.8
    assert r.value("p_value") is None  # not finite
    assert r.value("threshold") is None  # absent
    assert r.value("labels") == 120.0
    assert r.value("note") is None and r.value("ok") is None  # not numbers
    assert r.value("missing") is None


def test_evidence_is_frozen_and_described_in_the_kinds_own_terms() -> None:
    shifts = drift_reading(
        model="m", version="1", signal="emb", detector="ks", timestamp=1.0,
        drift_detected=True, score=0.4, threshold=0.2, p_value=0.01,
        top_mean_shifts=[(2, 3.5)], example_request_ids=("r1",),
    )
    with pytest.raises(TypeError):
        shifts.evidence["ood_ratio"] = 1.0  # type: ignore[index]
    assert shifts.describe(0.4) == {
        "value": 0.4, "kind": "drift", "signal": "emb", "detector": "ks", "read_at": 1.0,
        "drift_detected": True, "score": 0.4, "threshold": 0.2, "p_value": 0.01,
        "ood_ratio": None, "window_fill": 1.0,
        "top_mean_shifts": [{"dimension": 2, "shift": 3.5}], "example_request_ids": ["r1"],
    }
    probe = Reading(kind="probe", model="m", version="1", signal="fgsm", detector="",
                    timestamp=2.0, verdict=True, score=0.6, threshold=0.9, p_value=0.003)
    assert probe.describe(0.6) == {
        "value": 0.6, "kind": "probe", "suite": "fgsm", "read_at": 2.0, "regression": True,
        "accuracy": 0.6, "baseline_accuracy": 0.9, "p_value": 0.003,
    }


def test_a_new_kind_is_alerted_on_by_kind_and_named_value_alone() -> None:
    alerts, transitions = engine(
        {"name": "AccuracyDropped", "selector": {"kind": "performance"},
         "condition": {"value": "score", "below": 0.9}},
        {"name": "Suspicious", "selector": {"kind": "guard"}, "condition": "verdict"},
        {"name": "Drift", "condition": "drift_detected"},  # drift and ood only
    )
    alerts.observe(reading(score=0.85, verdict=True))
    alerts.observe(reading("guard", signal="attack", detector="", verdict=True))
    alerts.evaluate(now=10.0)
    fired = {t.instance.alert: t for t in transitions}
    assert sorted(fired) == ["AccuracyDropped", "Suspicious"]
    accuracy = fired["AccuracyDropped"].instance
    assert (accuracy.value, dict(accuracy.labels)) == (0.85, {
        "alertname": "AccuracyDropped", "severity": "warning", "model": "digits",
        "version": "3", "metric": "accuracy", "detector": "realized",
    })
    assert fired["Suspicious"].evidence()["suspicious"] is True
    alerts.observe(reading(score=0.95, timestamp=11.0))
    assert [t.to_state for t in alerts.evaluate(now=11.0)] == ["resolved"]


def test_an_evidence_value_can_be_the_condition() -> None:
    alerts, transitions = engine(
        {"name": "FewLabels", "selector": {"kind": "perf*"},
         "condition": {"value": "labelled_share", "below": 0.1}},
    )
    alerts.observe(reading(evidence={"labelled_share": 0.05}))
    alerts.observe(reading(signal="f1", evidence={}))  # no such value: never holds
    alerts.evaluate(now=10.0)
    assert [(t.instance.key.signal, t.instance.value) for t in transitions] == [
        ("accuracy", 0.05)
    ]


@pytest.mark.parametrize(
    ("selector", "condition", "message"),
    [
        ({"kind": "latency"}, "verdict", "matches no reading kind"),
        ({}, {"value": "score"}, "give exactly one of above or below"),
        ({}, {"value": "score", "above": 1, "below": 2}, "give exactly one of above or below"),
        ({}, {"value": "not a name", "above": 1}, "should match pattern"),
    ],
)
def test_bad_kind_selectors_and_value_conditions_are_refused(
    selector: dict[str, Any], condition: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertRuleSettings.model_validate(
            {"name": "X", "selector": selector, "condition": condition}
        )


def test_a_transition_survives_its_record_as_json() -> None:
    alerts, transitions = engine({"name": "Drift", "condition": "drift_detected"})
    alerts.observe(drift_reading(
        model="m", version="1", signal="emb", detector="ks", timestamp=5.0,
        drift_detected=True, score=0.4, threshold=0.2, p_value=None,
        top_mean_shifts=[(1, 2.0)], example_request_ids=("a", "b"),
    ))
    alerts.evaluate(now=5.0)
    [fired] = transitions
    record = json.loads(json.dumps(fired.to_record()))
    again = AlertTransition.from_record(record)
    assert again.delivery_id == fired.delivery_id
    assert again.instance == fired.instance
    assert again.evidence() == fired.evidence()
    assert again.to_alert_event() == fired.to_alert_event()


def test_the_store_keeps_the_newest_reading_per_stream_and_its_history() -> None:
    store = ReadingStore()
    seen: list[float] = []
    store.subscribe(lambda r: seen.append(r.timestamp))
    for at in (1.0, 3.0, 2.0):
        store.publish(reading(timestamp=at))
    [(key, latest)] = store.latest().items()
    assert latest.timestamp == 3.0
    assert store.latest(kinds=("drift",)) == {}
    assert store.series(key).timestamp.tolist() == [1.0, 3.0]  # the straggler is not plotted
    assert seen == [1.0, 3.0, 2.0]
    with pytest.raises(TypeError, match="expected a Reading"):
        store.publish(object())  # type: ignore[arg-type]


def test_alert_state_written_before_kinds_still_loads() -> None:
    """Checkpoints of the previous release have no `kind`: probes are the detector-less."""
    alerts, transitions = engine(
        {"name": "Drift", "condition": "drift_detected"},
        {"name": "Robustness", "condition": "probe_regression"},
    )
    common = {"version": "1", "state": "firing", "active_since": 0.0, "fired_at": 0.0,
              "keep_firing_since": math.nan, "value": 0.5}
    alerts.load_state_dict({"format_version": 1, "instances": {
        "0": {"alert": "Drift", "model": "m", "source": "emb", "detector": "ks", **common},
        "1": {"alert": "Robustness", "model": "m", "source": "fgsm", "detector": "", **common},
    }})
    labels = [dict(instance.labels) for instance in alerts.instances()]
    assert [(x.get("signal"), x.get("suite"), x.get("detector")) for x in labels] == [
        ("emb", None, "ks"), (None, "fgsm", None)
    ]
    assert alerts.state_dict()["instances"]["1"]["kind"] == "probe"
