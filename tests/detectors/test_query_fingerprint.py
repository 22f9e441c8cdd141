"""Fingerprints, the client table and the minimum-distance test, on small exact cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.client_table import ClientTable, Field
from detectors.min_distance_test import (
    critical_values,
    ks_p_value,
    ks_statistic,
    reference_min_distances,
)
from detectors.query_fingerprint import EMPTY_BIN, QueryFingerprinter, shared_bins


def test_digests_are_equal_exactly_for_byte_identical_float32_rows() -> None:
    fp = QueryFingerprinter(16, seed=0)
    x = np.linspace(0.0, 1.0, 16, dtype=np.float32)
    ulp = x.copy()
    ulp[3] = np.nextafter(ulp[3], np.float32(2.0))
    f = fp.fingerprint(np.stack([x, ulp, x]))
    assert f.digests[0] == f.digests[2] != f.digests[1]
    # float64 input is taken as float32: same digest for the same float32 values
    assert fp.fingerprint(x.astype(np.float64)).digests[0] == f.digests[0]
    # the key comes from the seed: another seed, other digests
    assert QueryFingerprinter(16, seed=1).fingerprint(x).digests[0] != f.digests[0]


def test_projection_keeps_distances_of_rows_scaled_to_unit_range() -> None:
    rng = np.random.default_rng(0)
    fp = QueryFingerprinter(256, value_range=(0.0, 255.0), projection_dim=256, seed=0)
    rows = rng.uniform(0.0, 255.0, size=(40, 256))
    s = fp.fingerprint(rows).sketches.astype(np.float64)
    true = np.linalg.norm((rows[:, None] - rows[None]) / 255.0, axis=2)
    est = np.linalg.norm(s[:, None] - s[None], axis=2)
    off = ~np.eye(40, dtype=bool)
    ratio = est[off] / true[off]
    # Johnson-Lindenstrauss at k = 256: relative error sd about 1/sqrt(2k) = 0.044
    assert 0.95 < float(np.median(ratio)) < 1.05
    assert float(np.abs(ratio - 1).max()) < 0.25
    # the offset of the value range is folded in: shifting rows does not move distances
    # relative to each other, and the zero row maps near the origin only if low = 0
    assert np.allclose(fp.fingerprint(np.zeros(256)).sketches, 0.0, atol=1e-6)


def test_content_bins_survive_a_local_change_and_not_another_input() -> None:
    rng = np.random.default_rng(1)
    fp = QueryFingerprinter(784, value_range=(0.0, 1.0), levels=5, window=20, seed=0)
    x = rng.uniform(size=784)
    local = x.copy()
    local[100:110] = rng.uniform(size=10)  # one small patch changes: 29 of 765 windows
    moved = np.roll(x, 5)  # the same content, moved: window hashes do not depend on place
    f = fp.fingerprint(np.stack([x, local, moved, rng.uniform(size=784)]))
    shared = shared_bins(f.bins[1:], f.bins[0]).tolist()
    assert shared[0] >= 28 and shared[1] >= 28
    assert shared[2] <= 2
    assert (f.bins != EMPTY_BIN).all()


def test_content_bins_can_be_skipped_and_nan_rows_are_left_out() -> None:
    fp = QueryFingerprinter(8, window=4, n_bins=4, seed=0)
    rows = np.array([[0.1] * 8, [np.nan] * 8, [0.2] * 8])
    f = fp.fingerprint(rows, content=False)
    assert f.kept.tolist() == [True, False, True]
    assert f.n == 2 and f.bins.shape == (2, 0) and f.sketches.shape == (2, 32)


def test_fingerprinter_validates_its_arguments() -> None:
    for bad in ({"n_bins": 6}, {"n_bins": 512}, {"levels": 1}, {"value_range": (1, 1)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            QueryFingerprinter(8, **bad)  # type: ignore[arg-type]


def test_client_table_evicts_the_least_recent_unprotected_client() -> None:
    table: ClientTable[dict[str, int]] = ClientTable(
        3, {"x": Field((2,), np.float32, 0.0)}, new_record=dict, protect=lambda r: "keep" in r
    )
    a = table.admit("a")
    table.record(a)["keep"] = 1
    table["x"][a] = 7.0
    table.admit("b")
    table.admit("c")
    table.admit("d")  # full: "a" is least recent but protected, so "b" goes
    assert table.clients() == ["c", "a", "d"] and table.evicted == 1
    assert table["x"][table.slot("a")].tolist() == [7.0, 7.0]
    assert table.serial(table.slot("d")) == 3  # type: ignore[arg-type]
    state = table.state("t.")
    again: ClientTable[dict[str, int]] = ClientTable(
        3, {"x": Field((2,), np.float32, 0.0)}, new_record=dict
    )
    again.load_state(state, "t.")
    assert again.clients() == ["c", "a", "d"]
    assert again["x"][again.slot("a")].tolist() == [7.0, 7.0]
    assert again.nbytes_per_client() == 8 + 2 * 4
    with pytest.raises(ValueError, match="t.x"):
        again.load_state({**state, "t.x": np.zeros((3, 5))}, "t.")


def test_client_table_grows_by_doubling_up_to_its_bound() -> None:
    table: ClientTable[dict[str, int]] = ClientTable(
        40, {"x": Field((), np.int64, -1)}, new_record=dict
    )
    caps = []
    for i in range(100):
        table.admit(f"c{i}")
        caps.append(table.capacity)
    assert sorted(set(caps)) == [16, 32, 40]
    assert len(table) == 40 and table.evicted == 60
    assert (table["x"] == -1).all()


def test_ks_statistic_equals_scipy() -> None:
    rng = np.random.default_rng(2)
    ref = np.sort(rng.normal(size=500))
    for sample in (rng.normal(size=40), rng.normal(0.5, 1.0, size=64), rng.uniform(size=7)):
        want = stats.ks_2samp(sample, ref).statistic
        assert ks_statistic(sample, ref) == pytest.approx(want, abs=1e-12)


def test_critical_values_and_p_values_follow_the_kolmogorov_law_at_n_eff() -> None:
    crit = critical_values(64, 1000, 1e-3)
    assert np.isinf(crit[0])
    n_eff = round(64 * 1000 / 1064)
    assert crit[64] == pytest.approx(stats.kstwo.isf(1e-3, n_eff))
    assert ks_p_value(float(crit[64]), 64, 1000) == pytest.approx(1e-3, rel=1e-6)
    assert np.all(np.diff(crit[1:]) <= 0)  # more samples, smaller D (n_eff is rounded)


def test_reference_min_distances_are_minima_over_the_history_size() -> None:
    rows = np.array([[0.0], [1.0], [3.0], [7.0]])
    rng = np.random.default_rng(0)
    # with history_size 3 every other row is a candidate: exact nearest-neighbour distances
    assert reference_min_distances(rows, 3, rng).tolist() == [1.0, 1.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="history_size"):
        reference_min_distances(rows, 4, rng)
