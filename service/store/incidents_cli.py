"""Text for `outrider incidents list` and `show ID`: rich tables for people, JSON for tools."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from service.store.incidents import Incident
from service.store.state_dir import plot_file_name

_WIDTH = 120


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(incident: Incident) -> str:
    if incident.ended_at is None:
        return "ongoing"
    seconds = max(0, round(incident.ended_at - incident.started_at))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _render(*renderables: Any) -> str:
    buffer = io.StringIO()
    # No colour codes: the text goes to pipes and files as well as terminals.
    console = Console(file=buffer, width=_WIDTH, color_system=None, force_terminal=False,
                      soft_wrap=False)
    for renderable in renderables:
        console.print(renderable)
    # rich pads titles to the table width; trailing blanks only get in the way of grep/diff.
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n"


def format_incident_list(incidents: Sequence[Incident], as_json: bool) -> str:
    """The `incidents list` output: one row per incident, newest first as given."""
    if as_json:
        return _dumps([incident.to_json() for incident in incidents])
    if not incidents:
        return "no incidents\n"
    table = Table(title=f"{len(incidents)} incident(s)", title_justify="left")
    for column in ("ID", "STATUS", "SEVERITY", "ALERT", "MODEL", "VERSION", "STARTED",
                   "DURATION", "ACTIONS"):
        table.add_column(column, justify="right" if column in ("ID", "ACTIONS") else "left",
                         no_wrap=True)
    for incident in incidents:
        table.add_row(
            str(incident.id), incident.status, incident.severity, incident.alert,
            incident.model, incident.version, _when(incident.started_at), _duration(incident),
            str(len(incident.actions)),
        )
    return _render(table)


def format_incident(incident: Incident, as_json: bool) -> str:
    """The `incidents show ID` output: fields, labels, annotations, evidence and actions."""
    if as_json:
        return _dumps(incident.to_json())
    facts = Table(title=f"incident {incident.id}: {incident.alert}", title_justify="left",
                  show_header=False)
    facts.add_column("field", style="bold", no_wrap=True)
    facts.add_column("value", overflow="fold")
    rows: list[tuple[str, str]] = [
        ("status", incident.status),
        ("severity", incident.severity),
        ("model", f"{incident.model} (version {incident.version})"),
        ("started", _when(incident.started_at)),
        ("ended", _when(incident.ended_at)),
        ("duration", _duration(incident)),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(incident.labels.items())) or "-"),
    ]
    rows += [(name, text) for name, text in sorted(incident.annotations.items())]
    rows.append(("plot", incident.plot_path or "-"))
    if incident.plot_path is not None:
        firing = Path(incident.plot_path).parent / plot_file_name(incident.id, "firing")
        if str(firing) != incident.plot_path and firing.exists():
            rows.append(("plot at firing", str(firing)))
    for name, text in rows:
        facts.add_row(name, text)
    evidence = Table(title="evidence", title_justify="left", show_header=False)
    evidence.add_column("statistic", style="bold", no_wrap=True)
    evidence.add_column("value", overflow="fold")
    for name, value in sorted(incident.evidence.items()):
        evidence.add_row(name, _evidence_value(name, value))
    actions = Table(title="actions", title_justify="left")
    for column in ("TIME", "HOOK", "ACTION", "OUTCOME", "DETAIL"):
        actions.add_column(column, overflow="fold")
    for action in incident.actions:
        actions.add_row(_when(action.at), action.hook, action.action, action.outcome,
                        json.dumps(action.detail, sort_keys=True))
    parts: list[Any] = [facts, evidence]
    parts.append(actions if incident.actions else "no actions recorded")
    return _render(*parts)


# Per-dimension evidence: `top_mean_shifts` entries {dimension, shift}; incidents recorded by
# earlier releases call it `top_dimensions` with {dimension, statistic}.
_DIMENSION_LISTS = {"top_mean_shifts": "shift", "top_dimensions": "statistic"}


def _evidence_value(name: str, value: Any) -> str:
    field = _DIMENSION_LISTS.get(name)
    if field is not None and isinstance(value, list):
        return ", ".join(
            f"dim {item.get('dimension')}: {item.get(field):.4g}"
            if isinstance(item, dict) and isinstance(item.get(field), int | float)
            else json.dumps(item)
            for item in value
        ) or "-"
    if name.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool):
        return _when(float(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    return json.dumps(value) if not isinstance(value, str) else value
