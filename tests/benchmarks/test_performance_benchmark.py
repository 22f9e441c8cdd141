"""Pieces of the performance benchmark that run fast: the NannyML switch and the chunks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("benchmarks"), "__file__", "") is None:
    del sys.modules["benchmarks"]

from benchmarks.nannyml_import import nannyml_module  # noqa: E402
from benchmarks.performance import ece_direct  # noqa: E402
from benchmarks.performance_data import concept_task, covariate_task  # noqa: E402
from detectors.performance_metrics import expected_calibration_error  # noqa: E402


def test_nannyml_telemetry_is_switched_off_and_absence_is_explained() -> None:
    module, reason = nannyml_module()
    assert os.environ["NML_DISABLE_USAGE_LOGGING"] == "1"
    assert (module is None) == (reason is not None)
    if module is None:
        assert reason is not None and "NannyML not importable" in reason


def test_synthetic_tasks_keep_validation_and_scored_chunks_apart() -> None:
    for task in (covariate_task(runs=1, chunk_size=100), concept_task(runs=1, chunk_size=100)):
        val = {c.shift for c in task.validation} - {"none"}
        scored = {c.shift for c in task.scored} - {"none"}
        assert val and scored and not val & scored
        assert task.reference_probabilities.shape == (2000,)
        for chunk in task.scored:
            assert chunk.probabilities.shape == chunk.labels.shape == (100,)


def test_direct_ece_loop_agrees_with_the_library() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=300)
    y = rng.integers(0, 4, size=300)
    assert ece_direct(p, y, 15, adaptive=False) == pytest.approx(
        expected_calibration_error(p, y).value, abs=1e-12
    )
