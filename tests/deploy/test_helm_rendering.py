"""The Helm chart rendered by Helm itself (its Go SDK, through helm-python-sdk), then checked
as Kubernetes would see it: object schemas (kubernetes-validate), outrider's own config
check, promtool on the rules it installs, and what each value switches on or off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_contract import CHART_DIR, DEPLOY_DIR, outrider_config_check, run_tool

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (the dev extra) renders the chart"
)

EXAMPLES = sorted((CHART_DIR / "examples").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"  # inside the chart's kubeVersion (>= 1.25)
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
HOOKS = [
    {"name": "rollback-deployment", "type": "kubernetes-deployment", "namespace": "models",
     "deployment": "digits", "match": {"severities": ["critical"]}},
    {"name": "rollback-canary", "type": "argo-rollouts", "namespace": "canaries",
     "rollout": "digits"},
    {"name": "rollback-isvc", "type": "kserve", "namespace": "models",
     "inference_service": "iris"},
    # a second hook on the same Deployment adds no rule
    {"name": "rollback-deployment-again", "type": "kubernetes-deployment",
     "namespace": "models", "deployment": "digits"},
    # a hook that talks to another API server with its own token needs no RBAC here
    {"name": "remote", "type": "kserve", "namespace": "elsewhere", "inference_service": "x",
     "connection": {"api_url": "https://other-cluster:6443",
                    "token": {"file": "/etc/remote/token"}}},
    {"name": "notify", "type": "webhook", "url": "https://hooks.example.com/outrider"},
]


def render(values: dict[str, Any] | None = None, *, name: str = "digits",
           namespace: str = "models") -> list[dict[str, Any]]:
    """Every object `helm template` would print for these values (schema-checked by Helm)."""
    with helm.Chart.load(str(CHART_DIR)) as chart:
        manifests = chart.render(values or {}, name=name, namespace=namespace)
    return [doc for path, text in sorted(manifests.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(obj["kind"] for obj in objects)


def containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    return {container["name"]: container for container in pod["containers"]}


def example_values(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_helm_lint_finds_nothing_above_info() -> None:
    result = helm.lint(str(CHART_DIR))
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("example", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_every_object_validates_against_kubernetes_schemas(example: Path | None) -> None:
    validate = pytest.importorskip("kubernetes_validate")
    objects = render(example_values(example) if example else None)
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: no schema offline; the rules inside are checked with promtool
        validate.validate(obj, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= (1 if example and example.name == "values-cluster-monitoring.yaml" else 4)


def test_schema_validation_can_fail() -> None:
    validate = pytest.importorskip("kubernetes_validate")
    deployment = one(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(validate.ValidationError):
        validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("example", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_rendered_outrider_config_passes_config_check(
    example: Path | None, tmp_path: Path
) -> None:
    objects = render(example_values(example) if example else None)
    configs = [obj for obj in objects if obj["kind"] == "ConfigMap"
               and "config.yaml" in obj.get("data", {})]
    if example is not None and example.name == "values-cluster-monitoring.yaml":
        assert configs == []
        return
    (config,) = configs
    path = tmp_path / "config.yaml"
    path.write_text(config["data"]["config.yaml"])
    code, output = outrider_config_check([path])
    assert code == 0, output


# --- #15 item 8: RBAC and the ServiceAccount token ----------------------------------------

def test_no_kubernetes_hook_means_no_role_and_no_token_anywhere() -> None:
    objects = render({"config": {"hooks": {"hooks": [HOOKS[-1]]}}})
    assert "Role" not in kinds(objects) and "RoleBinding" not in kinds(objects)
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert all("projected" not in volume for volume in pod["volumes"])
    for container in pod["containers"]:
        assert all(m["mountPath"] != TOKEN_PATH for m in container.get("volumeMounts", []))


def test_roles_name_exactly_the_objects_the_hooks_act_on() -> None:
    objects = render({"config": {"hooks": {"hooks": HOOKS}},
                      "rbac": {"extraRules": [{"apiGroups": [""], "resources": ["configmaps"],
                                               "verbs": ["get"]}]}})
    roles = {obj["metadata"]["namespace"]: obj["rules"] for obj in objects if obj["kind"] == "Role"}
    assert roles == {
        "models": [
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["digits"],
             "verbs": ["get", "patch"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
            {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
             "resourceNames": ["iris"], "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        ],
        "canaries": [
            {"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "resourceNames": ["digits"],
             "verbs": ["get"]},
            {"apiGroups": ["argoproj.io"], "resources": ["rollouts/status"],
             "resourceNames": ["digits"], "verbs": ["patch"]},
        ],
    }
    bindings = [obj for obj in objects if obj["kind"] == "RoleBinding"]
    assert {b["metadata"]["namespace"] for b in bindings} == {"models", "canaries"}
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "digits-outrider", "namespace": "models"}]
    assert not [obj for obj in objects if obj["kind"] == "ClusterRole"]


def test_rbac_create_false_creates_no_role() -> None:
    objects = render({"config": {"hooks": {"hooks": HOOKS}}, "rbac": {"create": False}})
    assert "Role" not in kinds(objects)


def test_the_token_is_projected_into_outriders_container_alone() -> None:
    objects = render({"config": {"hooks": {"hooks": HOOKS[:1]}}})
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (volume,) = [v for v in pod["volumes"] if v["name"] == "kube-api-access"]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["expirationSeconds"] <= 3607
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    mounted = {name: [m for m in c.get("volumeMounts", []) if m["name"] == "kube-api-access"]
               for name, c in containers(objects).items()}
    assert mounted == {"model-server": [], "outrider": [
        {"name": "kube-api-access", "mountPath": TOKEN_PATH, "readOnly": True}]}


def test_chart_role_for_the_kustomize_hook_equals_the_kustomize_role() -> None:
    config = yaml.safe_load((DEPLOY_DIR / "kubernetes/base/outrider-config.yaml").read_text())
    chart_role = one(render({"config": {"hooks": {"hooks": config["hooks"]["hooks"]}}}), "Role")
    kustomize_role = next(
        doc for doc in yaml.safe_load_all((DEPLOY_DIR / "kubernetes/base/rbac.yaml").read_text())
        if doc["kind"] == "Role")
    assert chart_role["rules"] == kustomize_role["rules"]


def test_pods_run_as_non_root_and_the_model_server_is_locked_down_by_default() -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    model_server = containers(objects)["model-server"]["securityContext"]
    assert model_server == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}}


# --- the admin token, as a file -----------------------------------------------------------

def test_admin_token_is_a_file_in_outrider_only_and_the_config_reads_it() -> None:
    objects = render({"admin": {"tokenSecret": {"name": "outrider-admin-token", "key": "tok"}}})
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "admin-token"]
    assert volume["secret"]["secretName"] == "outrider-admin-token"
    assert volume["secret"]["items"] == [{"key": "tok", "path": "token"}]
    by_name = containers(objects)
    for container in by_name.values():
        assert all(e["name"] != "OUTRIDER_ADMIN_TOKEN" for e in container.get("env", []))
    assert [m for m in by_name["model-server"].get("volumeMounts", [])
            if m["name"] == "admin-token"] == []
    (mount,) = [m for m in by_name["outrider"]["volumeMounts"] if m["name"] == "admin-token"]
    assert "subPath" not in mount  # a subPath mount never sees the rotated Secret
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert config["hooks"]["inbound"]["token"] == {"file": f"{mount['mountPath']}/token"}
    # the pod template does not change with the Secret: rotating it restarts nothing
    again = render({"admin": {"tokenSecret": {"name": "outrider-admin-token", "key": "tok"}}})
    assert one(again, "Deployment") == one(objects, "Deployment")


# --- NetworkPolicy --------------------------------------------------------------------------

def test_network_policy_is_off_by_default() -> None:
    assert "NetworkPolicy" not in kinds(render())


def test_network_policy_opens_the_relay_and_the_admin_port_to_the_configured_peers() -> None:
    monitoring = {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}
    clients = {"namespaceSelector": {"matchLabels": {"team": "fraud"}}}
    policy = one(render({"networkPolicy": {
        "enabled": True, "relayFrom": [clients], "adminFrom": [monitoring],
        "extraIngress": [{"ports": [{"port": 8002, "protocol": "TCP"}], "from": [monitoring]}],
    }}), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "digits"
    assert spec["ingress"] == [
        {"ports": [{"port": "grpc", "protocol": "TCP"}], "from": [clients]},
        {"ports": [{"port": "admin", "protocol": "TCP"}], "from": [monitoring]},
        {"ports": [{"port": 8002, "protocol": "TCP"}], "from": [monitoring]},
    ]
    defaults = one(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")["spec"]
    assert defaults["ingress"][0] == {"ports": [{"port": "grpc", "protocol": "TCP"}]}
    assert defaults["ingress"][1]["from"] == [{"podSelector": {}}]


def test_network_policy_egress_allows_dns_the_upstream_and_the_api_only_when_needed() -> None:
    api = [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    model_servers = [{"podSelector": {"matchLabels": {"app": "iris-predictor"}}}]
    egress = {"enabled": True, "upstreamTo": model_servers, "kubernetesAPI": {"to": api}}

    def rules(values: dict[str, Any]) -> list[dict[str, Any]]:
        spec = one(render(values), "NetworkPolicy")["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        found: list[dict[str, Any]] = spec["egress"]
        return found

    plain = rules({"networkPolicy": {"enabled": True, "egress": egress}})
    assert [rule["ports"][0]["port"] for rule in plain] == [53]  # sidecar, no Kubernetes hook
    standalone = rules({"mode": "standalone", "upstream": {"host": "iris", "port": 9000},
                        "config": {"hooks": {"hooks": HOOKS[:1]}},
                        "networkPolicy": {"enabled": True, "egress": egress}})
    assert [(rule["to"], [p["port"] for p in rule["ports"]]) for rule in standalone[1:]] == [
        (model_servers, [9000]), (api, [443, 6443])]


# --- the cluster-wide objects -------------------------------------------------------------

def test_cluster_wide_objects_are_named_the_same_in_every_release() -> None:
    values = {"prometheusRule": {"enabled": True}, "grafanaDashboards": {"enabled": True}}
    first = render(values, name="digits", namespace="models")
    second = render(values, name="fraud", namespace="fraud")

    def shared(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((obj["kind"], obj["metadata"]["name"]) for obj in objects
                      if obj["kind"] == "PrometheusRule" or "grafana_dashboard"
                      in obj["metadata"].get("labels", {}))

    assert shared(first) == shared(second) == [
        ("ConfigMap", "outrider-dashboard-model"), ("ConfigMap", "outrider-dashboard-overview"),
        ("PrometheusRule", "outrider")]
    uids = {yaml.safe_load(next(iter(obj["data"].values())))["uid"]
            for obj in first if obj["kind"] == "ConfigMap" and "grafana_dashboard"
            in obj["metadata"]["labels"]}
    assert uids == {"outrider-overview", "outrider-model"}


def test_mode_none_installs_only_the_cluster_wide_objects() -> None:
    objects = render(example_values(CHART_DIR / "examples/values-cluster-monitoring.yaml"))
    assert kinds(objects) == ["ConfigMap", "ConfigMap", "PrometheusRule"]
    assert kinds(render({"mode": "none"})) == []


def test_examples_leave_the_cluster_wide_objects_to_one_release() -> None:
    for example in EXAMPLES:
        objects = render(example_values(example))
        wide = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
        assert bool(wide) == (example.name == "values-cluster-monitoring.yaml"), example.name


def _rule_groups(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(objects, "PrometheusRule")["spec"]["groups"]
    return groups


def _write_rule_files(groups: list[dict[str, Any]], target: Path) -> None:
    """The rendered groups back into files named as in deploy/prometheus/."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for name in ("recording.yaml", "slo.yaml", "alerts.yaml"):
        names = {g["name"] for g in yaml.safe_load((DEPLOY_DIR / "prometheus" / name).read_text())[
            "groups"]}
        by_file[name] = [g for g in groups if g["name"] in names]
    assert sum(len(v) for v in by_file.values()) == len(groups)
    for name, file_groups in by_file.items():
        (target / name).write_text(yaml.safe_dump({"groups": file_groups}, sort_keys=False))


