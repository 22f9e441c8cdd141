"""The contract every detector and scorer keeps (STYLE.md), checked over all of them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from contract_cases import CASES, Case

IDS = [c.name for c in CASES]


def _fitted(case: Case, seed: int | None = 7) -> tuple[Any, np.ndarray]:
    est = case.build(seed)
    rng = np.random.default_rng(123)
    est.fit(case.reference(rng))
    return est, case.stream(rng)


def _observe(est: Any, case: Case, data: np.ndarray) -> list[tuple[Any, ...]]:
    """Feeds `data` in chunks and records everything the estimator exposes after each."""
    seen: list[tuple[Any, ...]] = []
    for start in range(0, len(data), case.chunk):
        part = data[start : start + case.chunk]
        if case.scorer:
            scores = est.score(part)
            seen.append((tuple(np.round(scores, 12)), tuple(est.is_ood(part)), est.threshold))
        else:
            est.update(part)
            seen.append(
                (
                    est.drift_detected,
                    est.score,
                    est.p_value,
                    est.threshold,
                    est.n_seen,
                    est.rejected,
                    est.detection_index,
                )
            )
    return seen


def _assert_state_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        elif isinstance(a[key], float) and np.isnan(a[key]):
            assert np.isnan(b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_arguments_raise_value_error_naming_the_argument(case: Case) -> None:
    base = case.build(0)
    params = dict(base._params())
    make = case.make or (lambda kw: type(base)(**{**params, **kw}))
    for bad in case.bad_args:
        with pytest.raises(ValueError, match=next(iter(bad))):
            make(bad)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_stream_detects_and_state_values_are_plain(case: Case) -> None:
    est, data = _fitted(case)
    _observe(est, case, data)
    if not case.scorer:
        assert est.detection_index is not None, "the shifted stream must be detected"
    for key, value in est.state_dict().items():
        assert isinstance(value, (np.ndarray, int, float, str)), key
        assert not isinstance(value, np.ndarray) or value.dtype != object, key


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_round_trip_gives_identical_behaviour(case: Case) -> None:
    est, data = _fitted(case)
    half = (len(data) // 2 // case.chunk) * case.chunk
    _observe(est, case, data[:half])
    fresh = case.build(7)
    fresh.load_state_dict(est.state_dict())
    _assert_state_equal(fresh.state_dict(), est.state_dict())
    assert _observe(fresh, case, data[half:]) == _observe(est, case, data[half:])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mismatched_state_raises_value_error(case: Case) -> None:
    est, _ = _fitted(case)
    state = est.state_dict()
    with pytest.raises(ValueError, match="state is for"):
        case.build(7).load_state_dict({**state, "class": "Other"})
    with pytest.raises(ValueError, match="state keys"):
        case.build(7).load_state_dict({k: v for k, v in state.items() if k != "_rejected"})
    with pytest.raises(ValueError, match="settings"):
        case.build(7).load_state_dict({**state, "params": "[]"})
    other = next(c for c in CASES if c.name != case.name)
    with pytest.raises(ValueError):
        other.build(7).load_state_dict(state)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reset_returns_to_the_just_fitted_state(case: Case) -> None:
    est, data = _fitted(case)
    just_fitted = est.state_dict()
    first = _observe(est, case, data)
    est.reset()
    _assert_state_equal(est.state_dict(), just_fitted)
    assert _observe(est, case, data) == first


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_seed_same_behaviour(case: Case) -> None:
    a, data = _fitted(case, seed=11)
    b, _ = _fitted(case, seed=11)
    _assert_state_equal(a.state_dict(), b.state_dict())
    assert _observe(a, case, data) == _observe(b, case, data)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_nan_rows_are_dropped_and_counted(case: Case) -> None:
    clean, data = _fitted(case)
    dirty, _ = _fitted(case)
    bad = np.full_like(data[:3], np.nan)
    if case.scalar:
        bad[1] = np.inf
    else:
        bad[1, 0] = np.inf
        bad[2] = 1.0
        bad[2, -1] = -np.inf
    mixed = np.concatenate([data[:5], bad, data[5:]])
    if case.scorer:
        scores = dirty.score(mixed)
        assert np.isnan(scores[5:8]).all()
        np.testing.assert_array_equal(np.delete(scores, [5, 6, 7]), clean.score(data))
        assert dirty.rejected == 3
        assert not dirty.is_ood(bad).any()
        return
    dirty.update(mixed)
    clean.update(data)
    assert dirty.rejected == 3
    assert dirty.n_seen == clean.n_seen == len(data)
    got = {k: v for k, v in dirty.state_dict().items() if k != "_rejected"}
    want = {k: v for k, v in clean.state_dict().items() if k != "_rejected"}
    _assert_state_equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_malformed_input_raises_value_error(case: Case) -> None:
    est, data = _fitted(case)
    feed = est.score if case.scorer else est.update
    with pytest.raises(ValueError, match="empty"):
        feed(data[:0])
    with pytest.raises(ValueError, match="2-D|1-D"):
        feed(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="numeric"):
        feed(np.array([["a", "b"]], dtype=object))
    if case.scalar:
        with pytest.raises(ValueError, match="1-D"):
            feed(np.zeros((3, 2)))
    else:
        d = data.shape[1]
        with pytest.raises(ValueError, match=f"{d + 1} columns"):
            feed(np.zeros((4, d + 1)))
        with pytest.raises(ValueError, match=f"{d + 1} columns"):
            feed(np.zeros(d + 1))
    with pytest.raises(RuntimeError, match="no reference"):
        getattr(case.build(0), "score" if case.scorer else "update")(data[:2])
