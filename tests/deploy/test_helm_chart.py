"""The Helm chart in helm/outrider/: its values schema, the files it ships and its templates'
source. What the templates render is checked in test_helm_rendering.py.

Helm validates values.schema.json against the user's values merged over values.yaml, so
the tests merge the same way before running check-jsonschema.
"""

from __future__ import annotations

import copy
import filecmp
import json
import re
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from deploy_contract import (
    CHART_DIR,
    DEPLOY_DIR,
    REPO_ROOT,
    run_tool,
    tool_path,
)

SCHEMA = CHART_DIR / "values.schema.json"
EXAMPLES = sorted((CHART_DIR / "examples").glob("*.yaml"))
TEMPLATES = sorted((CHART_DIR / "templates").iterdir())
# Chart copies of the files in deploy/ that .Files.Get reads (Helm cannot read outside the
# chart directory). Copies rather than symlinks so a packaged chart is self-contained.
SHIPPED_COPIES = {
    CHART_DIR / f"files/prometheus/{name}": DEPLOY_DIR / f"prometheus/{name}"
    for name in ("alerts.yaml", "recording.yaml", "slo.yaml")
} | {
    CHART_DIR / f"files/grafana/{name}": DEPLOY_DIR / f"grafana/{name}"
    for name in ("outrider-overview.json", "outrider-model.json")
}
_VALUES_PATH = re.compile(r"\.Values((?:\.\w+)+)")
_FILES_GET = re.compile(r'\.Files\.(?:Get|Glob) "([^"]+)"')
_BLOCK_OPEN = re.compile(r"\{\{-?\s*(if|range|with|define)\b")
_BLOCK_END = re.compile(r"\{\{-?\s*end\s*-?\}\}")


def _values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    return loaded


def coalesce(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge user values over chart defaults as Helm does: maps recurse, the rest replaces."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_jsonschema(paths: list[Path]) -> tuple[int, str]:
    tool = tool_path("check-jsonschema")
    result = run_tool([tool, "--schemafile", str(SCHEMA), *map(str, paths)])
    return result.returncode, result.stdout + result.stderr


def test_schema_is_itself_a_valid_json_schema() -> None:
    tool = tool_path("check-jsonschema")
    result = run_tool([tool, "--check-metaschema", str(SCHEMA)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_and_examples_merged_over_them_match_the_schema(tmp_path: Path) -> None:
    assert [path.name for path in EXAMPLES] == [
        "values-cluster-monitoring.yaml", "values-kserve.yaml", "values-mlserver.yaml",
        "values-triton.yaml",
    ]
    checked = [CHART_DIR / "values.yaml"]
    for example in EXAMPLES:
        merged = coalesce(_values(), yaml.safe_load(example.read_text()))
        merged_file = tmp_path / example.name
        merged_file.write_text(yaml.safe_dump(merged))
        checked.append(merged_file)
    code, output = _check_jsonschema(checked)
    assert code == 0, output
    assert "ok -- validation done" in output


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"listen": {"port": 70000}}, "70000 is greater than the maximum of 65535"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "True was expected"),
        ({"serviceMonitr": {"enabled": True}}, "'serviceMonitr' was unexpected"),
        ({"rbac": {"extraRules": [{"apiGroups": ["apps"], "resources": ["deployments"],
                                   "verbs": ["escalate"]}]}}, "'escalate' is not one of"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "True was expected"),
        # the latency objective's threshold must be a bucket bound, spelled as its le label
        ({"slo": {"latency": {"thresholdSeconds": "0.3"}}}, "'0.3' is not one of"),
        ({"slo": {"errors": {"objective": 1}}}, "1 is greater than or equal to the maximum of 1"),
        ({"prometheusRule": {"grafanaURL": "https://grafana.example.com/"}}, "does not match"),
        ({"prometheusRule": {"runbookURLPattern": "https://runbooks.example.com/"}},
         "does not match '%s'"),
        ({"mode": "daemonset", "persistence": {"enabled": False}},
         "'daemonset' is not one of ['sidecar', 'standalone', 'none']"),
        # one ReadWriteOnce claim cannot hold two pods' state
        ({"persistence": {"enabled": True}, "replicaCount": 2},
         "2 is greater than the maximum of 1"),
    ],
)
def test_schema_rejects_bad_values(override: dict[str, Any], complaint: str) -> None:
    # The library check-jsonschema runs on, in-process: one CLI start per case is slow.
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    messages = [error.message for error in validator.iter_errors(coalesce(_values(), override))]
    assert len(messages) == 1, messages
    assert complaint in messages[0]


