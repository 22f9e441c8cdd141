"""Prometheus rules in deploy/prometheus/: valid, unit-tested, documented and on-contract."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
    "OutriderDriftDetected",
    "OutriderOODRatioHigh",
    "OutriderProbeRegression",
    "OutriderTapDropRatioHigh",
    "OutriderTapDisabledConnections",
    "OutriderUpstreamErrors",
    "OutriderIncidentsNotRecorded",
    "OutriderScrapeAbsent",
}
# Series names in PromQL: identifiers not followed by "(" (functions) and not inside {..}
# label matchers or after "by"/"without" (label names); good enough for our own rules.
_SERIES = re.compile(r"\b(outrider_[a-z_]+|[a-z_]+:[a-z_0-9:]+)\b")


def _rules(kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(rule for rule in group["rules"] if kind in rule)
    return found


def test_rule_files_pass_promtool_check(promtool: str) -> None:
    result = run_tool([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout
    assert "SUCCESS: 9 rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run_tool([promtool, "test", "rules", *map(str, TEST_FILES)], cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


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


def test_every_expected_alert_exists() -> None:
    assert {rule["alert"] for rule in _rules("alert")} == EXPECTED_ALERTS


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_every_alert_is_unit_tested_firing_and_not_firing(alert: str) -> None:
    firing = quiet = 0
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["alertname"] != alert:
                    continue
                if check["exp_alerts"]:
                    firing += 1
                else:
                    quiet += 1
    assert firing >= 1, f"{alert}: no promtool test expects it to fire"
    assert quiet >= 1, f"{alert}: no promtool test expects it to stay quiet"


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_every_alert_is_documented_with_a_runbook(alert: str) -> None:
    (rule,) = [rule for rule in _rules("alert") if rule["alert"] == alert]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["labels"]["category"] in {"model", "outrider"}
    assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    url = rule["annotations"]["runbook_url"]
    assert url == f"{RUNBOOK_URL_PREFIX}{alert}.md"
    runbook = REPO_ROOT / "docs" / "runbooks" / f"{alert}.md"
    assert runbook.is_file(), f"missing runbook {runbook}"


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


def test_example_prometheus_config_is_valid(promtool: str) -> None:
    result = run_tool([promtool, "check", "config", str(RULES_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout
