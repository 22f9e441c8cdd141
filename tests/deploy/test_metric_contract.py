"""The metric names deploy/ relies on: all from the contract, and the contract from DESIGN.md."""

from __future__ import annotations

import re

import pytest
from deploy_contract import (
    ANNOUNCED_METRICS,
    DESIGN_METRICS,
    PLANNED_METRICS,
    REPO_ROOT,
    referenced_metric_families,
)

# DESIGN.md lives in shared/ beside the checkout (CI clones main with shared/ next to it).
DESIGN = next(
    (path for path in (REPO_ROOT.parent / "shared" / "DESIGN.md",
                       REPO_ROOT / "shared" / "DESIGN.md") if path.is_file()),
    None,
)
_TABLE_ROW = re.compile(r"^\| `(outrider_\w+)`(?: / `(_\w+)`)?(?: / `(_\w+)`)? \|", re.MULTILINE)


def test_deploy_reads_only_contract_metrics() -> None:
    referenced = referenced_metric_families()
    assert len(referenced) >= 20
    assert referenced <= DESIGN_METRICS | ANNOUNCED_METRICS, sorted(
        referenced - DESIGN_METRICS - ANNOUNCED_METRICS
    )


def test_every_contract_metric_is_watched_somewhere() -> None:
    unwatched = (DESIGN_METRICS | ANNOUNCED_METRICS) - referenced_metric_families()
    assert unwatched == set(), sorted(unwatched)


@pytest.mark.skipif(DESIGN is None, reason="shared/DESIGN.md is not beside the checkout")
def test_contract_equals_the_design_table() -> None:
    assert DESIGN is not None
    names: set[str] = set()
    for match in _TABLE_ROW.finditer(DESIGN.read_text()):
        base = match[1]
        names.add(base)
        stem = base.rsplit("_", 1)[0]
        names |= {f"{stem}{suffix}" for suffix in (match[2], match[3]) if suffix}
    assert names == DESIGN_METRICS | PLANNED_METRICS
    assert not DESIGN_METRICS & PLANNED_METRICS


def test_design_table_parser_reads_a_triple_row() -> None:
    row = "| `outrider_drift_score` / `_threshold` / `_p_value` | gauge | model |\n"
    (match,) = _TABLE_ROW.finditer(row)
    assert match.groups() == ("outrider_drift_score", "_threshold", "_p_value")
