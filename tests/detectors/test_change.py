"""CUSUM, Page-Hinkley and ADWIN on seeded scalar streams: exact detection indices."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import ADWIN, CUSUM, PageHinkley


def _stream(seed: int, n: int = 1000, change: int = 600, shift: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[change:] += shift
    return x


def _detections(det, values: np.ndarray) -> list[int]:
    hits = []
    for i, v in enumerate(values):
        if det.update(float(v)).drift_detected:
            hits.append(i)
    return hits


def test_cusum_golden_indices() -> None:
    ref = np.random.default_rng(100).normal(size=1000)
    hits = _detections(CUSUM(ref), _stream(1))
    # one false alarm at 590 before the change at 600, then a restart and re-detection
    # every ~15 values while the shift lasts
    assert hits[:6] == GOLDEN_CUSUM_FIRST and len(hits) == 33


def test_cusum_statistic_by_hand() -> None:
    det = CUSUM([-1.0, 1.0], delta=1.0, h=100.0)  # mean 0, sd sqrt(2)
    det.update([np.sqrt(2) * 2, np.sqrt(2) * 2, -np.sqrt(2)])
    # S+ : 0 -> 1.5 -> 3.0 -> 1.5 ; S- : 0 -> 0 -> 0 -> 0.5
    assert det.score == pytest.approx(1.5)


def test_page_hinkley_golden_indices_up_and_down() -> None:
    ref = np.random.default_rng(100).normal(size=1000)
    up = _detections(PageHinkley(ref), _stream(2))
    down = _detections(PageHinkley(ref, mode="down"), _stream(2, shift=-1.0))
    only_up = _detections(PageHinkley(ref, mode="up"), _stream(2, shift=-1.0))
    assert (up, down, only_up) == GOLDEN_PH


def test_adwin_golden_indices_and_window_shrinks() -> None:
    det = ADWIN(np.random.default_rng(100).normal(size=500))
    hits = _detections(det, _stream(3))
    assert hits == GOLDEN_ADWIN
    assert det.width < 1500  # the pre-change values were dropped


def test_adwin_window_mean_and_variance_track_numpy() -> None:
    x = np.random.default_rng(4).normal(loc=2.0, scale=3.0, size=5000)
    det = ADWIN(x[:10]).update(x[10:])
    assert det.width == 5000 and det.detection_index is None
    assert det.mean == pytest.approx(x.mean(), rel=1e-12)
    assert det._variance / det.width == pytest.approx(x.var(), rel=1e-9)


def test_adwin_memory_does_not_grow_with_the_stream() -> None:
    det = ADWIN([0.0, 1.0])
    sizes = set()
    for _ in range(5):
        det.update(np.random.default_rng(5).normal(size=20_000))
        sizes.add(sum(v.nbytes for v in det.state_dict().values() if isinstance(v, np.ndarray)))
    assert len(sizes) == 1


GOLDEN_CUSUM_FIRST = [590, 604, 616, 620, 628, 641]
GOLDEN_PH = ([624], [620], [])  # change at 600; "up" ignores a decrease
GOLDEN_ADWIN = [639, 671, 703]  # cuts at clock ticks (every 32 values)
