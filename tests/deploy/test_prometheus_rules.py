"""Prometheus rules in deploy/prometheus/: valid, unit-tested, documented and on-contract."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from deploy_contract import (
    DEPLOY_DIR,
    REPO_ROOT,
    RUNBOOK_URL_PREFIX,
    exported_series_names,
    run_tool,
)

RULES_DIR = DEPLOY_DIR / "prometheus"
RULE_FILES = sorted(RULES_DIR.glob("*.yaml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.test.yaml"))
EXPECTED_ALERTS = {
    "OutriderDriftDetected": {"critical"},
    "OutriderOODRatioHigh": {"warning"},
    "OutriderProbeRegression": {"critical"},
    "OutriderHookActionFailed": {"critical"},
    "OutriderAutomaticRollback": {"info"},
    "OutriderErrorBudgetBurn": {"critical", "warning"},
    "OutriderLatencyBudgetBurn": {"critical", "warning"},
    "OutriderTapDropRatioHigh": {"warning"},
    "OutriderTapDisabledConnections": {"warning"},
    "OutriderUpstreamErrors": {"critical"},
    "OutriderIncidentsNotRecorded": {"critical"},
    "OutriderScrapeAbsent": {"critical"},
}
# The labels Prometheus puts on every scraped series in Kubernetes that say which replica
# a series came from; per-replica alerts must keep them so the page names the pod.
REPLICA_LABELS = ("namespace", "pod", "job", "instance")
DASHBOARD_URL_PREFIX = "https://grafana.example.com/d/"
# Series names in PromQL: identifiers not followed by "(" (functions) and not inside {..}
# label matchers or after "by"/"without" (label names); good enough for our own rules.
_SERIES = re.compile(r"\b(outrider_[a-z_]+|[a-z_]+:[a-z_0-9:]+)\b")


def _rules(kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(rule for rule in group["rules"] if kind in rule)
    return found


def _dashboard_variables() -> dict[str, set[str]]:
    """Template variable names of each shipped dashboard, by uid."""
    found = {}
    for path in (DEPLOY_DIR / "grafana").glob("*.json"):
        dashboard = json.loads(path.read_text())
        found[dashboard["uid"]] = {v["name"] for v in dashboard["templating"]["list"]}
    return found


def test_rule_files_pass_promtool_check(promtool: str) -> None:
    result = run_tool([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert [path.name for path in RULE_FILES] == ["alerts.yaml", "recording.yaml", "slo.yaml"]
    assert "SUCCESS: 14 rules found" in result.stdout  # alerts.yaml
    assert "SUCCESS: 11 rules found" in result.stdout  # recording.yaml
    assert "SUCCESS: 16 rules found" in result.stdout  # slo.yaml


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run_tool([promtool, "test", "rules", *map(str, TEST_FILES)], cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES) == 3


def test_promtool_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """A wrong expectation must make promtool fail, or the suite above proves nothing."""
    original = (RULES_DIR / "tests" / "alerts.test.yaml").read_text()
    broken = original.replace("sheds 20% of sampled", "sheds 21% of sampled")
    assert broken != original
    for rule_file in RULE_FILES:
        (tmp_path / rule_file.name).write_text(rule_file.read_text())
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "alerts.test.yaml").write_text(broken)
    result = run_tool([promtool, "test", "rules", "tests/alerts.test.yaml"], cwd=tmp_path)
    assert result.returncode == 1
    assert "OutriderTapDropRatioHigh" in result.stdout + result.stderr


def test_every_expected_alert_exists_with_its_severities() -> None:
    found: dict[str, set[str]] = {}
    for rule in _rules("alert"):
        found.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert found == EXPECTED_ALERTS


@functools.cache
def _unit_tested() -> tuple[set[tuple[str, str]], set[str]]:
    """(alert, severity) pairs some promtool test expects firing; alerts one expects quiet."""
    firing: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if not check["exp_alerts"]:
                    quiet.add(check["alertname"])
                for alert in check["exp_alerts"]:
                    firing.add((check["alertname"], alert["exp_labels"]["severity"]))
    return firing, quiet


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_every_alert_is_unit_tested_firing_and_not_firing(alert: str) -> None:
    firing, quiet = _unit_tested()
    for severity in EXPECTED_ALERTS[alert]:
        assert (alert, severity) in firing, f"{alert}: no test expects it to fire ({severity})"
    assert alert in quiet, f"{alert}: no promtool test expects it to stay quiet"


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_every_alert_is_documented_with_a_runbook_and_a_dashboard(alert: str) -> None:
    for rule in [rule for rule in _rules("alert") if rule["alert"] == alert]:
        assert rule["labels"]["category"] in {"model", "outrider"}
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
        assert annotations["runbook_url"] == f"{RUNBOOK_URL_PREFIX}{alert}.md"
        runbook = REPO_ROOT / "docs" / "runbooks" / f"{alert}.md"
        assert runbook.is_file(), f"missing runbook {runbook}"


@pytest.mark.parametrize("alert", sorted(set(EXPECTED_ALERTS) - {"OutriderScrapeAbsent"}))
def test_every_alert_says_how_bad_it_is(alert: str) -> None:
    """The page carries the alert's value, or the series it is about, not just its name."""
    for rule in [rule for rule in _rules("alert") if rule["alert"] == alert]:
        text = rule["annotations"]["summary"] + rule["annotations"]["description"]
        assert "$value" in text or "| query" in text, alert


