"""run_reference_checks: which checks run on which inputs, index mapping, budget, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.reference_checks import (
    CHECKS,
    CheckSettings,
    run_reference_checks,
)


def _reference(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(3, size=600)
    x = np.eye(8)[y] * 6.0 + rng.normal(size=(600, 8))
    logits = x[:, :3] * 2.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return x, y, p


def test_vectors_alone_run_the_label_free_checks_and_say_why_others_did_not() -> None:
    x, _, _ = _reference()
    report = run_reference_checks(x)
    assert [r.check for r in report.results] == list(CHECKS)
    status = {r.check: r.status for r in report.results}
    assert status["probe_leakage"] == "skipped"
    assert report.result("label_errors").message == "needs labels and probabilities"
    assert report.result("seed_ood").message.startswith("no seed reference given")
    assert report.result("spectral_signatures").message.startswith("needs labels or prob")
    for name in ("non_finite", "duplicates", "robust_outliers"):
        assert status[name] == "ok", (name, report.result(name).message)
    assert not report.flagged and report.flagged_checks == []


def test_every_input_runs_every_check_and_rows_keep_their_original_indices() -> None:
    x, y, p = _reference(1)
    probes = np.random.default_rng(2).normal(size=(40, 8))
    training = np.random.default_rng(3).normal(size=(100, 8))
    x[17] = probes[5]
    x[30] = training[2]
    x[44] = x[12]
    x[3, 2] = np.nan  # left out of every other check; indices after it must not shift
    y[200] = (y[200] + 1) % 3  # a label error the probabilities contradict
    report = run_reference_checks(
        x,
        probabilities=p,
        labels=y,
        probe_suites={"noise": probes},
        training_set=training,
        priors=np.full(3, 1 / 3),
        seed_reference=_reference(4)[0],
    )
    assert report.result("non_finite").rows.tolist() == [3]
    assert report.result("probe_leakage").rows.tolist() == [17]
    assert report.result("probe_leakage").summary["suites"] == {
        "noise": {"offset": 0, "rows": 40, "reference_rows": 1}
    }
    assert report.result("training_leakage").rows.tolist() == [30]
    duplicates = report.result("duplicates")
    assert duplicates.rows.tolist() == [44] and duplicates.related.tolist() == [12]
    assert 200 in report.result("label_errors").rows.tolist()
    assert report.result("robust_outliers").status == "skipped"  # a seed was given
    assert report.result("seed_ood").status != "skipped"
    assert report.flagged
    assert {"non_finite", "probe_leakage", "training_leakage"} <= set(report.flagged_checks)
    assert {3, 17, 30, 44, 200} <= set(report.flagged_rows().tolist())
    assert report.flagged_rows(["duplicates"]).tolist() == [44]
    row_scores = report.result("duplicates").row_scores
    assert row_scores is not None and np.isnan(row_scores[3]) and row_scores[44] == 1.0


def test_report_dict_is_plain_json() -> None:
    x, y, p = _reference(5)
    x[0, 0] = np.inf
    document = run_reference_checks(x, probabilities=p, labels=y).to_dict()
    text = json.dumps(document, allow_nan=False)
    back = json.loads(text)
    assert back["schema_version"] == 1 and back["rows"] == 600 and back["dims"] == 8
    assert [c["check"] for c in back["checks"]] == list(CHECKS)
    assert back["checks"][0]["rows"] == [
        {"index": 0, "reason": "non_finite", "score": 1.0, "related": -1}
    ]


def test_only_and_time_budget_skip_checks_by_name() -> None:
    x, _, _ = _reference(6)
    only = run_reference_checks(x, settings=CheckSettings(only=("duplicates",)))
    assert only.result("robust_outliers").message == "not selected"
    assert only.result("duplicates").status == "ok"
    spent = run_reference_checks(x, settings=CheckSettings(time_budget_s=1e-9))
    assert spent.result("duplicates").status == "skipped"
    assert "time budget of 1e-09 s spent" in spent.result("duplicates").message
    assert spent.result("non_finite").status == "ok"  # costs nothing, always runs


def test_bad_inputs_and_settings_name_the_problem() -> None:
    x, y, p = _reference(7)
    with pytest.raises(ValueError, match="labels must have shape"):
        run_reference_checks(x, labels=y[:10])
    with pytest.raises(ValueError, match="probabilities must be"):
        run_reference_checks(x, probabilities=p[:, :1])
    with pytest.raises(ValueError, match="training set has 3 columns"):
        run_reference_checks(x, training_set=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="probe suite 'a' holds NaN"):
        run_reference_checks(x, probe_suites={"a": np.full((2, 8), np.nan)})
    with pytest.raises(ValueError, match="labels must be < 2"):
        run_reference_checks(x, labels=y, priors=[0.5, 0.5])
    with pytest.raises(ValueError, match="near_ratio must be a float in"):
        CheckSettings(near_ratio=2.0)
    with pytest.raises(ValueError, match="only names unknown checks"):
        CheckSettings(only=("nope",))
