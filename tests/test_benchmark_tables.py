"""README.md's and detectors/README.md's benchmark tables are what scripts/benchmark_tables.py
renders from the committed JSON in benchmarks/results/: a table cannot drift from its run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "benchmark_tables", ROOT / "scripts" / "benchmark_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("document", ["README.md", "detectors/README.md"])
def test_generated_tables_equal_the_committed_json(tables: ModuleType, document: str) -> None:
    text = (ROOT / document).read_text()
    assert tables.BLOCK.search(text), f"{document} has no generated block"
    assert tables.refresh(text) == text, (
        f"{document}: tables differ from benchmarks/results/*.json; "
        "run python scripts/benchmark_tables.py"
    )


def test_every_block_in_the_documents_has_a_renderer(tables: ModuleType) -> None:
    names = {
        m.group("name")
        for doc in tables.DOCUMENTS
        for m in tables.BLOCK.finditer(doc.read_text())
    }
    assert names <= set(tables.RENDERERS)
    assert {"data-plane", "serve-profile", "failing-loudly", "ood"} <= names


def test_a_block_is_replaced_whole_and_a_missed_target_shows_its_error(
    tables: ModuleType, tmp_path: Path
) -> None:
    payload = {
        "benchmark": "detectors_speed", "quick": True, "commit": "abc1234",
        "machine": {"cpu_count": 2, "load_average": [3.0, 2.0, 1.0]},
        "results": {"alibi_skipped": "not importable", "settings": {}},
        "targets": [{"name": "KS speedup", "value": float("nan"), "limit": 20.0,
                     "comparison": ">=", "met": False, "error": "not importable"}],
    }
    (tmp_path / "detectors_speed.json").write_text(json.dumps(payload))
    text = ("before\n<!-- benchmark-table: detectors-speed -->\nold figure 99x\n"
            "<!-- /benchmark-table: detectors-speed -->\nafter\n")
    fresh = tables.refresh(text, tmp_path)
    assert "old figure" not in fresh
    assert fresh.startswith("before\n") and fresh.endswith("after\n")
    assert "quick run at abc1234" in fresh
    assert "| KS speedup | not measured: not importable | >= 20.000 | **missed** |" in fresh
