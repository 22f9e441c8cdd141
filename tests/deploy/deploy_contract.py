"""What the deployment tests check against: paths, external tools, the metric contract."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.metric_families import FAMILIES, contract

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
CHART_DIR = REPO_ROOT / "helm" / "outrider"
RUNBOOK_DIR = REPO_ROOT / "docs" / "runbooks"
RUNBOOK_URL_PREFIX = "https://github.com/outrider/outrider/blob/main/docs/runbooks/"

# The metric contract: DESIGN.md's table plus the series the service owners announced, both
# generated from the one list of families (service/metric_families.py, `contract`).
# Dashboards, rules and manifests may only refer to these (and the Prometheus-made `up`).
DESIGN_METRICS: frozenset[str] = contract("design")
ANNOUNCED_METRICS: frozenset[str] = contract("announced")
# In DESIGN.md's table for this wave but not exported yet: each leaves this list for
# DESIGN_METRICS in the change that starts exporting it (issues #12, #13, #14).
PLANNED_METRICS: frozenset[str] = frozenset(
    {
        "outrider_performance_realized",
        "outrider_performance_estimated",
        "outrider_labels_received_total",
        "outrider_guard_suspicious_clients",
        "outrider_reference_rows_flagged",
    }
)
HISTOGRAMS: frozenset[str] = frozenset(f.name for f in FAMILIES if f.kind == "histogram")


def exported_series_names() -> frozenset[str]:
    """Every series name outrider exports, with the _bucket/_sum/_count of its histograms."""
    names = set(DESIGN_METRICS | ANNOUNCED_METRICS)
    for histogram in HISTOGRAMS:
        names |= {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"}
    names -= HISTOGRAMS
    return frozenset(names)


_REFERENCED = re.compile(r"(?<![:\w])outrider_[a-z_]+(?![:\w])")


def referenced_metric_families() -> frozenset[str]:
    """Every outrider metric family that rules, dashboards and manifests in deploy/ read."""
    names: set[str] = set()
    for path in [
        *(DEPLOY_DIR / "grafana").glob("*.json"),
        *(DEPLOY_DIR / "prometheus").glob("*.yaml"),
        *(DEPLOY_DIR / "kubernetes").rglob("*.yaml"),
    ]:
        names |= set(_REFERENCED.findall(path.read_text()))
    families = set()
    for name in names:
        for histogram in HISTOGRAMS:
            if name in {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"}:
                name = histogram
        families.add(name)
    return frozenset(families)


def tool_path(name: str) -> str:
    """Find a CLI next to the running interpreter (venv) or on PATH, else skip the test."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (see the deploy section of .ci/run)")
    return found


def outrider_config_check(paths: list[Path]) -> tuple[int, str]:
    """`outrider config check --quiet PATHS` in-process (a subprocess spends seconds importing)."""
    from service.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", "check", "--quiet", *map(str, paths)])
    return code, out.getvalue() + err.getvalue()


def run_tool(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a CLI with a time bound and return its captured result."""
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
