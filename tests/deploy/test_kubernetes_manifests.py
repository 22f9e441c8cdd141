"""Kustomize manifests and rollout-analysis examples in deploy/kubernetes/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_contract import (
    DEPLOY_DIR,
    exported_series_names,
    outrider_config_check,
    run_tool,
)

KUSTOMIZE_DIRS = sorted(
    path.parent for path in (DEPLOY_DIR / "kubernetes").rglob("kustomization.yaml")
)
# The base's one hook (outrider-config.yaml): a kubernetes-deployment rollback of "digits".
ROLLBACK_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["digits"],
     "verbs": ["get", "patch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
]
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# Argo ({{args.x}}) and Flagger ({{ target }}) placeholders, filled before promtool parses.
_TEMPLATE = re.compile(r"\{\{\s*(args\.[\w-]+|\w+)\s*\}\}")
_OUTRIDER = re.compile(r"\boutrider_\w+")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian: kubernetes-client)")
    result = run_tool([kubectl, "kustomize", str(directory)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_three_kustomizations_exist() -> None:
    assert [path.name for path in KUSTOMIZE_DIRS] == ["argo-rollouts", "base", "flagger"]


@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=lambda path: path.name)
def test_every_listed_resource_and_generated_file_exists(directory: Path) -> None:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (directory / resource).is_file(), f"{directory.name}: missing {resource}"
    for generator in kustomization.get("configMapGenerator", []):
        for entry in generator["files"]:
            assert (directory / entry.split("=")[-1]).is_file(), entry


@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=lambda path: path.name)
def test_kubectl_kustomize_builds(directory: Path) -> None:
    kinds = sorted(doc["kind"] for doc in _kustomize(directory))
    expected = {
        "base": ["ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount",
                 "ServiceMonitor"],
        "argo-rollouts": ["AnalysisTemplate"],
        "flagger": ["Canary", "MetricTemplate", "MetricTemplate", "MetricTemplate"],
    }[directory.name]
    assert kinds == expected


def test_base_pod_runs_outrider_beside_the_model_server_locked_down() -> None:
    docs = {doc["kind"]: doc for doc in _documents(DEPLOY_DIR / "kubernetes/base/deployment.yaml")}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "outrider"
    assert pod["securityContext"]["runAsNonRoot"] is True
    containers = {c["name"]: c for c in pod["containers"]}
    assert list(containers) == ["model-server", "outrider"]
    assert "--port=8000" in containers["model-server"]["args"]
    assert "--host=127.0.0.1" in containers["model-server"]["args"]
    outrider = containers["outrider"]
    assert outrider["args"] == ["serve", "--config", "/etc/outrider/config.yaml"]
    assert {p["name"]: p["containerPort"] for p in outrider["ports"]} == {
        "grpc": 8001, "admin": 8081,
    }
    for container in containers.values():
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert containers["model-server"]["securityContext"]["runAsNonRoot"] is True


def test_only_outrider_holds_the_service_account_token_and_the_admin_token() -> None:
    (deployment,) = _documents(DEPLOY_DIR / "kubernetes/base/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    service_account = next(doc for doc in _documents(DEPLOY_DIR / "kubernetes/base/rbac.yaml")
                           if doc["kind"] == "ServiceAccount")
    assert service_account["automountServiceAccountToken"] is False
    mounts = {c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
              for c in pod["containers"]}
    assert mounts["outrider"]["kube-api-access"] == TOKEN_PATH
    assert "kube-api-access" not in mounts["model-server"]
    assert "admin-token" not in mounts["model-server"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "serviceAccountToken" in volumes["kube-api-access"]["projected"]["sources"][0]


def test_every_object_validates_against_kubernetes_schemas() -> None:
    validate = pytest.importorskip("kubernetes_validate")
    checked = 0
    for doc in _kustomize(DEPLOY_DIR / "kubernetes" / "base"):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        validate.validate(doc, "1.30.0", strict=True)
        checked += 1
    assert checked == 6


def test_service_monitor_names_the_job_the_alert_rules_expect() -> None:
    (monitor,) = _documents(DEPLOY_DIR / "kubernetes/base/servicemonitor.yaml")
    (service,) = _documents(DEPLOY_DIR / "kubernetes/base/service.yaml")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "outrider"
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert service["metadata"]["labels"][key] == value
    assert monitor["spec"]["endpoints"][0]["port"] == "admin"


def test_inbound_token_is_read_from_the_secret_mounted_as_a_file() -> None:
    config = yaml.safe_load((DEPLOY_DIR / "kubernetes/base/outrider-config.yaml").read_text())
    assert config["admin"]["host"] == "0.0.0.0"
    (deployment,) = _documents(DEPLOY_DIR / "kubernetes/base/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (outrider,) = [c for c in pod["containers"] if c["name"] == "outrider"]
    assert all(e["name"] != "OUTRIDER_ADMIN_TOKEN" for e in outrider["env"])
    (mount,) = [m for m in outrider["volumeMounts"] if m["name"] == "admin-token"]
    assert "subPath" not in mount
    (volume,) = [v for v in pod["volumes"] if v["name"] == "admin-token"]
    assert volume["secret"]["secretName"] == "outrider-admin-token"
    (item,) = volume["secret"]["items"]
    assert config["hooks"]["inbound"]["token"] == {
        "file": f"{mount['mountPath']}/{item['path']}"}


def test_the_hook_the_role_allows_is_the_one_configured() -> None:
    config = yaml.safe_load((DEPLOY_DIR / "kubernetes/base/outrider-config.yaml").read_text())
    (hook,) = config["hooks"]["hooks"]
    assert hook["type"] == "kubernetes-deployment"
    assert ROLLBACK_RULES[0]["resourceNames"] == [hook["deployment"]]
    (deployment,) = _documents(DEPLOY_DIR / "kubernetes/base/deployment.yaml")
    assert deployment["metadata"]["name"] == hook["deployment"]


def test_outrider_config_passes_outrider_config_check() -> None:
    config = DEPLOY_DIR / "kubernetes/base/outrider-config.yaml"
    code, output = outrider_config_check([config])
    assert code == 0, output
    assert output == f"{config}: valid\n"


def _analysis_queries() -> list[str]:
    queries = []
    (template,) = _documents(DEPLOY_DIR / "kubernetes/argo-rollouts/analysis-template.yaml")
    for metric in template["spec"]["metrics"]:
        if "prometheus" in metric["provider"]:
            queries.append(metric["provider"]["prometheus"]["query"])
    for doc in _documents(DEPLOY_DIR / "kubernetes/flagger/metric-templates.yaml"):
        queries.append(doc["spec"]["query"])
    return queries


def test_analysis_queries_parse_and_read_only_exported_metrics(
    promtool: str, tmp_path: Path
) -> None:
    queries = [_TEMPLATE.sub(lambda m: "5m" if m[1] == "interval" else "x", q)
               for q in _analysis_queries()]
    assert len(queries) == 6
    for query in queries:
        assert set(_OUTRIDER.findall(query)) <= exported_series_names(), query
    rules = {"groups": [{"name": "analysis", "rules": [
        {"record": f"analysis:query_{i}:check", "expr": q} for i, q in enumerate(queries)
    ]}]}
    rule_file = tmp_path / "analysis.rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules))
    result = run_tool([promtool, "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_flagger_webhooks_call_outriders_endpoints() -> None:
    (canary,) = [doc for doc in _documents(DEPLOY_DIR / "kubernetes/flagger/canary.yaml")]
    hooks = {hook["type"]: hook["url"] for hook in canary["spec"]["analysis"]["webhooks"]}
    assert hooks["rollback"].endswith(":8081/flagger/rollback")
    assert hooks["confirm-promotion"].endswith(":8081/flagger/confirm-promotion")
    assert canary["spec"]["service"]["portDiscovery"] is True
    for hook in canary["spec"]["analysis"]["webhooks"]:
        assert hook["metadata"] == {"model": "digits"}
    templates = {m["templateRef"]["name"] for m in canary["spec"]["analysis"]["metrics"]}
    defined = {doc["metadata"]["name"]
               for doc in _documents(DEPLOY_DIR / "kubernetes/flagger/metric-templates.yaml")}
    assert templates == defined


def test_argo_web_metric_calls_outriders_endpoint() -> None:
    (template,) = _documents(DEPLOY_DIR / "kubernetes/argo-rollouts/analysis-template.yaml")
    (web,) = [m["provider"]["web"] for m in template["spec"]["metrics"] if "web" in m["provider"]]
    assert web["url"].startswith("http://{{args.outrider-service}}:8081/argo/metric?model=")
    assert web["jsonPath"] == "{$.ok}"
