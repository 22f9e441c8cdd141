"""Grafana dashboards in deploy/grafana/: valid PromQL on exported metrics only, scoped by the
mixin variables, every panel explained, every link and variable resolving."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from deploy_contract import DEPLOY_DIR, exported_series_names, run_tool

DASHBOARDS = sorted((DEPLOY_DIR / "grafana").glob("*.json"))
# Series Prometheus makes itself that dashboards may read.
PROMETHEUS_SERIES = frozenset({"ALERTS", "up"})
# The monitoring-mixin convention: these scope every query, in this order, first.
SCOPE_VARIABLES = ["datasource", "cluster", "namespace", "instance"]
# Grafana's built-in variables (and $__all, the "All" value in a dashboard URL).
BUILT_IN = re.compile(
    r"__(rate_interval|interval|range|url_time_range|all|data|field|value|series)\b"
)
# Grafana's built-in range variables, replaced by a duration before promtool sees them.
_RANGE_VARIABLE = re.compile(r"\$__(rate_interval|interval|range)\b")
_VARIABLE = re.compile(r"\$\{?(\w+)(?:[.:][\w.]+)?\}?")
# A series name is an identifier followed by a matcher block or a range selector.
_SELECTED = re.compile(r"([a-zA-Z_:][\w:]*)\s*(?=\{|\[)")
_OUTRIDER = re.compile(r"(?<![:\w])outrider_\w+")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
_BY = re.compile(r"\bby \(([^)]*)\)")
_FIELD_LABEL = re.compile(r"\$\{__(?:field\.labels|data\.fields)\.(\w+)\}")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _recorded_series() -> frozenset[str]:
    names = set()
    for path in (DEPLOY_DIR / "prometheus").glob("*.yaml"):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return frozenset(names)


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _annotation_queries(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in dashboard["annotations"]["list"] if "expr" in a]


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [
        target["expr"]
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]
    exprs += [annotation["expr"] for annotation in _annotation_queries(dashboard)]
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


def _variable_names(dashboard: dict[str, Any]) -> list[str]:
    return [variable["name"] for variable in dashboard["templating"]["list"]]


def _links(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(panel, url) of every data link, in field defaults and overrides."""
    found = []
    for panel in _panels(dashboard):
        config = panel.get("fieldConfig", {})
        for link in config.get("defaults", {}).get("links", []):
            found.append((panel, link["url"]))
        for override in config.get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    found.extend((panel, link["url"]) for link in prop["value"])
    return found


def test_both_dashboards_exist() -> None:
    assert [path.name for path in DASHBOARDS] == ["outrider-model.json", "outrider-overview.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_expression_parses_with_promtool(
    path: Path, promtool: str, tmp_path: Path
) -> None:
    exprs = _expressions(_load(path))
    assert len(exprs) >= 25
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
def test_every_series_is_one_outrider_exports_or_records(path: Path) -> None:
    recorded = _recorded_series()
    allowed = exported_series_names() | PROMETHEUS_SERIES | recorded
    for expr in _expressions(_load(path)):
        plain = _as_plain_promql(expr)
        named = set(_SELECTED.findall(plain)) | set(_OUTRIDER.findall(plain))
        assert named, f"no series in {expr!r}"
        unknown = named - allowed
        assert not unknown, f"{path.name}: {sorted(unknown)} in {expr!r}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_outrider_selector_is_scoped_by_cluster_namespace_and_instance(path: Path) -> None:
    recorded = _recorded_series()
    for expr in _expressions(_load(path)):
        for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", expr):
            if name == "ALERTS" or name.startswith("slo:"):
                continue
            assert 'cluster=~"$cluster"' in matchers or "label_values" in expr, (name, expr)
            assert 'namespace=~"$namespace"' in matchers or name == "outrider_build_info", expr
            if name not in recorded:  # recorded SLIs are per model, not per replica
                assert 'instance=~"$instance"' in matchers or name == "outrider_build_info", expr


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
        "namespace_job_model:outrider_requests_failed:ratio_rate1h",
        "namespace_job_model:outrider_requests_slow:ratio_rate1h",
    ):
        assert series in exprs, series
    assert "histogram_quantile(0.99" in exprs
    assert "variant" in exprs


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_variables_follow_the_mixin_convention(path: Path) -> None:
    dashboard = _load(path)
    names = _variable_names(dashboard)
    assert names[: len(SCOPE_VARIABLES)] == SCOPE_VARIABLES
    by_name = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    for name in ("cluster", "namespace", "instance"):
        # "All" must match series that lack the label (outside Kubernetes, one cluster)
        assert by_name[name]["includeAll"] is True and by_name[name]["allValue"] == ".*"


