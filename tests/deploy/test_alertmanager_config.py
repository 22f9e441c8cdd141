"""The Alertmanager examples in deploy/alertmanager/: valid, routing, summarising and
inhibiting as documented, checked with amtool and a real Alertmanager."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_contract import DEPLOY_DIR, run_tool

CONFIG = DEPLOY_DIR / "alertmanager" / "alertmanager.yml"
TEMPLATES = DEPLOY_DIR / "alertmanager" / "outrider.tmpl"
OPERATOR_CONFIG = DEPLOY_DIR / "alertmanager" / "alertmanagerconfig.yaml"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

ROUTING_CASES = [
    (["alertname=OutriderDriftDetected", "severity=critical", "category=model", "model=digits"],
     "outrider,pager"),
    (["alertname=OutriderDriftDetected", "severity=critical", "category=model",
      "model=fraud-scoring"], "outrider,fraud-team-pager"),
    (["alertname=OutriderProbeRegression", "severity=critical", "category=model",
      "model=digits"], "outrider,pager"),
    # warnings reach outrider's receiver too, so their incidents are recorded
    (["alertname=OutriderOODRatioHigh", "severity=warning", "category=model", "model=digits"],
     "outrider,tickets"),
    # outrider's own health never reaches outrider's receiver (no hook acts on it)
    (["alertname=OutriderHookActionFailed", "severity=critical", "category=outrider"], "pager"),
    (["alertname=OutriderUpstreamErrors", "severity=critical", "category=outrider"], "pager"),
    (["alertname=OutriderErrorBudgetBurn", "severity=critical", "category=outrider",
      "model=fraud-scoring"], "fraud-team-pager"),
    (["alertname=OutriderTapDropRatioHigh", "severity=warning", "category=outrider"], "tickets"),
    (["alertname=OutriderAutomaticRollback", "severity=info", "category=outrider"], "tickets"),
    (["alertname=Unrelated"], "tickets"),
]


def _routes_test(
    config: Path, labels: list[str], receivers: str
) -> subprocess.CompletedProcess[str]:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed (Debian: prometheus-alertmanager)")
    return run_tool([amtool, "config", "routes", "test", f"--config.file={config}",
                     f"--verify.receivers={receivers}", *labels])


def test_config_passes_amtool_check(amtool: str) -> None:
    result = run_tool([amtool, "check-config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    for part in ("4 receivers", "3 inhibit rules", "1 templates"):
        assert part in result.stdout


@pytest.mark.parametrize(("labels", "receivers"), ROUTING_CASES)
def test_routing(labels: list[str], receivers: str) -> None:
    result = _routes_test(CONFIG, labels, receivers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_routing_check_can_fail() -> None:
    result = _routes_test(CONFIG, ["severity=critical", "category=model"], "pager")
    assert result.returncode != 0


def test_outrider_receiver_posts_to_the_admin_endpoint_with_resolved() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    (receiver,) = [r for r in config["receivers"] if r["name"] == "outrider"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"] == "http://127.0.0.1:8081/alertmanager"
    assert webhook["send_resolved"] is True


def test_pages_take_their_summary_from_the_template_never_from_common_annotations() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    pages = [page for receiver in config["receivers"]
             for page in receiver.get("pagerduty_configs", [])]
    assert len(pages) == 2
    for page in pages:
        assert page["description"] == '{{ template "outrider.summary" . }}'
    assert ".CommonAnnotations" not in CONFIG.read_text().split("receivers:")[1]


def test_inhibition_equal_labels_are_ones_every_matched_alert_carries() -> None:
    """job and instance are on every scraped series; model on every model and SLO alert."""
    config = yaml.safe_load(CONFIG.read_text())
    for rule in config["inhibit_rules"]:
        assert set(rule["equal"]) <= {"alertname", "job", "instance", "namespace", "model"}
        assert "job" in rule["equal"], rule
    assert {tuple(rule["equal"]) for rule in config["inhibit_rules"]} == {
        ("job", "instance", "model"),
        ("alertname", "job", "namespace", "model"),
        ("job", "instance"),
    }


# --- the summary template, rendered by amtool --------------------------------------------

def _alert(status: str, labels: dict[str, str], **annotations: str) -> dict[str, Any]:
    return {"status": status, "labels": labels, "annotations": annotations,
            "startsAt": "2025-01-01T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": "0"}


def _group(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Alertmanager's notification data for one group, as a receiver's template sees it."""
    label_sets = [alert["labels"] for alert in alerts]
    annotation_sets = [alert["annotations"] for alert in alerts]
    common_labels = {k: v for k, v in label_sets[0].items()
                     if all(s.get(k) == v for s in label_sets)}
    common_annotations = {k: v for k, v in annotation_sets[0].items()
                          if all(s.get(k) == v for s in annotation_sets)}
    firing = any(alert["status"] == "firing" for alert in alerts)
    return {
        "receiver": "pager", "status": "firing" if firing else "resolved", "alerts": alerts,
        "groupLabels": {k: v for k, v in common_labels.items()
                        if k in ("alertname", "namespace", "model")},
        "commonLabels": common_labels, "commonAnnotations": common_annotations,
        "externalURL": "http://alertmanager:9093",
    }


