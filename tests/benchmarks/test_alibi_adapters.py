"""benchmarks.alibi_adapters: alibi-detect behind our API (skipped where it is not installed)."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from scipy import stats

HAVE_ALIBI = importlib.util.find_spec("alibi_detect") is not None
needs_alibi = pytest.mark.skipif(not HAVE_ALIBI, reason="alibi-detect not installed")


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.mark.skipif(HAVE_ALIBI, reason="alibi-detect is installed")
def test_missing_alibi_names_the_extra() -> None:
    from benchmarks.alibi_adapters import AlibiDetector

    with pytest.raises(ImportError, match=r"outrider\[alibi\]"):
        AlibiDetector("KSDrift")


def test_unknown_detector_lists_valid_names() -> None:
    from benchmarks.alibi_adapters import AlibiDetector, AlibiOnlineDetector

    with pytest.raises(ValueError, match=r"detector must be one of \['KSDrift'"):
        AlibiDetector("KSDrif")
    with pytest.raises(ValueError, match=r"'MMDDriftOnline', 'LSDDDriftOnline', 'CVMDriftOnline'"):
        AlibiOnlineDetector("FETDriftOnline")


@needs_alibi
def test_ks_adapter_matches_scipy_asymptotic_p_values_and_window_timing() -> None:
    from benchmarks.alibi_adapters import AlibiDetector
    from detectors import KSDrift

    rng = np.random.default_rng(1)  # seed 0 gives a false alarm in the first window
    ref = rng.normal(size=(300, 3))
    stream = np.vstack([rng.normal(size=(100, 3)), rng.normal(loc=0.8, size=(100, 3))])
    ours = KSDrift(ref, window_size=50, seed=0)
    theirs = AlibiDetector("KSDrift", ref, window_size=50, seed=0)
    detections = []
    tests_seen = 0
    for start in range(0, 200, 25):
        chunk = stream[start : start + 25]
        ours.update(chunk)
        theirs.update(chunk)
        detections.append((ours.drift_detected, theirs.drift_detected))
        assert theirs.n_tests == ours.n_tests
        assert theirs.n_seen == ours.n_seen == start + 25
        if theirs.n_tests > tests_seen:
            tests_seen = theirs.n_tests
            window = stream[max(0, start + 25 - 50) : start + 25]
            p = [stats.ks_2samp(ref[:, j], window[:, j], method="asymp").pvalue for j in range(3)]
            assert theirs.p_value == pytest.approx(min(1.0, 3 * min(p)), abs=1e-9)
            assert theirs.score == pytest.approx(ours.score, abs=1e-6)  # alibi: float32
            assert theirs.threshold is None  # alibi-detect gives no critical D
    assert theirs.detection_index == ours.detection_index == 149
    assert [t for _, t in detections] == [False, False, False, False, False, True, True, True]


@needs_alibi
def test_two_sample_adapter_rejects_nan_rows_and_round_trips_state() -> None:
    from benchmarks.alibi_adapters import AlibiDetector

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 2))
    det = AlibiDetector("KSDrift", ref, window_size=20, seed=0)
    batch = rng.normal(size=(30, 2))
    batch[[3, 7]] = np.nan
    det.update(batch)
    assert (det.rejected, det.n_seen, det.n_tests) == (2, 28, 1)
    state = det.state_dict()
    other = AlibiDetector("KSDrift", ref, window_size=20, seed=0).load_state_dict(state)
    assert (other.rejected, other.n_seen, other.n_tests, other.p_value) == (
        2,
        28,
        1,
        det.p_value,
    )
    with pytest.raises(ValueError, match="fit the adapter on its reference"):
        AlibiDetector("KSDrift", window_size=20, seed=0).load_state_dict(state)
    det.reset()
    assert (det.rejected, det.n_seen, det.n_tests, det.p_value) == (0, 0, 0, None)
    with pytest.raises(ValueError, match="has 3 columns but the detector was fitted on 2"):
        det.update(np.zeros((4, 3)))


@needs_alibi
def test_mmd_adapter_is_repeatable_with_a_seed() -> None:
    from benchmarks.alibi_adapters import AlibiDetector

    rng = np.random.default_rng(2)
    ref = rng.normal(size=(100, 4))
    window = rng.normal(loc=0.3, size=(40, 4))
    p = [
        AlibiDetector("MMDDrift", ref, window_size=40, seed=7, n_permutations=50)
        .update(window)
        .p_value
        for _ in range(2)
    ]
    assert p[0] == p[1]
    assert p[0] is not None and 0.0 < p[0] <= 1.0
    det = AlibiDetector("MMDDrift", ref, window_size=40, seed=7, n_permutations=50)
    det.update(window)
    assert det.threshold is not None and det.score is not None
    assert (det.score > det.threshold) == det.drift_detected


@needs_alibi
def test_cvm_online_adapter_detects_a_mean_shift_and_resets() -> None:
    from benchmarks.alibi_adapters import AlibiOnlineDetector

    rng = np.random.default_rng(3)
    ref = rng.normal(size=(300, 2))
    stream = np.vstack([rng.normal(size=(20, 2)), rng.normal(loc=3.0, size=(40, 2))])

    def run() -> AlibiOnlineDetector:
        det = AlibiOnlineDetector(
            "CVMDriftOnline", ref, ert=100, window_size=10, seed=0, n_bootstraps=4000
        )
        for row in stream:
            det.update(row)
            if det.drift_detected:
                break
        return det

    first, second = run(), run()
    assert first._alibi.xs.shape == (10, 2)  # rows beyond the window are dropped
    assert first.detection_index == second.detection_index
    assert first.detection_index is not None and 20 <= first.detection_index < 30
    assert first.score is not None and first.threshold is not None
    assert first.score > first.threshold
    state = first.state_dict()
    assert {k for k in state if not k.startswith("_")} == {"class", "params", "entropy"}
    first.reset()
    assert first.n_seen == 0
    assert first.detection_index is None
    assert not first.drift_detected
    first.load_state_dict(state)
    assert first.detection_index == second.detection_index


@needs_alibi
def test_mmd_online_adapter_flags_a_large_shift_without_history_growth() -> None:
    from benchmarks.alibi_adapters import AlibiOnlineDetector

    rng = np.random.default_rng(4)
    ref = rng.normal(size=(100, 3))
    det = AlibiOnlineDetector(
        "MMDDriftOnline", ref, ert=50, window_size=10, seed=0, n_bootstraps=200
    )
    det.update(rng.normal(loc=4.0, size=(15, 3)))
    assert det.drift_detected
    assert det.detection_index is not None and det.detection_index < 15
    assert len(det._alibi.test_stats) == 1  # predict()'s per-step history stays trimmed