def test_model_dashboard_has_model_version_and_signal_variables() -> None:
    dashboard = _load(DEPLOY_DIR / "grafana" / "outrider-model.json")
    assert _variable_names(dashboard) == [*SCOPE_VARIABLES, "model", "version", "signal"]
    unscoped = {panel["title"] for panel in _panels(dashboard) for target in
                panel.get("targets", []) if 'model="$model"' not in target["expr"]}
    # outrider_hook_actions_total has no model label; the panel says so.
    assert unscoped == {"Hook actions by instance"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_variable_used_is_defined(path: Path) -> None:
    dashboard = _load(path)
    defined = set(_variable_names(dashboard))
    texts = [*_expressions(dashboard), *(url for _, url in _links(dashboard))]
    texts += [json.dumps(panel.get("datasource", {})) for panel in _panels(dashboard)]
    for text in texts:
        for name in _VARIABLE.findall(text):
            assert name in defined or BUILT_IN.match(name), (path.name, name, text)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_panel_says_what_good_looks_like(path: Path) -> None:
    for panel in _panels(_load(path)):
        if panel["type"] == "row":
            continue
        description = panel.get("description", "")
        assert "Good:" in description, f"{path.name}: {panel['title']!r}"
        assert description.split("Good:")[1].strip(), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_link_opens_a_shipped_dashboard_with_variables_that_exist(path: Path) -> None:
    dashboards = {_load(p)["uid"]: set(_variable_names(_load(p))) for p in DASHBOARDS}
    links = _links(_load(path))
    assert len(links) >= (10 if path.stem == "outrider-overview" else 0)
    for panel, url in links:
        parts = urlsplit(url)
        uid = parts.path.split("/")[2]
        assert parts.path.startswith("/d/") and uid in dashboards, url
        for key, _ in parse_qsl(parts.query, keep_blank_values=True):
            if key.startswith("var-"):
                assert key[len("var-"):] in dashboards[uid], (panel["title"], key)
        for name in re.findall(r"\$\{(\w+):queryparam\}", url):
            assert name in dashboards[uid], (panel["title"], name)
        # labels the link reads from a series or table row are ones the query keeps
        kept = set()
        for target in panel["targets"]:
            for clause in _BY.findall(target["expr"]):
                kept |= {label.strip() for label in clause.split(",")}
            kept |= set(re.findall(r"namespace_job_model", target["expr"]) and
                        ["namespace", "job", "model"])
        for label in _FIELD_LABEL.findall(url):
            assert label in kept, (panel["title"], label, sorted(kept))


def test_model_alert_links_and_overview_links_carry_the_model_dashboards_variables() -> None:
    model_variables = set(_variable_names(_load(DEPLOY_DIR / "grafana" / "outrider-model.json")))
    for _, url in _links(_load(DEPLOY_DIR / "grafana" / "outrider-overview.json")):
        if "/d/outrider-model/" in url:
            named = {key[4:] for key, _ in parse_qsl(urlsplit(url).query) if key.startswith("var-")}
            named |= set(re.findall(r"\$\{(\w+):queryparam\}", url))
            assert named == model_variables, url


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_annotations_mark_hook_actions_versions_and_incidents(path: Path) -> None:
    names = {annotation["name"]: annotation for annotation in _annotation_queries(_load(path))}
    assert set(names) == {"Hook actions", "Model versions", "outrider versions",
                          "Incidents opened", "Alerts firing"}
    assert "outrider_hook_actions_total" in names["Hook actions"]["expr"]
    assert "offset 5m" in names["Model versions"]["expr"]
    assert "outrider_incidents_open" in names["Incidents opened"]["expr"]
    for annotation in names.values():
        assert annotation["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert annotation["titleFormat"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_panels_show_which_instance_is_failing(path: Path) -> None:
    per_instance = [
        panel["title"] for panel in _panels(_load(path))
        if panel.get("targets") and all(
            any("instance" in clause for clause in _BY.findall(target["expr"]))
            for target in panel["targets"])
    ]
    assert len(per_instance) >= 6, per_instance


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
