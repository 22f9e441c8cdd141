"""Online detectors fed one row at a time end where one batch of the same rows ends.

One-row updates take a shortcut (no index arrays, no copy of an all-finite batch); the
detection index, score and threshold must not depend on how the stream was cut.
"""

from __future__ import annotations

import numpy as np
import pytest

import detectors


@pytest.mark.parametrize("name", ["RffMmdOnline", "CVMOnline"])
def test_one_row_at_a_time_equals_one_batch(name: str) -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(600, 3))
    stream = np.vstack([rng.normal(size=(150, 3)), rng.normal(loc=1.0, size=(60, 3))])
    make = getattr(detectors, name)
    one = make(reference, ert=100, window_size=10, n_bootstraps=200, seed=1)
    batch = make(reference, ert=100, window_size=10, n_bootstraps=200, seed=1)
    detections = []
    for row in stream:
        one.update(row)
        detections.append(one.drift_detected)
    batch.update(stream)
    assert any(detections)  # the shifted tail is detected
    assert one.detection_index == batch.detection_index == detections.index(True)
    assert one.score == pytest.approx(batch.score, rel=1e-12)
    assert one.threshold == batch.threshold


def test_a_non_finite_row_among_finite_ones_is_counted_and_skipped() -> None:
    rng = np.random.default_rng(6)
    det = detectors.RffMmdOnline(rng.normal(size=(600, 3)), ert=100, window_size=10, seed=1)
    rows = rng.normal(size=(5, 3))
    rows[2, 1] = np.nan
    det.update(rows)
    assert det.rejected == 1
    det.update(rng.normal(size=3))
    assert det.rejected == 1