def _render(amtool: str, tmp_path: Path, data: dict[str, Any], template: str) -> str:
    data_file = tmp_path / "group.json"
    data_file.write_text(json.dumps(data))
    result = run_tool([amtool, "template", "render", f"--template.glob={TEMPLATES}",
                       f"--template.text={template}", f"--template.data={data_file}"])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _drift(pod: str, instance: str, signal: str) -> dict[str, Any]:
    return _alert(
        "firing",
        {"alertname": "OutriderDriftDetected", "severity": "critical", "category": "model",
         "namespace": "models", "pod": pod, "job": "outrider", "instance": instance,
         "model": "digits", "version": "2", "signal": signal, "detector": "mmd"},
        summary=f"Input drift on digits 2 ({signal}) on {pod}",
        description=f"Detector mmd has flagged drift on signal {signal} ... on pod {pod}.",
        runbook_url="https://runbooks.example.com/OutriderDriftDetected.md",
        dashboard_url=f"https://grafana.example.com/d/outrider-model/outrider-model?var-instance={instance}",
    )


def test_a_group_mixing_pods_and_signals_gets_a_summary_naming_every_pod(
    amtool: str, tmp_path: Path
) -> None:
    group = _group([_drift("digits-7f9c-a", "10.1.0.7:8081", "input"),
                    _drift("digits-7f9c-b", "10.1.0.8:8081", "embedding")])
    assert "summary" not in group["commonAnnotations"]  # what left the old page blank
    summary = _render(amtool, tmp_path, group, '{{ template "outrider.summary" . }}')
    assert summary == ("Input drift on digits 2 (input) on digits-7f9c-a; "
                       "also on digits-7f9c-b (embedding)")
    links = _render(amtool, tmp_path, group, '{{ template "outrider.runbook_url" . }} '
                    '{{ template "outrider.dashboard_url" . }}')
    assert links == ("https://runbooks.example.com/OutriderDriftDetected.md "
                     "https://grafana.example.com/d/outrider-model/outrider-model"
                     "?var-instance=10.1.0.7:8081")
    details = _render(amtool, tmp_path, group, '{{ template "outrider.description" . }}')
    assert details.splitlines() == [
        "- Detector mmd has flagged drift on signal input ... on pod digits-7f9c-a.",
        "- Detector mmd has flagged drift on signal embedding ... on pod digits-7f9c-b.",
    ]


def test_a_group_with_one_summary_keeps_it_and_counts_the_alerts(
    amtool: str, tmp_path: Path
) -> None:
    same = _drift("digits-7f9c-a", "10.1.0.7:8081", "input")
    twin = json.loads(json.dumps(same))
    twin["labels"]["detector"] = "ks"
    summary = _render(amtool, tmp_path, _group([same, twin]), '{{ template "outrider.summary" . }}')
    assert summary == "Input drift on digits 2 (input) on digits-7f9c-a (2 alerts)"


