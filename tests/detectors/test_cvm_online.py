"""CVMOnline's fast paths give the same numbers as the plain ones, to the bit."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import CVMOnline
from detectors.cvm_statistics import (
    cvm_from_counts,
    cvm_from_u,
    cvm_null_moments,
    sliding_window_sums,
)


def _tied_reference_and_stream() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    # one decimal: many ties within the reference, and stream values equal to reference ones
    ref = np.round(rng.normal(size=(200, 3)), 1)
    stream = np.round(rng.normal(size=(90, 3)), 1)
    stream[::7] = ref[:13]  # whole rows copied from the reference
    stream[60:, 0] += 0.8
    return ref, stream


def test_single_rows_give_the_statistics_of_one_batch_with_ties() -> None:
    ref, stream = _tied_reference_and_stream()
    one_by_one = CVMOnline(ref, ert=60, window_sizes=(3, 7, 12), n_bootstraps=100, seed=0)
    batch = CVMOnline(ref, ert=60, window_sizes=(3, 7, 12), n_bootstraps=100, seed=0)
    scores = []
    for row in stream:
        scores.append(one_by_one.update(row).score)
    for end in range(2, stream.shape[0] + 1):
        batch.reset()
        batch.update(stream[:end])  # rows 0..end-1 as one batch: the multi-row path
        assert batch.score == scores[end - 1], end
    assert np.isfinite(scores[11:]).all() and len(set(scores[11:])) > 40  # not vacuous
    assert one_by_one.detection_index == batch.detection_index
    for key in ("_history", "_n_seen", "_score", "_threshold"):
        np.testing.assert_array_equal(
            batch.state_dict()[key], one_by_one.state_dict()[key], err_msg=key
        )


def test_rows_after_a_state_round_trip_match_a_detector_that_never_stopped() -> None:
    ref, stream = _tied_reference_and_stream()
    det = CVMOnline(ref, ert=60, window_sizes=(3, 7), n_bootstraps=100, seed=0)
    det.update(stream[:30])
    # a checkpoint stores the reference row-major; loading must still find each column
    state = {
        k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v
        for k, v in det.state_dict().items()
    }
    resumed = CVMOnline(ert=60, window_sizes=(3, 7), n_bootstraps=100, seed=0)
    resumed.load_state_dict(state)
    for row in stream[30:]:
        assert resumed.update(row).score == det.update(row).score


def test_thresholds_are_pinned_to_the_bit() -> None:
    rng = np.random.default_rng(7)
    ref = np.round(rng.normal(size=(300, 2)), 1)
    det = CVMOnline(ref, ert=100, window_sizes=(5, 10), n_bootstraps=200, seed=0)
    assert det.thresholds.tolist() == GOLDEN_THRESHOLDS


def _brute_force_sums(counts: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    windows = np.lib.stride_tricks.sliding_window_view(counts, w, axis=0)  # (., ..., w)
    ordered = np.sort(windows, axis=-1).astype(np.int64)
    weights = 2 * np.arange(1, w + 1) - 1
    return (ordered * weights).sum(axis=-1), (ordered * ordered).sum(axis=-1)


@pytest.mark.parametrize("n_ref", [9, 2**30])  # 2**30: the pair sums need int64
def test_sliding_window_sums_equal_sorting_every_window(n_ref: int) -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 10, size=(40, 3, 5)) * (n_ref // 9)  # ties everywhere
    sizes = (2, 5, 11)
    got = list(sliding_window_sums(counts, sizes, n_ref))
    assert [w for w, _, _ in got] == list(sizes)
    for w, q, s2 in got:
        want_q, want_s2 = _brute_force_sums(counts, w)
        np.testing.assert_array_equal(q, want_q)
        np.testing.assert_array_equal(s2, want_s2)


def test_the_largest_t_is_t_of_the_largest_u() -> None:
    rng = np.random.default_rng(2)
    n_ref, m = 1000, 20
    counts = np.sort(rng.integers(0, n_ref + 1, size=(5000, 4, m)).astype(float), axis=-1)
    t = cvm_from_counts(counts, n_ref)
    mean, sd = cvm_null_moments(n_ref, m)
    u = n_ref * (m * m * n_ref - counts @ (2.0 * np.arange(1, m + 1) - 1.0))
    u += m * (counts * counts).sum(axis=-1)
    assert np.array_equal(
        (cvm_from_u(u.max(axis=1), n_ref, m) - mean) / sd, ((t - mean) / sd).max(axis=1)
    )


# thresholds of the implementation before the fast paths (per-step loop), same seed
GOLDEN_THRESHOLDS = [
    float("inf"),
    float("inf"),
    float("inf"),
    float("inf"),
    4.491918744520061,
    3.7265030208799375,
    2.7461922423107388,
    2.474394117542958,
    4.090904196358947,
    5.399355711794987,
    4.440480380649247,
    3.390234264095981,
    3.8839172133233424,
    3.990094192911553,
    4.46692090751956,
    4.012318330955336,
    4.266047264079047,
    4.212569199230996,
    3.4142760799145004,
    4.126624842204534,
    4.375869215366433,
]
