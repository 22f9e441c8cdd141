"""The example Alertmanager config in deploy/alertmanager/: valid and routing as documented."""

from __future__ import annotations

import pytest
import yaml
from deploy_contract import DEPLOY_DIR, run_tool

CONFIG = DEPLOY_DIR / "alertmanager" / "alertmanager.yml"


def test_config_passes_amtool_check(amtool: str) -> None:
    result = run_tool([amtool, "check-config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "3 receivers" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=OutriderDriftDetected", "severity=critical", "category=model"],
         "outrider,pager"),
        (["alertname=OutriderProbeRegression", "severity=critical", "category=model"],
         "outrider,pager"),
        (["alertname=OutriderUpstreamErrors", "severity=critical", "category=outrider"],
         "pager"),
        (["alertname=OutriderOODRatioHigh", "severity=warning", "category=model"], "tickets"),
        (["alertname=Unrelated"], "tickets"),
    ],
)
def test_routing(amtool: str, labels: list[str], receivers: str) -> None:
    result = run_tool(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}",
         f"--verify.receivers={receivers}", *labels]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_routing_check_can_fail(amtool: str) -> None:
    result = run_tool(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}",
         "--verify.receivers=pager", "severity=critical", "category=model"]
    )
    assert result.returncode != 0


def test_outrider_receiver_posts_to_the_admin_endpoint_with_resolved() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    (receiver,) = [r for r in config["receivers"] if r["name"] == "outrider"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"] == "http://127.0.0.1:8081/alertmanager"
    assert webhook["send_resolved"] is True