def test_rendered_rules_with_default_values_are_the_promtool_tested_files() -> None:
    """With default values the chart changes nothing: deploy/prometheus/tests cover it."""
    groups = _rule_groups(render({"prometheusRule": {"enabled": True}}))
    names = ("recording.yaml", "slo.yaml", "alerts.yaml")
    files = [DEPLOY_DIR / "prometheus" / name for name in names]
    shipped = [group for path in files for group in yaml.safe_load(path.read_text())["groups"]]
    assert groups == shipped


def test_rule_values_set_runbooks_dashboards_rollback_hooks_and_objectives(
    promtool: str, tmp_path: Path
) -> None:
    groups = _rule_groups(render({
        "prometheusRule": {
            "enabled": True,
            "runbookURLPattern": "https://runbooks.example.com/outrider/%s",
            "grafanaURL": "https://grafana.internal:3000/grafana",
            "rollbackHooks": "undo-.*|abort-canary",
        },
        "slo": {"errors": {"objective": 0.9995},
                "latency": {"objective": 0.95, "thresholdSeconds": "1.0"}},
    }))
    rules = [rule for group in groups for rule in group["rules"]]
    alerts = [rule for rule in rules if "alert" in rule]
    assert len(alerts) == 14
    for rule in alerts:
        annotations = rule["annotations"]
        expected_runbook = f"https://runbooks.example.com/outrider/{rule['alert']}"
        assert annotations["runbook_url"] == expected_runbook
        assert annotations["dashboard_url"].startswith("https://grafana.internal:3000/grafana/d/")
        assert "grafana.example.com" not in annotations["dashboard_url"]
    (rollback,) = [rule for rule in alerts if rule["alert"] == "OutriderAutomaticRollback"]
    assert 'hook=~"undo-.*|abort-canary"' in rollback["expr"]
    recorded = {(rule["record"], rule.get("labels", {}).get("slo")): rule["expr"]
                for rule in rules if rule.get("record", "").startswith("slo:")}
    assert recorded == {
        ("slo:outrider_objective:ratio", "errors"): "vector(0.9995)",
        ("slo:outrider_objective:ratio", "latency"): "vector(0.95)",
        ("slo:outrider_latency_threshold:seconds", None):
            'label_replace(vector(1.0), "le", "1.0", "", "")',
    }
    _write_rule_files(groups, tmp_path)
    files = [str(tmp_path / name) for name in ("recording.yaml", "slo.yaml", "alerts.yaml")]
    result = run_tool([promtool, "check", "rules", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_only_or_recording_only() -> None:
    alerts_only = _rule_groups(render({"prometheusRule": {"enabled": True, "recording": False}}))
    assert {g["name"] for g in alerts_only} == {
        "outrider.model", "outrider.actions", "outrider.slo", "outrider.health"}
    recording_only = _rule_groups(render({"prometheusRule": {"enabled": True, "alerts": False}}))
    assert {g["name"] for g in recording_only} == {"outrider.recording", "outrider.slo.recording"}


# --- persistence ---------------------------------------------------------------------------

def test_persistence_keeps_its_claim_and_recreates_the_pod() -> None:
    objects = render({"persistence": {"enabled": True}})
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (state,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"]
                if v["name"] == "state"]
    assert state == {"name": "state",
                     "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    dropped = one(render({"persistence": {"enabled": True, "keep": False}}),
                  "PersistentVolumeClaim")
    assert "annotations" not in dropped["metadata"]
    assert "PersistentVolumeClaim" not in kinds(render())
