"""Exact behaviour of the query guard on small seeded cases: near-copies, repeats, bounds."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import QueryGuard

D = 64


def _reference(n: int = 400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, D))


def _guard(**kw: object) -> QueryGuard:
    settings: dict[str, object] = {"history_size": 16, "k_neighbours": 3, "seed": 0}
    settings.update(kw)
    return QueryGuard(D, **settings).fit(_reference())  # type: ignore[arg-type]


def _near_copies(n: int, seed: int = 1, step: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=D)
    return x + step * rng.normal(size=(n, D))


def test_near_copies_are_flagged_at_the_query_that_completes_the_evidence() -> None:
    guard = _guard()
    seen = [guard.observe("m", row, now=0.0) for row in _near_copies(8)]
    # query i has i earlier near-copies; k_neighbours=3 makes query 3 the first suspicious
    assert [int(o.neighbours[0]) for o in seen] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert [bool(o.suspicious[0]) for o in seen] == [False] * 3 + [True] * 5
    assert [o.verdict for o in seen] == ["clean"] * 3 + ["attack"] * 5
    s = guard.suspicion("m")
    assert s is not None
    assert (s.detection_index, s.first_suspicious, s.last_suspicious) == (3, 3, 7)
    assert (s.score, s.threshold, s.queries, s.matches) == (5, 1, 8, 28)

    two = _guard(min_suspicious=2)
    for row in _near_copies(8):
        two.observe("m", row, now=0.0)
    s2 = two.suspicion("m")
    assert s2 is not None and s2.detection_index == 4


def test_a_batch_is_taken_row_by_row_in_order() -> None:
    one_by_one, batched = _guard(), _guard()
    rows = _near_copies(8)
    for row in rows:
        one_by_one.observe("m", row, now=0.0)
    obs = batched.observe("m", rows, now=0.0)
    assert obs.neighbours.tolist() == list(range(8))
    assert obs.query_index.tolist() == list(range(8))
    assert batched.suspicion("m") == one_by_one.suspicion("m")


def test_exact_retries_are_counted_apart_and_never_count_as_evidence() -> None:
    guard = _guard()
    x = _reference(1, seed=5)[0]
    seen = [guard.observe("retry", x, now=float(i)) for i in range(10)]
    assert [bool(o.exact_repeat[0]) for o in seen] == [False] + [True] * 9
    assert all(int(o.neighbours[0]) == 0 for o in seen)
    s = guard.suspicion("retry")
    assert s is not None
    assert (s.queries, s.exact_repeats, s.matches, s.score, s.verdict) == (10, 9, 0, 0, "clean")
    # the same values sent as float64 are the same query (digests are of float32 bytes)
    assert guard.observe("retry", x.astype(np.float64), now=11.0).exact_repeat.tolist() == [True]


def test_distinct_benign_rows_have_no_neighbours() -> None:
    guard = _guard()
    obs = guard.observe("alice", _reference(200, seed=7), now=0.0)
    assert int(obs.neighbours.sum()) == 0
    assert obs.verdict == "clean"


def test_queries_older_than_max_age_no_longer_count() -> None:
    guard = _guard(max_age=10.0)
    rows = _near_copies(6)
    for i, row in enumerate(rows[:3]):
        guard.observe("m", row, now=float(i))
    # 20 s later the first three are out of the window: the fourth query has no neighbour
    assert guard.observe("m", rows[3], now=20.0).neighbours.tolist() == [0]
    assert guard.observe("m", rows[4], now=21.0).neighbours.tolist() == [1]


def test_history_is_count_bounded_per_client() -> None:
    guard = _guard(history_size=16)
    x = _near_copies(2)
    guard.observe("c", x[0], now=0.0)
    guard.observe("c", _reference(15, seed=9), now=0.0)  # 15 distinct rows: x[0] still held
    assert guard.observe("c", x[1], now=0.0).neighbours.tolist() == [1]
    guard.observe("c", _reference(16, seed=10), now=0.0)  # 16 more: both copies pushed out
    assert guard.observe("c", x[0] + 1e-3, now=0.0).neighbours.tolist() == [0]


def test_score_falls_back_once_suspicious_queries_leave_the_window() -> None:
    guard = _guard(history_size=16)
    guard.observe("m", _near_copies(6), now=0.0)
    assert guard.suspicion("m").score == 3  # type: ignore[union-attr]
    obs = guard.observe("m", _reference(16, seed=11), now=0.0)
    assert (obs.verdict, obs.score) == ("clean", 0)
    s = guard.suspicion("m")
    assert s is not None and (s.detection_index, s.suspicious_queries) == (3, 3)


def test_a_flood_of_distinct_clients_keeps_the_table_bounded_and_the_attacker_remembered() -> None:
    guard = _guard(max_clients=50)
    rng = np.random.default_rng(3)
    attack = _near_copies(40)
    detected_at = None
    for i in range(10_000):
        guard.observe(f"flood-{i}", rng.uniform(size=D), now=0.0)
        if i % 250 == 0:  # one attack query per 250 fresh one-query clients
            obs = guard.observe("attacker", attack[i // 250], now=0.0)
            if detected_at is None and obs.verdict == "attack":
                detected_at = int(obs.query_index[0])
    assert guard.n_clients == 50
    assert guard._table.capacity == 50
    # Until it is suspicious the attacker is evicted like anyone else (50 newer clients
    # arrive between its queries), so its first queries are forgotten; once flagged...
    assert detected_at is None
    # ...a suspicious client is kept over clean ones: a flood cannot push it out.
    flagged = _guard(max_clients=50)
    flagged.observe("attacker", attack[:6], now=0.0)
    for i in range(10_000):
        flagged.observe(f"flood-{i}", rng.uniform(size=D), now=0.0)
    assert flagged.n_clients == 50 and flagged.evicted_clients == 10_000 + 1 - 50
    assert flagged.observe("attacker", attack[6], now=0.0).verdict == "attack"
    s = flagged.suspicion("attacker")
    assert s is not None and (s.queries, s.detection_index) == (7, 3)


def test_idle_clients_expire() -> None:
    guard = _guard(max_age=10.0)
    guard.observe("old", _reference(1, seed=1), now=0.0)
    guard.observe("new", _reference(1, seed=2), now=5.0)
    guard.expire(now=12.0)
    assert guard.clients() == ["new"]
    guard.observe("newest", _reference(1, seed=3), now=16.0)  # observe expires as it goes
    assert guard.clients() == ["newest"]


def test_forget_drops_a_client() -> None:
    guard = _guard()
    guard.observe("m", _near_copies(6), now=0.0)
    assert guard.forget("m") and not guard.forget("m")
    assert guard.suspicion("m") is None


def test_extraction_by_uniform_queries_is_flagged_and_benign_replay_is_not() -> None:
    # The reference is structured (a low-dimensional manifold); uniform queries are far from
    # each other in a way reference rows never are.
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(4, D))

    def structured(n: int, seed: int) -> np.ndarray:
        z = np.random.default_rng(seed).normal(size=(n, 4))
        return np.clip(0.5 + 0.05 * z @ basis, 0.0, 1.0)

    guard = QueryGuard(
        D, history_size=16, extraction_min_samples=16, extraction_test_every=8, seed=0
    ).fit(structured(600, 1))
    guard.observe("benign", structured(200, 2), now=0.0)
    obs = guard.observe("thief", rng.uniform(size=(200, D)), now=0.0)
    benign, thief = guard.suspicion("benign"), guard.suspicion("thief")
    assert benign is not None and thief is not None
    assert benign.verdict == "clean" and benign.extraction_score is not None
    assert obs.verdict == "extraction" and thief.extraction
    # minimum distances start once 16 distinct queries are held (query 16); the first test
    # runs at 16 of them, i.e. after query 31, and rejects
    assert thief.extraction_detection_index == 31
    assert thief.extraction_samples == 64
    assert thief.extraction_score == 1.0
    p = thief.extraction_p_value()
    assert p is not None and p < 1e-12
    assert guard.min_distances("thief").shape == (64,)


def test_cross_client_near_copies_are_counted_but_exact_copies_are_not() -> None:
    guard = _guard(global_entries=1000, window=8, n_bins=16)
    x = np.round(_reference(1, seed=4)[0], 1)
    guard.observe("a", x, now=0.0)
    assert guard.observe("b", x, now=1.0).cross_client.tolist() == [0]  # exact copy
    near = x.copy()
    near[:2] = 1.0 - near[:2]
    # the table keeps the latest sender of each band: b (whose exact copy replaced a's)
    assert guard.observe("c", near, now=2.0).cross_client.tolist() == [1]
    s = guard.suspicion("c")
    assert s is not None and (s.cross_client_matches, s.verdict) == (1, "clean")
    assert guard.observe("d", _reference(1, seed=8), now=3.0).cross_client.tolist() == [0]


def test_rows_with_nan_are_dropped_counted_and_leave_no_trace() -> None:
    clean, dirty = _guard(), _guard()
    rows = _near_copies(6)
    bad = rows.copy()
    bad[2, 5] = np.nan
    bad[4, 0] = np.inf
    for g, r in ((clean, rows[[0, 1, 3, 5]]), (dirty, bad)):
        obs = g.observe("m", r, now=0.0)
    assert obs.kept.tolist() == [True, True, False, True, False, True]
    assert obs.query_index.tolist() == [0, 1, -1, 2, -1, 3]
    assert obs.neighbours.tolist() == [0, 1, 0, 2, 0, 3]
    assert dirty.rejected == 2
    assert dirty.suspicion("m") == clean.suspicion("m")


def test_radius_comes_from_the_reference_unless_given() -> None:
    guard = _guard()
    ref_min = guard._reference_dmin
    assert guard.radius_ == pytest.approx(0.5 * float(np.quantile(ref_min, 0.01)))
    assert _guard(radius=0.25).radius_ == 0.25
    assert QueryGuard(D).radius_ is None


def test_memory_per_client_is_stated_exactly() -> None:
    guard = QueryGuard(784, value_range=(0.0, 255.0), history_size=32, projection_dim=32)
    # ring: 32 x (32 float32 + uint64 digest + float64 time + bool flag) = 4384 bytes,
    # 64 float32 minimum distances = 256, serial 8, 16 counters x 8 = 128
    assert guard.memory_per_client == 32 * (32 * 4 + 8 + 8 + 1) + 64 * 4 + 8 + 16 * 8


def test_flagged_lists_suspicious_clients_by_score() -> None:
    guard = _guard()
    guard.observe("big", _near_copies(9, seed=1), now=0.0)
    guard.observe("small", _near_copies(5, seed=2), now=0.0)
    guard.observe("clean", _reference(20, seed=3), now=0.0)
    assert [(s.client, s.score) for s in guard.flagged()] == [("big", 6), ("small", 2)]
