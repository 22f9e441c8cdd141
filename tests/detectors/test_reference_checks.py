"""Each reference check on small seeded cases: exact flagged rows, reasons, scores, summaries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.reference_checks import (
    CheckResult,
    activation_clustering,
    class_balance,
    find_duplicates,
    label_errors,
    near_radius,
    overlap,
    robust_outliers,
    seed_ood,
    spectral_signatures,
)
from detectors.reference_checks.activation_clustering import two_means


def _blobs(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


# --- duplicates ----------------------------------------------------------------------------


def test_duplicates_keep_the_first_row_of_each_group_and_flag_the_rest() -> None:
    x = _blobs(500, 16, 0)
    x[100] = x[3]  # exact
    x[200] = x[3]  # exact, same group
    x[300] = x[7] + 1e-3  # near
    x[400] = x[300] + 1e-3  # near to a near copy: joins the group of 7 (transitively)
    x[450] = -x[450] * 0.0 + x[9]  # exact
    radius, median = near_radius(x, 0.05)
    result = find_duplicates(x, radius, median_nn_distance=median)
    assert result.rows.tolist() == [100, 200, 300, 400, 450]
    assert result.reasons == (
        "exact_duplicate",
        "exact_duplicate",
        "near_duplicate",
        "near_duplicate",
        "exact_duplicate",
    )
    assert result.related.tolist() == [3, 3, 7, 7, 9]
    assert result.scores[0] == 1.0 and 0.0 < result.scores[2] < 1.0
    assert result.summary["exact_duplicate_rows"] == 3
    assert result.summary["near_duplicate_rows"] == 2
    assert result.summary["duplicate_groups"] == 3
    assert result.summary["largest_group"] == 3
    assert result.status == "ok"  # 1 % of rows: not above the 1 % warn share
    assert find_duplicates(x, radius, warn_share=0.005).status == "flagged"


def test_near_radius_is_a_fraction_of_the_median_nearest_neighbour_distance() -> None:
    x = np.arange(10, dtype=float).reshape(-1, 1) * 2.0  # every nearest neighbour at 2
    x = np.concatenate([x, x[:3]])  # duplicates do not count as neighbours
    assert near_radius(x, 0.1) == (pytest.approx(0.2), pytest.approx(2.0))


def test_no_duplicates_in_distinct_rows() -> None:
    x = _blobs(300, 8, 1)
    result = find_duplicates(x, near_radius(x, 0.05)[0])
    assert len(result.rows) == 0 and result.status == "ok"
    assert result.row_scores is not None and not result.row_scores.any()


# --- leakage -------------------------------------------------------------------------------


def test_probe_and_training_overlap_name_the_matched_rows() -> None:
    rng = np.random.default_rng(2)
    reference, probes, training = (
        rng.normal(size=(400, 6)),
        rng.normal(size=(30, 6)),
        rng.normal(size=(60, 6)),
    )
    reference[[5, 50, 150]] = probes[[0, 29, 0]]
    reference[250] = probes[4] + 1e-4
    reference[300] = training[11]
    radius = 0.01
    probe = overlap(reference, probes, radius)
    assert probe.rows.tolist() == [5, 50, 150, 250]
    assert probe.related.tolist() == [0, 29, 0, 4]
    assert probe.reasons[-1] == "probe_overlap_near" and probe.status == "flagged"
    assert probe.summary["other_rows_matched"] == 3
    train = overlap(reference, training, radius, check="training_leakage")
    assert train.rows.tolist() == [300] and train.reasons == ("training_overlap_exact",)
    cross = overlap(probes, training, radius, check="probe_training_leakage")
    assert cross.subject == "probe_suites" and len(cross.rows) == 0 and cross.status == "ok"
    with pytest.raises(ValueError, match="check must be one of"):
        overlap(reference, probes, radius, check="nope")
    with pytest.raises(ValueError, match="probe-suite rows have 5 columns"):
        overlap(reference, probes[:, :5], radius)


# --- outliers ------------------------------------------------------------------------------


def test_seed_ood_flags_rows_unlike_the_seed_at_its_false_positive_rate() -> None:
    rng = np.random.default_rng(3)
    seed_rows = rng.normal(size=(2000, 10))
    reference = rng.normal(size=(1000, 10))
    reference[[10, 20, 30]] += 8.0
    result = seed_ood(reference, seed_rows, false_positive_rate=0.005)
    assert {10, 20, 30} <= set(result.rows.tolist())
    assert len(result.rows) <= 3 + 10  # at most ~0.5 % of 1000 clean rows, with slack
    assert result.scores.min() > 1.0 and result.reasons[0] == "ood_vs_seed"
    assert result.status == "ok"  # 0.3-1.3 % flagged, under the 2 % warn share


def test_robust_outliers_flag_planted_far_rows_and_name_the_method() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 12))
    x[[5, 500]] = 30.0  # far along every axis: both methods see them
    x[900, :] = 0.0
    x[900, 0] = 25.0  # far along one axis
    result = robust_outliers(x, knn_z_max=4.0, mahalanobis_z_max=6.0)
    assert result.rows.tolist() == [5, 500, 900]
    # at the defaults (chosen on digit images) a Gaussian's tail row joins them
    assert robust_outliers(x).rows.tolist() == [5, 306, 500, 900]
    assert set(result.reasons) <= {"knn_distance", "robust_mahalanobis"}
    assert result.summary["per_class_mcd"] is False


def test_robust_outliers_fit_one_ellipsoid_per_class_when_classes_are_given() -> None:
    # Two classes far apart: one ellipsoid around both would call a whole class outlying.
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(size=(800, 6)), rng.normal(size=(200, 6)) + 12.0])
    groups = np.r_[np.zeros(800), np.ones(200)].astype(np.int64)
    x[850] = 12.0 + np.r_[9.0, np.zeros(5)]
    result = robust_outliers(x, groups)
    assert result.rows.tolist() == [850]
    assert result.summary["per_class_mcd"] is True


def test_outlier_checks_skip_tiny_references() -> None:
    assert robust_outliers(np.zeros((5, 3))).status == "skipped"
    assert seed_ood(np.zeros((5, 3)), np.zeros((5, 3))).status == "skipped"


# --- class balance -------------------------------------------------------------------------


def test_class_balance_p_value_is_scipys_chi_square() -> None:
    classes = np.array([0] * 50 + [1] * 30 + [2] * 20)
    priors = np.array([0.4, 0.4, 0.2])
    result = class_balance(classes, priors, n_classes=3, min_effect=0.05)
    want = stats.chisquare([50, 30, 20], [40, 40, 20])
    assert result.summary["p_value"] == pytest.approx(want.pvalue, rel=1e-12)
    assert result.summary["total_variation"] == pytest.approx(0.1)
    assert result.summary["most_over_represented"] == 0
    assert result.status == "ok"  # p = 0.07: not significant at 1e-3
    assert len(result.rows) == 0 and result.row_scores is None


def test_class_balance_flags_only_a_significant_and_large_imbalance() -> None:
    big = np.repeat([0, 1], [51_000, 49_000])
    small_effect = class_balance(big, np.array([0.5, 0.5]), n_classes=2)
    assert small_effect.summary["p_value"] < 1e-3 and small_effect.status == "ok"
    impossible = class_balance(np.array([0, 0, 2]), np.array([0.5, 0.5, 0.0]), n_classes=3)
    assert impossible.summary["p_value"] == 0.0 and impossible.status == "flagged"
    shares_only = class_balance(np.array([0, 1, 1]), None, n_classes=2)
    assert shares_only.status == "ok"
    assert shares_only.summary["observed_share"] == pytest.approx([1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="sum to 1"):
        class_balance(big, np.array([0.5, 0.6]), n_classes=2)
    with pytest.raises(ValueError, match="priors must have 3 entries"):
        class_balance(big, np.array([0.5, 0.5]), n_classes=3)


# --- label errors --------------------------------------------------------------------------


def _confident_learning_by_hand(p: np.ndarray, y: np.ndarray) -> list[int]:
    k = p.shape[1]
    t = [p[y == j, j].mean() for j in range(k)]
    out = []
    for i in range(len(y)):
        candidates = [j for j in range(k) if p[i, j] >= t[j]]
        if candidates and max(candidates, key=lambda j: p[i, j]) != y[i]:
            out.append(i)
    return out


def test_label_errors_match_confident_learning_by_hand() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(3, size=300)
    logits = rng.normal(size=(300, 3))
    logits[np.arange(300), y] += 2.0
    flipped = rng.choice(300, 30, replace=False)
    y_noisy = y.copy()
    y_noisy[flipped] = (y[flipped] + 1) % 3
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = label_errors(p, y_noisy)
    assert result.rows.tolist() == _confident_learning_by_hand(p, y_noisy)
    assert len(set(result.rows) & set(flipped)) / len(result.rows) > 0.6
    np.testing.assert_array_equal(result.related, p[result.rows].argmax(axis=1))
    margin = np.sort(p, axis=1)
    assert result.row_scores is not None
    clean_top = np.flatnonzero(p.argmax(axis=1) == y_noisy)
    np.testing.assert_allclose(
        result.row_scores[clean_top], margin[clean_top, -2] - margin[clean_top, -1]
    )


def test_label_errors_refuse_logits_and_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match="not logits"):
        label_errors(np.array([[2.0, 1.0], [0.5, 0.5]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="non-negative"):
        label_errors(np.array([[2.0, -1.0], [0.5, 0.5]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must be < 2"):
        label_errors(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 2]))
    with pytest.raises(ValueError, match="integer class indices"):
        label_errors(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0.0, 0.5]))


# --- poisoning signatures ------------------------------------------------------------------


def _poisoned_class(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three classes of 300 rows of ReLU features; 30 rows of class 2 carry a backdoor.

    A network that learned a trigger has units that fire for it and stay at zero for the
    clean rows of the target class; unit 15 plays that part here.
    """
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(3), 300).astype(np.int64)
    x = np.maximum(rng.normal(size=(900, 16)) + np.eye(16)[groups] * 4.0, 0.0)
    x[:, 15] = 0.0
    poisoned = np.sort(rng.choice(np.arange(600, 900), 30, replace=False))
    x[poisoned, 15] = 6.0 + rng.normal(size=30)
    return x, groups, poisoned


