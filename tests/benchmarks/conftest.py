"""Benchmark smoke tests: import the real `benchmarks` and `detectors` packages."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/conftest.py puts tests/ on sys.path, where tests/benchmarks looks like a namespace
# package called "benchmarks" that would shadow the real one; put the repository root first.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
for _name in ("benchmarks", "detectors"):
    _loaded = sys.modules.get(_name)
    if _loaded is not None and getattr(_loaded, "__file__", None) is None:
        del sys.modules[_name]
