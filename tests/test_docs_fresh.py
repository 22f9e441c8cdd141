"""docs/configuration.md and docs/metrics.md are what scripts/generate_docs.py makes now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_generated_references_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/generate_docs.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=ROOT,
    )
    for name in ("configuration.md", "metrics.md"):
        fresh = (tmp_path / name).read_text()
        committed = (ROOT / "docs" / name).read_text()
        assert fresh == committed, f"docs/{name} is stale: run python scripts/generate_docs.py"
