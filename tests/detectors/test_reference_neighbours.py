"""The geometry under the reference checks: hashing, projections, neighbour searches, MCD."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import MinCovDet

from detectors.reference_checks.neighbours import (
    exact_matches,
    exact_representatives,
    fit_projection,
    kth_neighbour_distance,
    near_pairs,
    nearest_neighbour_distances,
)
from detectors.reference_checks.outliers import conformal_quantile
from detectors.reference_checks.robust_statistics import fast_mcd, robust_z


def test_exact_representatives_group_identical_rows_and_treat_minus_zero_as_zero() -> None:
    x = np.array([[1.0, 0.0], [2.0, 3.0], [1.0, -0.0], [2.0, 3.0], [2.0, 3.0000001]])
    assert exact_representatives(x).tolist() == [0, 1, 0, 1, 4]


def test_exact_matches_point_at_the_first_identical_row_of_the_other_set() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    other = np.array([[9.0, 9.0], [5.0, 6.0], [1.0, 2.0], [5.0, 6.0]])
    assert exact_matches(x, other).tolist() == [2, -1, 1]


def test_near_pairs_equal_brute_force_within_the_radius() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 20))
    # 40 planted pairs at distances from 0.01 to 0.4 of a radius of 0.5
    left = rng.choice(600, 40, replace=False)
    right = np.setdiff1d(np.arange(600), left)[:40]
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        step = rng.normal(size=20)
        x[b] = x[a] + step / np.linalg.norm(step) * (0.01 + 0.01 * i)
    pairs = near_pairs(x, radius=0.5, seed=0)
    brute = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    want = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(brute <= 0.5, 1)), strict=True)}
    got = set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))
    assert got == want
    assert len(want) == 40
    np.testing.assert_allclose(pairs.distance, brute[pairs.left, pairs.right], rtol=1e-12)


def test_near_pairs_between_two_sets_index_each_side() -> None:
    rng = np.random.default_rng(4)
    x, other = rng.normal(size=(300, 8)), rng.normal(size=(50, 8))
    x[10] = other[7] + 1e-3
    x[20] = other[7] - 1e-3
    pairs = near_pairs(x, radius=0.01, seed=1, other=other)
    assert sorted(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True)) == [(10, 7), (20, 7)]


def test_near_pairs_handle_one_dense_bucket_by_blocks() -> None:
    # 200 rows within a tiny ball share every bucket: the large-bucket path must pair them all.
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(size=(200, 4)) * 1e-4, rng.normal(size=(50, 4)) + 10])
    pairs = near_pairs(x, radius=0.01, seed=0)
    assert len(pairs) == 200 * 199 // 2


def test_kth_neighbour_distance_skips_the_row_itself() -> None:
    bank = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]], dtype=np.float32)
    d = kth_neighbour_distance(bank, bank, 1, np.arange(3, dtype=np.int64))
    np.testing.assert_allclose(d, [1.0, 1.0, 2.0], rtol=1e-6)
    d2 = kth_neighbour_distance(np.array([[0.0, 4.0]], dtype=np.float32), bank, 2)
    np.testing.assert_allclose(d2, [np.sqrt(17.0)], rtol=1e-6)


def test_nearest_neighbour_distances_are_exact_in_float64() -> None:
    x = np.array([[1e6, 0.0], [1e6, 1e-3], [0.0, 0.0]])
    np.testing.assert_allclose(nearest_neighbour_distances(x, np.array([0, 2])), [1e-3, 1e6])


def test_projection_keeps_distances_off_the_subspace() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 50))  # rank 3
    projection = fit_projection(x, 3, rng)
    inside = projection.sketch(x[:5])
    np.testing.assert_allclose(inside[:, 3:], 0.0, atol=1e-6)
    # two rows that leave the subspace in different directions stay apart
    off = x[:2] + np.eye(50)[[10, 20]] * 5.0
    sketch = projection.sketch(off)
    gap = np.linalg.norm(sketch[0, 3:] - sketch[1, 3:])
    assert 3.0 < gap < 11.0  # true distance sqrt(50) = 7.1, within the sketch's error


def test_robust_z_ignores_a_minority_of_outliers() -> None:
    values = np.r_[np.arange(11, dtype=float), 1000.0]
    z = robust_z(values)
    assert z[5] == pytest.approx((5.0 - 5.5) / (3.0 * 1.482602218505602), rel=1e-9)
    assert z[-1] > 100
    assert robust_z(np.ones(5)).tolist() == [0.0] * 5


def test_fast_mcd_resists_a_fifth_of_contamination_like_sklearn() -> None:
    rng = np.random.default_rng(7)
    clean = rng.normal(size=(400, 4))
    x = np.concatenate([clean, rng.normal(size=(100, 4)) * 0.5 + 8.0])
    fit = fast_mcd(x, seed=0)
    theirs = MinCovDet(random_state=0).fit(x)
    assert np.abs(fit.location).max() < 0.2  # the sample mean is at 1.6
    np.testing.assert_allclose(fit.location, theirs.location_, atol=0.05)
    np.testing.assert_allclose(fit.covariance, theirs.covariance_, atol=0.1)
    assert not fit.support[400:].any()


def test_conformal_quantile_rank() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores
    assert conformal_quantile(scores, 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.99) == 19.0  # beyond m: the largest
