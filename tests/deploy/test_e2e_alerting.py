"""End to end with real binaries: drift -> Prometheus rule -> Alertmanager -> outrider -> hook.

Starts, all on loopback with free ports: the bundled model server on the digits demo model,
`outrider serve` in front of it, Debian's Prometheus scraping outrider with the shipped rules
(deploy/prometheus/, only the drift alert's `for` shortened), Debian's Alertmanager with the
shipped routing (deploy/alertmanager/, receivers pointed at loopback, timings shortened), and
a local HTTP receiver for outrider's webhook hook and the pager. Clean digits fill the
reference, inverted digits drift; the webhook must arrive exactly once even though
Alertmanager re-notifies.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from deploy_contract import DEPLOY_DIR, referenced_metric_families

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
DEADLINE_SECONDS = 90.0
# Families deploy/ reads that this run cannot export: no probe suites are configured.
NOT_IN_THIS_SCRAPE = frozenset({
    "outrider_probe_accuracy_ratio",
    "outrider_probe_attack_success_ratio",
    "outrider_probe_regression",
    "outrider_probe_regression_p_value",
    "outrider_probe_runs_total",
})

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="needs Debian's prometheus and prometheus-alertmanager (see .ci/run)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tails(processes: dict[Path, subprocess.Popen[bytes]]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}"
                     for log in processes)


def _wait_for(what: str, check: Callable[[], bool], timeout: float,
              processes: dict[Path, subprocess.Popen[bytes]]) -> None:
    began = time.monotonic()
    deadline = began + timeout
    while time.monotonic() < deadline:
        for log, process in processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{log.stem} exited with {process.returncode} while "
                                     f"waiting for {what}\n{_log_tails(processes)}")
        with contextlib.suppress(OSError, ValueError):
            if check():
                # Shown with the test's output when it fails: where the time went.
                print(f"{what}: {time.monotonic() - began:.1f}s")
                return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}\n{_log_tails(processes)}"
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
        return body


class _HookReceiver(BaseHTTPRequestHandler):
    """Records every POST by path: outrider's webhook hook, Alertmanager's pager and tickets."""

    received: dict[str, list[dict[str, Any]]] = {}

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.setdefault(self.path, []).append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _hook_receiver(port: int) -> Iterator[dict[str, list[dict[str, Any]]]]:
    received: dict[str, list[dict[str, Any]]] = {}
    handler = type("Receiver", (_HookReceiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _started(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _outrider(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


def _rules_with_short_drift_for(target: Path) -> None:
    """The shipped rules, with only OutriderDriftDetected's `for` cut to a second."""
    alerts = yaml.safe_load((DEPLOY_DIR / "prometheus/alerts.yaml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "OutriderDriftDetected":
                rule["for"] = "1s"
    (target / "alerts.yaml").write_text(yaml.safe_dump(alerts))
    for name in ("recording.yaml", "slo.yaml"):
        shutil.copy(DEPLOY_DIR / "prometheus" / name, target / name)


def _send(port: int, batches: list[np.ndarray]) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{port}")
    try:
        for batch in batches:
            infer_input = grpcclient.InferInput("pixels", list(batch.shape), "FP32")
            infer_input.set_data_from_numpy(batch)
            client.infer("demo", [infer_input])
    finally:
        client.close()


def _model_ready(port: int) -> bool:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{port}")
    try:
        return bool(client.is_model_ready("demo"))
    except Exception:  # noqa: BLE001 - not up yet, any transport error means "not ready"
        return False
    finally:
        client.close()


def _firing_alerts(prometheus_port: int) -> list[dict[str, Any]]:
    body = json.loads(_get(f"http://127.0.0.1:{prometheus_port}/api/v1/alerts"))
    return [a for a in body["data"]["alerts"] if a["state"] == "firing"]


def _shipped_alertmanager_config(target: Path, ports: dict[str, int]) -> None:
    """deploy/alertmanager/alertmanager.yml with local receivers and test-sized timings.

    The routing tree is kept as shipped; outrider's receiver points at the running outrider
    and the pager and ticket receivers become local webhooks, so the test sees where each
    notification went.
    """
    config = yaml.safe_load((DEPLOY_DIR / "alertmanager/alertmanager.yml").read_text())
    config["templates"] = [str(DEPLOY_DIR / "alertmanager" / name) for name in config["templates"]]
    timings = {"group_wait": "200ms", "group_interval": "1s", "repeat_interval": "2s"}
    config["route"].update(timings)

    def shorten(routes: list[dict[str, Any]]) -> None:
        for route in routes:
            for key in timings:
                if key in route:
                    route[key] = timings[key]
            shorten(route.get("routes", []))

    shorten(config["route"]["routes"])
    receivers = []
    for receiver in config["receivers"]:
        name = receiver["name"]
        url = (f"http://127.0.0.1:{ports['admin']}/alertmanager" if name == "outrider"
               else f"http://127.0.0.1:{ports['hook']}/{name}")
        receivers.append({"name": name, "webhook_configs": [{"url": url, "send_resolved": True}]})
    assert [r["name"] for r in receivers] == ["outrider", "pager", "fraud-team-pager", "tickets"]
    config["receivers"] = receivers
    target.write_text(yaml.safe_dump(config))


def test_drift_alert_reaches_outriders_webhook_hook_exactly_once(
    tmp_path: Path, demo_model_path: Path
) -> None:
    from service.modelserver.demo_model import load_demo_data

    ports = {name: _free_port() for name in
             ("model", "relay", "admin", "prometheus", "alertmanager", "hook")}
    rules = tmp_path / "rules"
    rules.mkdir()
    _rules_with_short_drift_for(rules)
    (tmp_path / "outrider.yaml").write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"),
        "admin": {"host": "127.0.0.1", "port": ports["admin"]},
        "dataplane": {
            "listen_port": ports["relay"],
            "upstream": {"host": "127.0.0.1", "port": ports["model"]},
            "sampling_rate": 1.0,
            "max_samples_per_second": 10_000,
        },
        "models": {"demo": {"signals": [{
            "name": "pixels",
            "source": {"input": "pixels"},
            "reference": {"capture": 300},
            "detectors": [{"type": "ks", "window": 200, "params": {"alpha": 0.01}}],
        }]}},
        "hooks": {"hooks": [{
            "name": "notify-owner",
            "type": "webhook",
            "url": f"http://127.0.0.1:{ports['hook']}/drift",
            "match": {"alerts": ["OutriderDriftDetected"]},
            "send_resolved": False,
            "max_retries": 0,
        }]},
    }))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / name) for name in ("recording.yaml", "slo.yaml", "alerts.yaml")],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}
        ]},
        "scrape_configs": [{
            "job_name": "outrider",
            "static_configs": [{"targets": [f"127.0.0.1:{ports['admin']}"]}],
        }],
    }))
    _shipped_alertmanager_config(tmp_path / "alertmanager.yml", ports)

    data = load_demo_data("digits", seed=0)
    rng = np.random.default_rng(7)
    clean = [data.x_test[rng.integers(0, len(data.x_test), 50)] for _ in range(8)]
    drifted = [data.pixel_max - batch for batch in
               (data.x_test[rng.integers(0, len(data.x_test), 50)] for _ in range(8))]

    with contextlib.ExitStack() as stack:
        received = stack.enter_context(_hook_receiver(ports["hook"]))
        model = stack.enter_context(_started(
            _outrider("modelserver", f"--model={demo_model_path}", "--name=demo", "--version=1",
                      f"--port={ports['model']}", f"--state-dir={tmp_path / 'model'}"),
            tmp_path / "modelserver.log"))
        outrider = stack.enter_context(_started(
            _outrider("serve", "--config", str(tmp_path / "outrider.yaml")),
            tmp_path / "outrider.log"))
        alertmanager = stack.enter_context(_started(
            [str(ALERTMANAGER), f"--config.file={tmp_path / 'alertmanager.yml'}",
             f"--storage.path={tmp_path / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
             "--cluster.listen-address=", "--log.level=warn"],
            tmp_path / "alertmanager.log"))
        prometheus = stack.enter_context(_started(
            [str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'prom-data'}",
             f"--web.listen-address=127.0.0.1:{ports['prometheus']}", "--log.level=warn"],
            tmp_path / "prometheus.log"))
        processes = {
            tmp_path / "modelserver.log": model,
            tmp_path / "outrider.log": outrider,
            tmp_path / "alertmanager.log": alertmanager,
            tmp_path / "prometheus.log": prometheus,
        }
        started = time.monotonic()

        def remaining() -> float:
            return max(1.0, DEADLINE_SECONDS - (time.monotonic() - started))

        _wait_for("the model server", lambda: _model_ready(ports["model"]), remaining(),
                  processes)
        _wait_for("outrider /readyz",
                  lambda: _get(f"http://127.0.0.1:{ports['admin']}/readyz") is not None,
                  remaining(), processes)
        _wait_for("Alertmanager ready",
                  lambda: _get(f"http://127.0.0.1:{ports['alertmanager']}/-/ready") is not None,
                  remaining(), processes)
        _wait_for("Prometheus ready",
                  lambda: _get(f"http://127.0.0.1:{ports['prometheus']}/-/ready") is not None,
                  remaining(), processes)

        _send(ports["relay"], clean)
        _wait_for("the reference capture and a clean window", lambda: b"outrider_drift_detected{"
                  in _get(f"http://127.0.0.1:{ports['admin']}/metrics"), remaining(), processes)
        assert not _firing_alerts(ports["prometheus"])
        assert received == {}

        _send(ports["relay"], drifted)
        exported = {line.split()[2] for line in
                    _get(f"http://127.0.0.1:{ports['admin']}/metrics").decode().splitlines()
                    if line.startswith("# TYPE ")}
        missing = referenced_metric_families() - exported
        assert missing <= NOT_IN_THIS_SCRAPE, sorted(missing - NOT_IN_THIS_SCRAPE)

        _wait_for("OutriderDriftDetected firing in Prometheus",
                  lambda: any(a["labels"]["alertname"] == "OutriderDriftDetected"
                              for a in _firing_alerts(ports["prometheus"])),
                  remaining(), processes)
        _wait_for("the webhook hook", lambda: "/drift" in received, remaining(), processes)
        # The shipped route also pages. Alertmanager re-notifies every 2 s (the pager sees it);
        # outrider must not act again for the same alert.
        _wait_for("a repeated page",
                  lambda: len(received.get("/pager", [])) >= 2, remaining(), processes)
        time.sleep(0.5)
        # The received alert opened one incident (committed before the hook ran), and the
        # hook's action is recorded on it: what the runbooks tell on-call to look at.
        incidents = json.loads(_get(f"http://127.0.0.1:{ports['admin']}/incidents"))["incidents"]
        assert [i["alert"] for i in incidents] == ["OutriderDriftDetected"]
        assert [a["hook"] for a in incidents[0]["actions"]] == ["notify-owner"]

    # SIGTERM is the normal stop in Kubernetes: outrider drains and exits cleanly.
    assert outrider.returncode == 0, _log_tails({tmp_path / "outrider.log": outrider})
    errors = [line for line in (tmp_path / "outrider.log").read_text().splitlines()
              if '"level": "error"' in line]
    assert errors == []
    assert all(n["status"] == "firing" for n in received["/pager"])
    assert {n["commonLabels"]["alertname"] for n in received["/pager"]} == {"OutriderDriftDetected"}
    assert "/tickets" not in received
    assert len(received["/drift"]) == 1, received["/drift"]
    (delivery,) = received["/drift"]
    assert delivery["hook"] == "notify-owner"
    assert delivery["status"] == "firing"
    alert = delivery["alert"]
    assert alert["name"] == "OutriderDriftDetected"
    assert alert["severity"] == "critical"
    assert (alert["model"], alert["version"]) == ("demo", "1")
    assert alert["labels"]["signal"] == "pixels"
    assert alert["labels"]["detector"] == "ks"
    assert alert["annotations"]["runbook_url"].endswith("/docs/runbooks/OutriderDriftDetected.md")
