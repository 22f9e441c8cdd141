"""The detector contract (STYLE.md, test_contract.py) for the per-client query guard.

The guard takes rows per client (`observe(client, rows)`) rather than `update(batch)`, so
it gets its own copy of the contract checks: bad arguments name themselves, state is plain
arrays and numbers and round-trips to identical behaviour, mismatched states are refused,
`reset` returns to the just-fitted state, seeds decide everything, NaN rows are dropped
and counted, malformed input raises ValueError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors import QueryGuard

D = 32


def _build(seed: int | None = 7, **kw: Any) -> QueryGuard:
    settings: dict[str, Any] = {
        "history_size": 8,
        "k_neighbours": 2,
        "extraction_window": 16,
        "extraction_min_samples": 8,
        "extraction_test_every": 4,
        "global_entries": 500,
        "window": 4,
        "n_bins": 8,
        "seed": seed,
    }
    settings.update(kw)
    return QueryGuard(D, **settings)


def _reference() -> np.ndarray:
    return np.random.default_rng(123).uniform(size=(120, D))


def _stream() -> list[tuple[str, np.ndarray, float]]:
    """Requests from a benign, an attacking and an extracting client, interleaved."""
    rng = np.random.default_rng(5)
    x = rng.uniform(size=D)
    out: list[tuple[str, np.ndarray, float]] = []
    for i in range(60):
        out.append(("benign", rng.uniform(size=(1, D)), float(i)))
        out.append(("attack", x + 0.005 * rng.normal(size=(2, D)), float(i)))
        # a sweep of a corner of the input space: minimum distances unlike the reference's
        out.append(("extract", 0.2 * rng.uniform(size=(3, D)), float(i)))
        if i % 7 == 0:
            out.append(("benign", out[-3][1], float(i)))  # an exact retry
    return out


def _observe(guard: QueryGuard, stream: list[tuple[str, np.ndarray, float]]) -> list[Any]:
    seen: list[Any] = []
    for client, rows, now in stream:
        obs = guard.observe(client, rows, now=now)
        seen.append(
            (
                obs.verdict,
                obs.score,
                obs.neighbours.tolist(),
                obs.exact_repeat.tolist(),
                obs.cross_client.tolist(),
                obs.query_index.tolist(),
                guard.suspicion(client),
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


BAD_ARGS: list[dict[str, Any]] = [
    {"n_features": 0},
    {"value_range": (1.0, 0.0)},
    {"value_range": "ab"},
    {"history_size": 1},
    {"max_clients": 0},
    {"max_age": 0.0},
    {"radius": -1.0},
    {"radius_scale": 0.0},
    {"k_neighbours": 0},
    {"k_neighbours": 8},
    {"min_suspicious": 0},
    {"min_suspicious": 9},
    {"extraction_window": 1},
    {"extraction_min_samples": 17},
    {"extraction_test_every": 0},
    {"extraction_alpha": 1.0},
    {"projection_dim": 0},
    {"global_entries": -1},
    {"levels": 1},
    {"window": 0},
    {"n_bins": 12},
    {"band_size": 3},
    {"seed": -1},
]


@pytest.mark.parametrize("bad", BAD_ARGS, ids=[next(iter(b)) for b in BAD_ARGS])
def test_bad_arguments_raise_value_error_naming_the_argument(bad: dict[str, Any]) -> None:
    name = next(iter(bad))
    args = {"n_features": D, **bad}
    with pytest.raises(ValueError, match=name):
        if name == "n_features":
            QueryGuard(**args)
        else:
            _build(**bad)


def test_constructor_arguments_are_stored_under_their_names() -> None:
    guard = _build(radius=0.2, max_age=60.0)
    assert (guard.n_features, guard.history_size, guard.radius, guard.max_age) == (
        D,
        8,
        0.2,
        60.0,
    )
    assert "history_size=8" in repr(guard)


def test_state_values_are_plain() -> None:
    guard = _build().fit(_reference())
    _observe(guard, _stream())
    for key, value in guard.state_dict().items():
        assert isinstance(value, (np.ndarray, int, float, str)), key
        assert not isinstance(value, np.ndarray) or value.dtype != object, key


def test_state_round_trip_gives_identical_behaviour() -> None:
    stream = _stream()
    half = len(stream) // 2
    guard = _build().fit(_reference())
    _observe(guard, stream[:half])
    fresh = _build().load_state_dict(guard.state_dict())
    _assert_state_equal(fresh.state_dict(), guard.state_dict())
    assert _observe(fresh, stream[half:]) == _observe(guard, stream[half:])


def test_the_stream_shows_every_kind_of_evidence() -> None:
    guard = _build().fit(_reference())
    _observe(guard, _stream())
    benign, attack, extract = (guard.suspicion(c) for c in ("benign", "attack", "extract"))
    assert benign is not None and attack is not None and extract is not None
    assert benign.verdict == "clean" and benign.exact_repeats == 9
    assert attack.verdict == "attack" and attack.detection_index == 2
    assert extract.extraction and extract.extraction_detection_index is not None


def test_mismatched_state_raises_value_error() -> None:
    guard = _build().fit(_reference())
    _observe(guard, _stream()[:20])
    state = guard.state_dict()
    with pytest.raises(ValueError, match="state is for"):
        _build().load_state_dict({**state, "class": "Other"})
    with pytest.raises(ValueError, match="state keys"):
        _build().load_state_dict({k: v for k, v in state.items() if k != "clients.queries"})
    with pytest.raises(ValueError, match="state keys"):
        _build().load_state_dict({k: v for k, v in state.items() if k != "_rejected"})
    with pytest.raises(ValueError, match="settings"):
        _build().load_state_dict({**state, "params": "[]"})
    with pytest.raises(ValueError, match="settings"):
        _build(history_size=9).load_state_dict(state)
    with pytest.raises(ValueError, match="clients.sketch"):
        bad = dict(state)
        bad["clients.sketch"] = np.zeros((1, 2, 3), dtype=np.float32)
        _build().load_state_dict(bad)
    with pytest.raises(ValueError):
        _build().load_state_dict("not a dict")  # type: ignore[arg-type]


def test_reset_returns_to_the_just_fitted_state() -> None:
    guard = _build().fit(_reference())
    just_fitted = guard.state_dict()
    first = _observe(guard, _stream())
    guard.reset()
    _assert_state_equal(guard.state_dict(), just_fitted)
    assert _observe(guard, _stream()) == first


def test_same_seed_same_behaviour_and_other_seed_other_fingerprints() -> None:
    a, b = _build(seed=11).fit(_reference()), _build(seed=11).fit(_reference())
    _assert_state_equal(a.state_dict(), b.state_dict())
    assert _observe(a, _stream()) == _observe(b, _stream())
    c = _build(seed=12).fit(_reference())
    row = _reference()[:1]
    assert not np.array_equal(
        a.fingerprinter.fingerprint(row).sketches, c.fingerprinter.fingerprint(row).sketches
    )


def test_nan_rows_are_dropped_and_counted() -> None:
    clean, dirty = _build().fit(_reference()), _build().fit(_reference())
    stream = _stream()
    dirty_stream = []
    for client, rows, now in stream:
        bad = np.full((2, D), np.nan)
        bad[1] = 0.5
        bad[1, -1] = np.inf
        dirty_stream.append((client, np.concatenate([bad[:1], rows, bad[1:]]), now))
    _observe(clean, stream)
    _observe(dirty, dirty_stream)
    assert dirty.rejected == 2 * len(stream)
    got = {k: v for k, v in dirty.state_dict().items() if k != "_rejected"}
    want = {k: v for k, v in clean.state_dict().items() if k != "_rejected"}
    _assert_state_equal(got, want)


def test_malformed_input_raises_value_error() -> None:
    guard = _build().fit(_reference())
    with pytest.raises(ValueError, match="empty"):
        guard.observe("c", np.zeros((0, D)))
    with pytest.raises(ValueError, match="2-D|1-D"):
        guard.observe("c", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="numeric"):
        guard.observe("c", np.array([["a", "b"]], dtype=object))
    with pytest.raises(ValueError, match=f"{D + 1} columns"):
        guard.observe("c", np.zeros((4, D + 1)))
    with pytest.raises(ValueError, match=f"{D + 1} columns"):
        guard.observe("c", np.zeros(D + 1))
    with pytest.raises(ValueError, match="client"):
        guard.observe(7, np.zeros(D))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reference"):
        _build().fit(_reference()[:8])
    with pytest.raises(RuntimeError, match="no reference"):
        _build().observe("c", np.zeros(D))
    assert guard.n_clients == 0
