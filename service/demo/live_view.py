"""The demo's terminal view: what the client sees, and what outrider's /metrics says."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table
from rich.text import Text

from service.demo.driver import TrafficStats

_ALERT_STATES = {0.0: "inactive", 1.0: "pending", 2.0: "firing"}
_ALERT_STYLE = {"inactive": "green", "pending": "yellow", "firing": "bold red"}


@dataclass
class Scrape:
    """The parts of one /metrics scrape the demo shows."""

    detectors: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    alerts: dict[str, tuple[str, str]] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=2.0) as response:
        text = response.read().decode()
    result = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            name = sample.name
            if name in (
                "outrider_drift_score",
                "outrider_drift_threshold",
                "outrider_drift_p_value",
                "outrider_drift_detected",
                "outrider_ood_ratio",
                "outrider_window_fill_ratio",
            ):
                key = (labels.get("signal", ""), labels.get("detector", ""))
                result.detectors.setdefault(key, {})[name.removeprefix("outrider_")] = sample.value
            elif name == "outrider_alert_state":
                result.alerts[labels["alert"]] = (
                    labels.get("severity", ""),
                    _ALERT_STATES.get(sample.value, str(sample.value)),
                )
            elif name in ("outrider_tap_samples_total", "outrider_hook_actions_total"):
                counter = f"{name}:{labels.get('outcome', '')}:{labels.get('hook', '')}"
                result.counters[counter] = sample.value
    return result


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}g}"


def render(stats: TrafficStats, view: Scrape | None, elapsed: float, duration: float) -> Group:
    """One frame of the live view."""
    latencies = sorted(stats.window(2.0))
    rate = len(latencies) / 2.0
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
    p99 = (
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        if latencies
        else float("nan")
    )
    header = Text.assemble(
        ("outrider demo  ", "bold"),
        (f"{elapsed:5.0f}/{duration:.0f} s  ", "dim"),
        ("phase: ", ""),
        (f"{stats.phase} ({stats.phase_progress:.0%})", "bold cyan"),
        (f"   {rate:5.0f} req/s   p50 {p50:5.2f} ms   p99 {p99:5.2f} ms   ", ""),
        (f"sent {stats.sent}   failed {stats.failed}", "red" if stats.failed else "dim"),
    )
    detectors = Table(title="detectors (from outrider /metrics)", expand=True)
    for column in ("signal", "detector", "score", "threshold", "p-value", "OOD ratio", "drift"):
        detectors.add_column(column)
    alerts = Table(title="alerts", expand=True)
    for column in ("alert", "severity", "state"):
        alerts.add_column(column)
    if view is not None:
        for (signal, detector), values in sorted(view.detectors.items()):
            drifting = values.get("drift_detected") == 1.0
            detectors.add_row(
                signal,
                detector,
                _number(values.get("drift_score")),
                _number(values.get("drift_threshold")),
                _number(values.get("drift_p_value")),
                _number(values.get("ood_ratio"), 2),
                Text("DRIFT", "bold red") if drifting else Text("ok", "green"),
            )
        for alert, (severity, state) in sorted(view.alerts.items()):
            alerts.add_row(alert, severity, Text(state, _ALERT_STYLE.get(state, "")))
    return Group(header, detectors, alerts)


def status_line(stats: TrafficStats, view: Scrape | None, elapsed: float) -> str:
    """A plain one-line status, for logs and terminals without live redraw."""
    firing = sorted(a for a, (_, s) in (view.alerts.items() if view else []) if s == "firing")
    drifting = sorted(
        f"{s}/{d}"
        for (s, d), v in (view.detectors.items() if view else [])
        if v.get("drift_detected") == 1.0
    )
    return (
        f"[{elapsed:5.0f} s] phase={stats.phase} sent={stats.sent} failed={stats.failed} "
        f"drifting={','.join(drifting) or '-'} firing={','.join(firing) or '-'}"
    )
