"""Top mean shifts: in reference standard deviations, floored for constant dimensions."""

from __future__ import annotations

import numpy as np

from service.monitor.mean_shift import SPREAD_FLOOR, MeanShifts, floored_spread


def _reference(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(0.0, 2.0, size=(500, 4))
    rows[:, 0] = 0.0  # a border pixel: always 0 in the reference
    return rows


def test_a_constant_reference_dimension_gives_a_finite_shift() -> None:
    """Was |0.5 - 0| / (0 + 1e-12) = 5e11 reference standard deviations."""
    reference = _reference()
    shifts = MeanShifts(reference)
    window = np.random.default_rng(1).normal(0.0, 2.0, size=(100, 4))
    window[:, 0] = 0.5
    typical = float(np.median(reference[:, 1:].std(axis=0)))
    top = shifts.top(window, 2)
    assert top[0][0] == 0
    assert top[0][1] == round(0.5 / (SPREAD_FLOOR * typical), 6)
    assert 20.0 < top[0][1] < 30.0  # about 25 typical spreads, not 5e11


def test_varying_dimensions_are_in_their_own_standard_deviations() -> None:
    reference = _reference()
    window = reference[:100] + np.array([0.0, 3.0, 0.0, 0.0])
    shift = MeanShifts(reference).shifts(window)
    expected = abs(window[:, 1].mean() - reference[:, 1].mean()) / reference[:, 1].std()
    assert abs(shift[1] - expected) < 1e-12
    assert shift[0] == 0.0


def test_every_dimension_constant_floors_at_one() -> None:
    assert floored_spread(np.ones((5, 3))).tolist() == [SPREAD_FLOOR] * 3
    assert MeanShifts(np.ones((5, 2))).top(np.full((2, 2), 1.5), 1) == ((0, 50.0),)
    assert MeanShifts(np.ones((5, 2))).top(np.empty((0, 2)), 3) == ()