def test_spectral_signatures_flag_the_rows_of_a_learned_trigger() -> None:
    x, groups, poisoned = _poisoned_class(7)
    result = spectral_signatures(x, groups)
    assert result.rows.tolist() == poisoned.tolist()
    assert result.status == "flagged" and result.summary["flagged_classes"] == [2]
    np.testing.assert_array_equal(np.sort(result.top_rows(30)), poisoned)


def test_tran_et_al_without_whitening_rank_a_dominant_shift_first() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 16))
    shifted = np.sort(rng.choice(300, 30, replace=False))
    x[shifted] += 10.0 * np.eye(16)[9]
    result = spectral_signatures(x, np.zeros(300, dtype=np.int64), whiten=False, z_max=6.0)
    assert result.rows.tolist() == shifted.tolist()
    assert result.summary["whiten"] is False


def test_activation_clustering_flags_the_small_cluster_of_the_poisoned_class() -> None:
    x, groups, poisoned = _poisoned_class(8)
    result = activation_clustering(x, groups)
    assert result.rows.tolist() == poisoned.tolist()
    assert result.summary["flagged_classes"] == [2]
    classes = result.summary["classes"]
    assert isinstance(classes, dict)
    assert classes["2"]["relative_size"] == pytest.approx(0.1)
    assert not classes["0"]["poisoned"]
    np.testing.assert_array_equal(np.sort(result.top_rows(30)), poisoned)