def test_dashboard_urls_open_a_shipped_dashboard_with_variables_it_defines() -> None:
    variables = _dashboard_variables()
    for rule in _rules("alert"):
        url = urlsplit(rule["annotations"]["dashboard_url"])
        assert rule["annotations"]["dashboard_url"].startswith(DASHBOARD_URL_PREFIX)
        uid = url.path.split("/")[2]
        assert uid in variables, f"{rule['alert']}: no dashboard {uid}"
        names = {key[len("var-"):] for key, _ in parse_qsl(url.query) if key.startswith("var-")}
        assert names, rule["alert"]
        assert names <= variables[uid], f"{rule['alert']}: {sorted(names - variables[uid])}"
        if rule["labels"]["category"] == "model":
            assert uid == "outrider-model"
            assert {"namespace", "instance", "model", "version"} <= names


def test_per_replica_rules_keep_the_labels_that_name_the_pod() -> None:
    """Model alerts read raw per-replica series; per-replica aggregations keep the pod."""
    for rule in _rules("alert"):
        if rule["labels"]["category"] == "model":
            assert " by " not in rule["expr"] and "without" not in rule["expr"], rule["alert"]
    per_replica = [rule for rule in _rules("record") if rule["record"].startswith("instance:")]
    per_replica += [rule for rule in _rules("alert") if rule["alert"] in {
        "OutriderHookActionFailed", "OutriderAutomaticRollback", "OutriderUpstreamErrors",
        "OutriderIncidentsNotRecorded",
    }]
    assert len(per_replica) == 7
    for rule in per_replica:
        clauses = re.findall(r"\bby \(([^)]*)\)", rule["expr"])
        assert clauses, rule
        for clause in clauses:
            kept = [label.strip() for label in clause.split(",")]
            assert kept[: len(REPLICA_LABELS)] == list(REPLICA_LABELS), (rule, clause)


def test_rules_refer_only_to_exported_metrics_and_own_recordings() -> None:
    recorded = {rule["record"] for rule in _rules("record")}
    allowed = exported_series_names() | recorded
    for rule in _rules("record") + _rules("alert"):
        for name in _SERIES.findall(rule["expr"]):
            assert name in allowed, f"{rule.get('alert') or rule['record']}: unknown series {name}"


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for rule in _rules("record"):
        level, metric, operations = rule["record"].split(":")
        assert level and operations
        assert metric.startswith("outrider_")


def test_slo_alerts_use_the_workbooks_windows_and_burn_rates() -> None:
    """Page on 1 h + 5 min above 14.4 or 6 h + 30 min above 6; ticket on 3 d + 6 h above 1."""
    expected = {
        "critical": {("1h", "14.4"), ("5m", "14.4"), ("6h", "6"), ("30m", "6")},
        "warning": {("3d", "1"), ("6h", "1")},
    }
    for name in ("OutriderErrorBudgetBurn", "OutriderLatencyBudgetBurn"):
        for rule in [rule for rule in _rules("alert") if rule["alert"] == name]:
            found = set(re.findall(r"ratio_rate(\w+)\n[^\n]*\) > ([\d.]+)", rule["expr"]))
            assert found == expected[rule["labels"]["severity"]], (name, sorted(found))


def test_example_prometheus_config_is_valid(promtool: str) -> None:
    result = run_tool([promtool, "check", "config", str(RULES_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 3 rule files found" in result.stdout
