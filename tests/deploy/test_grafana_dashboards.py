"""Grafana dashboards in deploy/grafana/: valid PromQL on exported metrics only."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_contract import DEPLOY_DIR, exported_series_names, run_tool

DASHBOARDS = sorted((DEPLOY_DIR / "grafana").glob("*.json"))
# Series Prometheus makes itself that dashboards may read.
PROMETHEUS_SERIES = frozenset({"ALERTS", "up"})
# Grafana's built-in range variables, replaced by a duration before promtool sees them.
_RANGE_VARIABLE = re.compile(r"\$__(rate_interval|interval|range)\b")
_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")
# A series name is an identifier followed by a matcher block or a range selector.
_SELECTED = re.compile(r"([a-zA-Z_:][\w:]*)\s*(?=\{|\[)")
_OUTRIDER = re.compile(r"\boutrider_\w+")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [
        target["expr"]
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.match(variable["query"]["query"])
        assert match, f"variable {variable['name']}: expected label_values(selector, label)"
        exprs.append(match["selector"])
    return exprs


def _as_plain_promql(expr: str) -> str:
    """Replace Grafana variables the way Grafana would before sending the query."""
    return _VARIABLE.sub("placeholder", _RANGE_VARIABLE.sub("5m", expr))


def test_both_dashboards_exist() -> None:
    assert [path.name for path in DASHBOARDS] == ["outrider-model.json", "outrider-overview.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_expression_parses_with_promtool(
    path: Path, promtool: str, tmp_path: Path
) -> None:
    exprs = _expressions(_load(path))
    assert len(exprs) >= 15
    rules = {
        "groups": [
            {
                "name": f"dashboard-{path.stem}",
                "rules": [
                    {"record": f"dashboard:expr_{index}:check", "expr": _as_plain_promql(expr)}
                    for index, expr in enumerate(exprs)
                ],
            }
        ]
    }
    rule_file = tmp_path / "dashboard.rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = run_tool([promtool, "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_expression(promtool: str, tmp_path: Path) -> None:
    rule_file = tmp_path / "broken.rules.yaml"
    rule_file.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [
                {"record": "x:y:z", "expr": "sum by (model (rate(outrider_requests_total[5m]))"}
            ]}]}
        )
    )
    assert run_tool([promtool, "check", "rules", str(rule_file)]).returncode == 1


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_series_is_one_outrider_exports(path: Path) -> None:
    allowed = exported_series_names() | PROMETHEUS_SERIES
    for expr in _expressions(_load(path)):
        plain = _as_plain_promql(expr)
        named = set(_SELECTED.findall(plain)) | set(_OUTRIDER.findall(plain))
        assert named, f"no series in {expr!r}"
        unknown = named - allowed
        assert not unknown, f"{path.name}: {sorted(unknown)} in {expr!r}"


def test_overview_covers_every_area_the_issue_names() -> None:
    exprs = "\n".join(_expressions(_load(DEPLOY_DIR / "grafana" / "outrider-overview.json")))
    for series in (
        "outrider_requests_total",
        "outrider_request_duration_seconds_bucket",
        "outrider_drift_score",
        "outrider_drift_threshold",
        "outrider_ood_ratio",
        "outrider_probe_accuracy_ratio",
        "outrider_alert_state",
        "outrider_hook_actions_total",
        "outrider_tap_samples_total",
        "outrider_tap_disabled_connections_total",
    ):
        assert series in exprs, series
    assert "histogram_quantile(0.99" in exprs
    assert "variant" in exprs


def test_model_dashboard_has_model_and_version_variables() -> None:
    dashboard = _load(DEPLOY_DIR / "grafana" / "outrider-model.json")
    names = [variable["name"] for variable in dashboard["templating"]["list"]]
    assert names == ["datasource", "model", "version", "signal"]
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            assert 'model="$model"' in target["expr"], panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_is_importable_as_is(path: Path) -> None:
    dashboard = _load(path)
    assert dashboard["uid"] == path.stem
    assert "id" not in dashboard, "a fixed numeric id clashes on import; uid identifies it"
    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