def test_poisoning_checks_pass_clean_classes() -> None:
    x, groups, poisoned = _poisoned_class(9)
    x[poisoned, 15] = 0.0
    assert spectral_signatures(x, groups).status == "ok"
    assert activation_clustering(x, groups).status == "ok"


def test_two_means_separates_two_blobs() -> None:
    rng = np.random.default_rng(10)
    x = np.concatenate([rng.normal(size=(50, 2)), rng.normal(size=(20, 2)) + 10.0])
    assignment, centroids = two_means(x, rng)
    assert len(set(assignment[:50])) == 1 and len(set(assignment[50:])) == 1
    assert assignment[0] != assignment[-1]
    np.testing.assert_allclose(centroids[assignment[-1]], x[50:].mean(axis=0))


# --- the result type -----------------------------------------------------------------------


def test_check_result_refuses_inconsistent_rows_and_unknown_reasons() -> None:
    empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0)
    with pytest.raises(ValueError, match="one entry per flagged row"):
        CheckResult("c", "ok", "reference", 3, np.array([1]), (), empty_f, empty_i, None)
    with pytest.raises(ValueError, match="unknown reason codes"):
        CheckResult(
            "c",
            "ok",
            "reference",
            3,
            np.array([1]),
            ("odd",),
            np.ones(1),
            np.ones(1, dtype=np.int64),
            None,
        )
    with pytest.raises(ValueError, match="status must be one of"):
        CheckResult("c", "bad", "reference", 0, empty_i, (), empty_f, empty_i, None)  # type: ignore[arg-type]


def test_top_rows_rank_by_score_then_index() -> None:
    result = CheckResult(
        "c",
        "ok",
        "reference",
        5,
        np.empty(0, dtype=np.int64),
        (),
        np.empty(0),
        np.empty(0, dtype=np.int64),
        np.array([0.5, 2.0, 0.5, 3.0, 2.0]),
    )
    assert result.top_rows(4).tolist() == [3, 1, 4, 0]
    assert result.top_rows(0).tolist() == []