@pytest.mark.parametrize("copy_path", sorted(SHIPPED_COPIES), ids=lambda path: path.name)
def test_chart_files_are_identical_to_deploy(copy_path: Path) -> None:
    source = SHIPPED_COPIES[copy_path]
    assert filecmp.cmp(copy_path, source, shallow=False), (
        f"{copy_path.relative_to(REPO_ROOT)} differs from {source.relative_to(REPO_ROOT)}; "
        f"run: cp {source.relative_to(REPO_ROOT)} {copy_path.relative_to(REPO_ROOT)}"
    )


def test_chart_ships_no_other_files_from_deploy() -> None:
    shipped = {path for path in (CHART_DIR / "files").rglob("*") if path.is_file()}
    assert shipped == set(SHIPPED_COPIES)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_templates_read_only_values_that_exist(template: Path) -> None:
    values = _values()
    for match in _VALUES_PATH.finditer(template.read_text()):
        node: Any = values
        for key in match[1].strip(".").split("."):
            assert isinstance(node, dict) and key in node, (
                f"{template.name}: .Values{match[1]} is not in values.yaml"
            )
            node = node[key]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_template_blocks_are_balanced(template: Path) -> None:
    text = template.read_text()
    assert text.count("{{") == text.count("}}")
    assert len(_BLOCK_OPEN.findall(text)) == len(_BLOCK_END.findall(text))


def test_templates_read_files_that_ship() -> None:
    read = set()
    for template in TEMPLATES:
        read |= set(_FILES_GET.findall(template.read_text()))
    assert read == {"files/grafana/*.json"}
    rules_template = (CHART_DIR / "templates" / "prometheusrule.yaml").read_text()
    for name in ("recording.yaml", "slo.yaml", "alerts.yaml"):
        assert f'"files/prometheus/{name}"' in rules_template
    assert len(list(CHART_DIR.glob("files/grafana/*.json"))) == 2


def test_dashboards_carry_the_grafana_sidecar_label() -> None:
    assert _values()["grafanaDashboards"]["labels"] == {"grafana_dashboard": "1"}


def test_default_security_context_is_non_root_with_read_only_root() -> None:
    context = _values()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsUser"] == 10001
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_chart_version_tracks_the_package() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == pyproject["project"]["version"]


def test_readme_install_examples_name_existing_files() -> None:
    readme = (CHART_DIR / "README.md").read_text()
    for server in ("Triton", "KServe", "MLServer"):
        assert f"### {server}" in readme
    for example in EXAMPLES:
        assert f"-f ./helm/outrider/examples/{example.name}" in readme


def test_grafana_dashboards_are_valid_json_in_the_chart() -> None:
    for path in CHART_DIR.glob("files/grafana/*.json"):
        assert json.loads(path.read_text())["uid"] == path.stem


def test_latency_threshold_choices_are_the_histograms_le_labels() -> None:
    """slo.latency.thresholdSeconds must match an `le` label exactly, or no bucket is read."""
    from prometheus_client.utils import floatToGoString

    from service.dataplane.metrics import DURATION_BUCKETS

    schema = json.loads(SCHEMA.read_text())
    choices = schema["properties"]["slo"]["properties"]["latency"]["properties"][
        "thresholdSeconds"]["enum"]
    assert choices == [floatToGoString(bound) for bound in DURATION_BUCKETS]
    assert _values()["slo"]["latency"]["thresholdSeconds"] in choices
