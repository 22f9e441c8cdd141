from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from service.probes.noise_stability import (
    clopper_pearson_lower,
    noisy_copies,
    stability_from_labels,
    stability_radius,
)


def test_all_copies_agreeing_gives_the_closed_form_radius() -> None:
    # With k = n the Clopper-Pearson lower bound is alpha ** (1 / n).
    n, sigma, alpha = 100, 0.5, 0.001
    radius = stability_radius(np.array([n]), n, sigma, alpha)
    expected = sigma * stats.norm.ppf(alpha ** (1.0 / n))
    assert radius[0] == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.5 * 1.50048, abs=1e-4)


def test_half_or_less_abstains_with_radius_zero() -> None:
    radius = stability_radius(np.array([50, 0, 55]), 100, 1.0, 0.001)
    assert radius[0] == 0.0 and radius[1] == 0.0 and radius[2] == 0.0
    assert clopper_pearson_lower(np.array([0]), 10, 0.05)[0] == 0.0


def test_linear_classifier_radius_matches_distance_to_boundary() -> None:
    # For f(x) = [w.x + b > 0], the smoothed classifier's exact radius is |w.x + b| / |w|;
    # with many copies the lower-bound radius approaches it from below.
    w, b = np.array([3.0, 4.0]), -1.0
    x = np.array([[1.0, 0.5], [-0.4, 0.1]])
    exact = np.abs(x @ w + b) / np.linalg.norm(w)
    sigma, n = 1.0, 20000
    copies = noisy_copies(x, sigma=sigma, n=n, seed=0, value_range=None)
    labels = (copies @ w + b > 0).astype(np.int64)
    result = stability_from_labels(labels, n, sigma=sigma, alpha=0.001)
    np.testing.assert_array_equal(result.top_class, [1, 0])
    assert np.all(result.radius <= exact + 0.01)
    np.testing.assert_allclose(result.radius, exact, atol=0.05)


def test_labels_must_split_into_copies() -> None:
    with pytest.raises(ValueError, match="7 labels do not split into copies of 3"):
        stability_from_labels(np.zeros(7), 3, sigma=1.0)
