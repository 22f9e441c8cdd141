"""Detector tests: import the real library, and run tests marked slow only with ``-m slow``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/conftest.py puts tests/ on sys.path, where this folder looks like a namespace
# package called "detectors" that shadows the library; put the repository root first.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
_loaded = sys.modules.get("detectors")
if _loaded is not None and getattr(_loaded, "__file__", None) is None:
    del sys.modules["detectors"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "tests/detectors" in str(item.path) and item.get_closest_marker("slow"):
            item.add_marker(skip)
