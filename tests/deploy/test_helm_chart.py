"""The Helm chart in helm/outrider/, checked without a helm binary.

Helm validates values.schema.json against the user's values merged over values.yaml, so
the tests merge the same way before running check-jsonschema. Templates are Go templates:
they are checked for the values they read and the files they ship, not rendered.
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
    outrider_config_check,
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
    for name in ("alerts.yaml", "recording.yaml")
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
        "values-kserve.yaml", "values-mlserver.yaml", "values-triton.yaml",
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
        ({"mode": "daemonset"}, "'daemonset' is not one of ['sidecar', 'standalone']"),
        ({"listen": {"port": 70000}}, "70000 is greater than the maximum of 65535"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "True was expected"),
        ({"serviceMonitr": {"enabled": True}}, "'serviceMonitr' was unexpected"),
        ({"rbac": {"rules": [{"apiGroups": ["apps"], "resources": ["deployments"],
                              "verbs": ["escalate"]}]}}, "'escalate' is not one of"),
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
    assert read == {
        "files/prometheus/recording.yaml",
        "files/prometheus/alerts.yaml",
        "files/grafana/*.json",
    }
    assert len(list(CHART_DIR.glob("files/grafana/*.json"))) == 2


def test_persistence_makes_the_deployment_recreate_its_pod() -> None:
    text = (CHART_DIR / "templates" / "deployment.yaml").read_text()
    guarded = re.search(
        r"\{\{- if \.Values\.persistence\.enabled \}\}(.*?)\{\{- end \}\}", text, re.S
    )
    assert guarded is not None and "type: Recreate" in guarded.group(1)


def test_dashboards_carry_the_grafana_sidecar_label() -> None:
    assert _values()["grafanaDashboards"]["labels"] == {"grafana_dashboard": "1"}


def test_default_security_context_is_non_root_with_read_only_root() -> None:
    context = _values()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsUser"] == 10001
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_rbac_matches_the_kustomize_role() -> None:
    role = next(
        doc for doc in yaml.safe_load_all((DEPLOY_DIR / "kubernetes/base/rbac.yaml").read_text())
        if doc["kind"] == "Role"
    )
    assert _values()["rbac"]["rules"] == role["rules"]


def test_chart_version_tracks_the_package() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == pyproject["project"]["version"]


def _rendered_config(values: dict[str, Any]) -> dict[str, Any]:
    """What the `outrider.config` helper in _helpers.tpl renders for these values."""
    sidecar = values["mode"] == "sidecar"
    from_chart = {
        "state_dir": values["stateDir"],
        "admin": {"host": "0.0.0.0", "port": values["admin"]["port"]},
        "dataplane": {
            "listen_host": "0.0.0.0",
            "listen_port": values["listen"]["port"],
            "upstream": {
                "host": "127.0.0.1" if sidecar else values["upstream"]["host"],
                "port": values["upstream"]["port"],
            },
        },
    }
    if values["admin"]["tokenSecret"]["name"]:
        from_chart["hooks"] = {"inbound": {"token": {"env": "OUTRIDER_ADMIN_TOKEN"}}}
    return coalesce(values["config"], from_chart)


def test_helper_sets_the_keys_the_python_mirror_sets() -> None:
    helper = (CHART_DIR / "templates/_helpers.tpl").read_text()
    for key in ('"state_dir"', '"admin"', '"host" "0.0.0.0"', '"listen_host"',
                '"listen_port"', '"upstream"', "mustMergeOverwrite (deepCopy .Values.config)",
                '(dict "inbound" (dict "token" (dict "env" "OUTRIDER_ADMIN_TOKEN")))'):
        assert key in helper


def test_rendered_outrider_config_passes_config_check(tmp_path: Path) -> None:
    configs = []
    for values_file in [CHART_DIR / "values.yaml", *EXAMPLES]:
        values = _values()
        if values_file.name != "values.yaml":
            values = coalesce(values, yaml.safe_load(values_file.read_text()))
        config = tmp_path / f"config-{values_file.stem}.yaml"
        config.write_text(yaml.safe_dump(_rendered_config(values)))
        configs.append(config)
    code, output = outrider_config_check(configs)
    assert code == 0, output
    assert output.count(": valid\n") == 4, output


def test_readme_install_examples_name_existing_files() -> None:
    readme = (CHART_DIR / "README.md").read_text()
    for server in ("Triton", "KServe", "MLServer"):
        assert f"### {server}" in readme
    for example in EXAMPLES:
        assert f"-f ./helm/outrider/examples/{example.name}" in readme


def test_grafana_dashboards_are_valid_json_in_the_chart() -> None:
    for path in CHART_DIR.glob("files/grafana/*.json"):
        assert json.loads(path.read_text())["uid"] == path.stem