def test_a_group_without_annotations_and_a_resolved_group_are_never_blank(
    amtool: str, tmp_path: Path
) -> None:
    bare = [_alert("firing", {"alertname": "OutriderScrapeAbsent", "job": "outrider"}),
            _alert("firing", {"alertname": "OutriderScrapeAbsent", "job": "outrider",
                              "instance": "10.1.0.8:8081"})]
    summary = _render(amtool, tmp_path, _group(bare), '{{ template "outrider.summary" . }}')
    assert summary == "OutriderScrapeAbsent; also on 10.1.0.8:8081"
    resolved = _drift("digits-7f9c-a", "10.1.0.7:8081", "input") | {"status": "resolved"}
    summary = _render(amtool, tmp_path, _group([resolved]), '{{ template "outrider.summary" . }}')
    assert summary == "[RESOLVED] Input drift on digits 2 (input) on digits-7f9c-a"


# --- inhibition, in a real Alertmanager ---------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _alertmanager(tmp_path: Path) -> Iterator[str]:
    """The shipped config (its receivers pointed at a closed local port) in a real Alertmanager."""
    if ALERTMANAGER is None:
        pytest.skip("needs Debian's prometheus-alertmanager (see .ci/run)")
    config = yaml.safe_load(CONFIG.read_text())
    dead_end = f"http://127.0.0.1:{_free_port()}/"
    config["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": dead_end}]}
                           for r in config["receivers"]]
    config["templates"] = [str(TEMPLATES)]
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}",
         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(
                f"{url}/-/ready", timeout=1
            ):
                break
            assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
            assert time.monotonic() < deadline, "Alertmanager did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _post(url: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels, "annotations": {}} for labels in alerts]).encode()
    request = urllib.request.Request(f"{url}/api/v2/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5):
        pass


def _inhibited(url: str) -> dict[tuple[str, str, str], bool]:
    """(alertname, severity, instance or model) -> whether Alertmanager holds the alert back."""
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        alerts = json.loads(response.read())
    return {(a["labels"]["alertname"], a["labels"]["severity"],
             a["labels"].get("instance") or a["labels"].get("model", "")):
            bool(a["status"]["inhibitedBy"]) for a in alerts}


def test_inhibitions_mute_only_the_same_pod_or_model(tmp_path: Path) -> None:
    def replica(name: str, instance: str, **labels: str) -> dict[str, str]:
        return {"alertname": name, "job": "outrider", "instance": instance, **labels}

    model = {"category": "model", "namespace": "models", "model": "digits", "version": "2"}
    alerts = [
        # a target-less scrape alert (no instance, no model) must not mute anyone's warnings
        {"alertname": "OutriderScrapeAbsent", "job": "outrider", "severity": "critical",
         "category": "outrider"},
        replica("OutriderTapDropRatioHigh", "b:8081", severity="warning", category="outrider"),
        # a model page on pod a covers the same model's ticket on pod a, not on pod b
        replica("OutriderProbeRegression", "a:8081", severity="critical", **model),
        replica("OutriderOODRatioHigh", "a:8081", severity="warning", **model),
        replica("OutriderOODRatioHigh", "b:8081", severity="warning", **model),
        # a rollback on pod c holds back pod c's drift page, not pod d's
        replica("OutriderAutomaticRollback", "c:8081", severity="info", category="outrider",
                namespace="models", hook="rollback-deployment"),
        replica("OutriderDriftDetected", "c:8081", severity="critical", **model),
        replica("OutriderDriftDetected", "d:8081", severity="critical", **model),
    ]
    burns = [
        {"alertname": "OutriderErrorBudgetBurn", "job": "outrider", "namespace": "models",
         "category": "outrider", "severity": severity, "model": name}
        for severity, name in (("critical", "digits"), ("warning", "digits"),
                               ("warning", "fraud-scoring"))
    ]
    with _alertmanager(tmp_path) as url:
        _post(url, alerts + burns)
        deadline = time.monotonic() + 20
        while True:
            state = _inhibited(url)
            if len(state) == len(alerts) + len(burns) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert state == {
        ("OutriderScrapeAbsent", "critical", ""): False,
        ("OutriderTapDropRatioHigh", "warning", "b:8081"): False,
        ("OutriderProbeRegression", "critical", "a:8081"): False,
        ("OutriderOODRatioHigh", "warning", "a:8081"): True,
        ("OutriderOODRatioHigh", "warning", "b:8081"): False,
        ("OutriderAutomaticRollback", "info", "c:8081"): False,
        ("OutriderDriftDetected", "critical", "c:8081"): True,
        ("OutriderDriftDetected", "critical", "d:8081"): False,
        ("OutriderErrorBudgetBurn", "critical", "digits"): False,
        ("OutriderErrorBudgetBurn", "warning", "digits"): True,
        ("OutriderErrorBudgetBurn", "warning", "fraud-scoring"): False,
    }


# --- the Prometheus Operator's AlertmanagerConfig ----------------------------------------

_MATCH_TYPES = {"=", "!=", "=~", "!~"}


def _matchers(items: list[dict[str, str]]) -> list[str]:
    assert all(item["matchType"] in _MATCH_TYPES for item in items)
    return [f'{item["name"]}{item["matchType"]}"{item["value"]}"' for item in items]


def _plain_route(route: dict[str, Any]) -> dict[str, Any]:
    """An AlertmanagerConfig route as Alertmanager configuration (what the Operator writes)."""
    keys = {"groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval",
            "repeatInterval": "repeat_interval", "receiver": "receiver", "continue": "continue"}
    plain = {keys[key]: value for key, value in route.items() if key in keys}
    if "matchers" in route:
        plain["matchers"] = _matchers(route["matchers"])
    if "routes" in route:
        plain["routes"] = [_plain_route(child) for child in route["routes"]]
    unknown = set(route) - set(keys) - {"matchers", "routes"}
    assert not unknown, unknown
    return plain


def _operator_as_plain_config(tmp_path: Path) -> Path:
    resource = yaml.safe_load(OPERATOR_CONFIG.read_text())
    spec = resource["spec"]
    top = _plain_route(spec["route"])
    # The Operator scopes the object to its namespace: a namespace matcher on the top route.
    top["matchers"] = ['namespace="models"', *top.get("matchers", [])]
    top["continue"] = True
    config = {
        "route": {"receiver": "default", "routes": [top]},
        "receivers": [{"name": "default"}] + [{"name": r["name"]} for r in spec["receivers"]],
        "inhibit_rules": [
            {"source_matchers": _matchers(rule["sourceMatch"]),
             "target_matchers": _matchers(rule["targetMatch"]), "equal": rule["equal"]}
            for rule in spec["inhibitRules"]
        ],
    }
    path = tmp_path / "operator-as-plain.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_operator_config_routes_and_inhibits_as_the_plain_config(
    amtool: str, tmp_path: Path
) -> None:
    plain = _operator_as_plain_config(tmp_path)
    result = run_tool([amtool, "check-config", str(plain)])
    assert result.returncode == 0, result.stdout + result.stderr
    for labels, receivers in ROUTING_CASES:
        result = _routes_test(plain, [*labels, "namespace=models"], receivers)
        assert result.returncode == 0, (labels, result.stdout, result.stderr)
    shipped = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    converted = yaml.safe_load(plain.read_text())["inhibit_rules"]
    assert [rule["equal"] for rule in converted] == [rule["equal"] for rule in shipped]
    assert [[m.replace(" ", "") for m in rule["source_matchers"]] for rule in shipped] == [
        rule["source_matchers"] for rule in converted]


def test_operator_config_reads_every_secret_by_key() -> None:
    resource = yaml.safe_load(OPERATOR_CONFIG.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    assert resource["kind"] == "AlertmanagerConfig"
    receivers = {r["name"]: r for r in resource["spec"]["receivers"]}
    (outrider,) = receivers["outrider"]["webhookConfigs"]
    assert outrider["url"].endswith(":8081/alertmanager")
    assert outrider["httpConfig"]["authorization"] == {
        "type": "Bearer", "credentials": {"name": "outrider-admin-token", "key": "token"},
    }
    for name in ("pager", "fraud-team-pager"):
        (page,) = receivers[name]["pagerdutyConfigs"]
        assert set(page["routingKey"]) == {"name", "key"}
        assert page["description"] == '{{ template "outrider.summary" . }}'
    text = OPERATOR_CONFIG.read_text()
    assert "credentials_file" not in text.split("apiVersion:")[1]
