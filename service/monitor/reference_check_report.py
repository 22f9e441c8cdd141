"""Output of `outrider reference check`: a table for people, JSON for tools, a PNG to look at.

The JSON document is a stable contract (schema `outrider.reference-check`, version 1,
documented in docs/reference-checks.md and pinned by a test): the report of
`detectors.reference_checks.run_reference_checks` plus where the reference came from.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from detectors.reference_checks import ReferenceCheckReport

SCHEMA = "outrider.reference-check"
SCHEMA_VERSION = 1
_WIDTH = 120
#: Rows drawn in the PNG's scatter (a sample of the reference when it is larger).
_PLOT_ROWS = 5000


def report_document(
    report: ReferenceCheckReport, source: Mapping[str, object]
) -> dict[str, object]:
    """The `--json` document: schema, where the reference came from, and the report."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "source": dict(source),
        **report.to_dict(include_rows=True),
    }


def format_json(report: ReferenceCheckReport, source: Mapping[str, object]) -> str:
    return (
        json.dumps(report_document(report, source), indent=2, sort_keys=True, allow_nan=False)
        + "\n"
    )


def format_table(report: ReferenceCheckReport, source: Mapping[str, object]) -> str:
    """One line per check (status, flagged rows, share, finding) and a verdict line."""
    where = source.get("path") or source.get("signal") or "reference"
    title = f"reference check: {where} ({report.n_rows} rows x {report.n_dims} dims)"
    table = Table(title=title, title_justify="left")
    table.add_column("CHECK", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("ROWS", justify="right", no_wrap=True)
    table.add_column("SHARE", justify="right", no_wrap=True)
    table.add_column("FINDING", overflow="fold")
    for r in report.results:
        counted = r.status != "skipped" and r.row_scores is not None
        table.add_row(
            r.check,
            r.status,
            str(len(r.rows)) if counted else "-",
            f"{r.flagged_share:.2%}" if counted else "-",
            r.message,
        )
    if report.flagged:
        verdict = f"flagged by {', '.join(report.flagged_checks)} (above their warn thresholds)"
    else:
        verdict = "nothing above the warn thresholds"
    footer = f"{verdict}; {report.elapsed_s:.1f} s of a {report.settings.time_budget_s:g} s budget"
    return _render(table, footer)


def render_plot(
    path: str | os.PathLike[str], report: ReferenceCheckReport, vectors: np.ndarray
) -> Path:
    """A PNG: flagged share per check, and the reference's first two principal components
    with each check's flagged rows marked. Written to a temp file and renamed."""
    target = Path(path)
    figure = Figure(figsize=(12.0, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    bars, scatter = figure.subplots(1, 2, width_ratios=(1.0, 1.2))
    shown = [r for r in report.results if r.status != "skipped" and r.subject == "reference"]
    colours = {"ok": "tab:green", "flagged": "tab:red"}
    positions = np.arange(len(shown))
    bars.barh(
        positions,
        [100.0 * r.flagged_share for r in shown],
        color=[colours.get(r.status, "tab:gray") for r in shown],
    )
    bars.set_yticks(positions, [r.check for r in shown])
    bars.invert_yaxis()
    bars.set_xlabel("flagged rows (% of the reference)")
    bars.set_title("checks (red: above the warn threshold)")
    _scatter(scatter, report, vectors)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".refcheck-", suffix=".png", dir=target.parent)
    os.close(fd)
    try:
        figure.savefig(tmp, format="png")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _scatter(axes: Any, report: ReferenceCheckReport, vectors: np.ndarray) -> None:
    finite = np.isfinite(vectors).all(axis=1)
    rows = np.flatnonzero(finite)
    if rows.size < 2:
        axes.set_title("too few finite rows to draw")
        return
    rng = np.random.default_rng(0)
    drawn = (
        rows if rows.size <= _PLOT_ROWS else np.sort(rng.choice(rows, _PLOT_ROWS, replace=False))
    )
    x = vectors[drawn]
    centred = x - x.mean(axis=0)
    if centred.shape[1] >= 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
    else:
        xy = np.column_stack([centred[:, 0], np.zeros(len(centred))])
    axes.scatter(xy[:, 0], xy[:, 1], s=4, color="lightgray", label="reference")
    position = np.full(vectors.shape[0], -1)
    position[drawn] = np.arange(len(drawn))
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    flagged = [r for r in report.results if r.subject == "reference" and len(r.rows)]
    for i, r in enumerate(flagged):
        at = position[r.rows]
        at = at[at >= 0]
        if at.size:
            axes.scatter(
                xy[at, 0],
                xy[at, 1],
                s=14,
                marker=markers[i % len(markers)],
                label=f"{r.check} ({len(r.rows)})",
            )
    axes.set_xlabel("principal component 1")
    axes.set_ylabel("principal component 2")
    axes.set_title(f"flagged rows ({len(drawn)} of {vectors.shape[0]} rows drawn)")
    axes.legend(loc="best", fontsize="small")


def _render(*renderables: Any) -> str:
    buffer = io.StringIO()
    # No colour codes: the text goes to pipes and files as well as terminals.
    console = Console(
        file=buffer, width=_WIDTH, color_system=None, force_terminal=False, soft_wrap=False
    )
    for renderable in renderables:
        console.print(renderable)
    # rich pads titles to the table width; trailing blanks only get in the way of grep/diff.
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
