"""Detector shapes the pipeline runs: OOD-rate windows, time windows, throttled error logs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from structlog.testing import capture_logs

from detectors.base import FloatArray, OODScorer
from service.modelserver.server import ModelServer
from service.monitor.error_counts import ThrottledCounter
from service.monitor.model_versions import upstream_version_lookup
from service.monitor.monitored_detector import OodRateWindow


class _Distance(OODScorer):
    """Distance from the reference mean: enough of a scorer to test the window around it."""

    _FITTED_KEYS = ("_mean",)

    def _fit(self, reference: FloatArray) -> None:
        self._mean = reference.mean(axis=0)

    def _score_rows(self, rows: FloatArray) -> FloatArray:
        return np.asarray(np.linalg.norm(rows - self._mean, axis=1))


def _scorer() -> _Distance:
    rng = np.random.default_rng(0)
    return _Distance(target_fpr=0.05, seed=0).fit(rng.normal(size=(500, 2)))


def test_ood_window_ratio_and_binomial_p_value_exact() -> None:
    scorer = _scorer()
    window = OodRateWindow(scorer, window=20, seconds=None, alpha=0.01)
    threshold = scorer.threshold
    assert threshold is not None
    inside = np.zeros((15, 2))
    outside = np.full((5, 2), 10.0)
    window.update(inside, now=0.0)
    half = window.snapshot(0.0)
    assert (half.ood_ratio, half.window_fill, half.drift_detected) == (0.0, 0.75, False)
    window.update(outside, now=1.0)
    snap = window.snapshot(1.0)
    assert snap.ood_ratio == 0.25
    assert snap.window_fill == 1.0
    assert snap.p_value == pytest.approx(float(stats.binom.sf(4, 20, 0.05)), rel=1e-12)
    assert snap.drift_detected is True
    assert snap.threshold == threshold


def test_ood_time_window_forgets_old_rows_and_round_trips() -> None:
    window = OodRateWindow(_scorer(), window=None, seconds=10.0, cap=100)
    window.update(np.full((4, 2), 10.0), now=0.0)
    window.update(np.zeros((4, 2)), now=8.0)
    assert window.snapshot(9.0).ood_ratio == 0.5
    assert window.snapshot(12.0).ood_ratio == 0.0  # the OOD rows are older than 10 s
    copy = OodRateWindow(_scorer(), window=None, seconds=10.0, cap=100)
    copy.load_state_dict(window.state_dict())
    assert copy.snapshot(9.0) == window.snapshot(9.0)
    other = OodRateWindow(_scorer(), window=7, seconds=None)
    with pytest.raises(ValueError, match="expected \\(7,\\)"):
        other.load_state_dict(window.state_dict())


def test_throttled_counter_logs_once_a_minute_per_key() -> None:
    now = [0.0]
    counter = ThrottledCounter("signal_error", ("model", "signal", "reason"),
                               clock=lambda: now[0])
    with capture_logs() as logs:
        for t in (0.0, 10.0, 59.0, 60.0, 61.0):
            now[0] = t
            counter.inc(("m", "s", "missing_tensor"), detail="x")
        counter.inc(("m", "s", "non_finite"))
    assert [(e["reason"], e["total"]) for e in logs] == [
        ("missing_tensor", 1.0), ("missing_tensor", 4.0), ("non_finite", 1.0)
    ]
    assert counter.value("m", "s", "missing_tensor") == 5.0
    with pytest.raises(ValueError, match="expected labels"):
        counter.inc(("m",))


async def test_version_lookup_asks_the_upstream(model_server: ModelServer,
                                                tmp_path: Path) -> None:
    lookup = upstream_version_lookup(f"127.0.0.1:{model_server.port}", timeout=5.0)
    assert await asyncio.to_thread(lookup, "demo") == "1"
