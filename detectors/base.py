"""Shared shells for every detector: input hygiene, counters, properties and state I/O.

A detector keeps two kinds of state: what `fit` derived from the reference (fixed until the
next `fit`) and what the stream has changed since (windows, statistics, counters). `reset()`
rebuilds the second kind from the first, and `state_dict()` writes both as a flat dict of
numpy arrays, numbers and strings so a checkpoint never needs pickle.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

StateValue = NDArray[Any] | int | float | str
State = dict[str, StateValue]
FloatArray = NDArray[np.float64]

_Self = TypeVar("_Self", bound="_StatefulEstimator")
_NONE = float("nan")


def entropy_from_seed(seed: int | None) -> int:
    """The integer all of an estimator's randomness derives from (drawn fresh when None)."""
    if seed is None:
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)
        return entropy % (2**63)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


def check_choice(name: str, value: object, valid: tuple[object, ...]) -> None:
    """Raises a ValueError naming the valid values when `value` is not one of them."""
    if value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Validates an integer argument that must be at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_open_unit(name: str, value: object) -> float:
    """Validates a probability-like argument strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    return float(value)


def check_positive_float(name: str, value: object, allow_zero: bool = False) -> float:
    """Validates a finite float argument that must be > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite float, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0.0 or (v == 0.0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite float {bound}, got {value!r}")
    return v


def as_matrix(batch: ArrayLike, n_features: int | None, what: str = "batch") -> FloatArray:
    """Converts input to a float (n, d) matrix, or raises a ValueError saying what is wrong.

    A single 1-D row of length d is accepted as one row. Non-finite values are kept here;
    callers decide whether to drop those rows.
    """
    try:
        arr = np.asarray(batch, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numeric, got {type(batch).__name__}: {exc}") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n, d) or a single 1-D row, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape}); pass at least one row")
    if arr.shape[1] == 0:
        raise ValueError(f"{what} has no columns (shape {arr.shape})")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{what} has {arr.shape[1]} columns but the detector was fitted on {n_features}"
        )
    return arr


def as_scalars(batch: ArrayLike, what: str = "batch") -> FloatArray:
    """Converts a float, a 1-D array or an (n, 1) matrix to a 1-D float array."""
    try:
        arr = np.asarray(batch, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numeric, got {type(batch).__name__}: {exc}") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim != 1:
        raise ValueError(
            f"{what} must be a float, a 1-D array or an (n, 1) matrix, got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{what} is empty; pass at least one value")
    return arr


def reference_scale(reference: FloatArray) -> float:
    """Sample standard deviation of a scalar reference, (n, 1) with n >= 2 (1.0 if constant)."""
    values = reference[:, 0]
    if values.size < 2:
        raise ValueError(f"reference needs at least 2 values, got {values.size}")
    sd = float(values.std(ddof=1))
    return sd if sd > 0 else 1.0


def finite_rows(arr: FloatArray) -> NDArray[np.bool_]:
    """Mask of the rows whose values are all finite."""
    finite: NDArray[np.bool_] = np.isfinite(arr)
    return finite if arr.ndim == 1 else np.asarray(finite.all(axis=1))


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else value


class _StatefulEstimator(ABC):
    """State-dict plumbing shared by detectors and scorers.

    Subclasses list the attribute names of their fitted state in `_FITTED_KEYS` and of their
    stream state in `_STREAM_KEYS`; every value is a numpy array, an int, a float or a str.
    """

    _FITTED_KEYS: tuple[str, ...] = ()
    _STREAM_KEYS: tuple[str, ...] = ()
    _BASE_FITTED_KEYS: tuple[str, ...] = ("_n_features",)
    _BASE_STREAM_KEYS: tuple[str, ...] = ()

    seed: int | None
    _entropy: int
    _fitted: bool

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._entropy = entropy_from_seed(seed)
        self._fitted = False
        self._n_features = 0

    def _params(self) -> dict[str, object]:
        """Constructor arguments (by their stored names), used to check state compatibility."""
        return {}

    def _params_text(self) -> str:
        return repr(sorted(self._params().items()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError(
                f"{type(self).__name__} has no reference yet: pass reference= or call fit()"
            )

    def state_dict(self) -> State:
        """Everything needed to resume: numpy arrays, numbers and strings only (no pickle)."""
        self._require_fitted()
        state: State = {
            "class": type(self).__name__,
            "params": self._params_text(),
            "entropy": self._entropy,
        }
        for key in self._state_keys():
            value = getattr(self, key)
            if isinstance(value, np.ndarray):
                state[key] = value.copy()
            elif isinstance(value, (bool, np.bool_, int, np.integer)):
                state[key] = int(value)
            elif isinstance(value, (float, np.floating)):
                state[key] = float(value)
            elif isinstance(value, str):
                state[key] = value
            else:  # pragma: no cover - a programming error in a subclass
                raise TypeError(f"state value {key} has unsupported type {type(value)}")
        return state

    def load_state_dict(self: _Self, state: State) -> _Self:
        """Restores a `state_dict()`; a state from another class or settings -> ValueError."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict, got {type(state).__name__}")
        if state.get("class") != type(self).__name__:
            raise ValueError(f"state is for {state.get('class')!r}, not {type(self).__name__!r}")
        if state.get("params") != self._params_text():
            raise ValueError(
                f"state was saved with other settings: {state.get('params')!r} "
                f"!= {self._params_text()!r}"
            )
        keys = self._state_keys()
        expected = {"class", "params", "entropy", *keys}
        if set(state) != expected:
            missing = sorted(expected - set(state))
            extra = sorted(set(state) - expected)
            raise ValueError(f"state keys do not match: missing {missing}, unexpected {extra}")
        entropy = state["entropy"]
        if not isinstance(entropy, (int, np.integer)) or isinstance(entropy, bool):
            raise ValueError(f"state value 'entropy' must be an int, got {entropy!r}")
        self._entropy = int(entropy)
        for key in keys:
            value = state[key]
            if isinstance(value, np.ndarray):
                setattr(self, key, np.array(value, copy=True))
            elif isinstance(value, (int, float, str, np.integer, np.floating)) and not isinstance(
                value, bool
            ):
                setattr(self, key, value.item() if isinstance(value, np.generic) else value)
            else:
                raise ValueError(f"state value {key!r} has unsupported type {type(value)}")
        self._fitted = True
        self._after_load()
        return self

    def _state_keys(self) -> tuple[str, ...]:
        return (
            *self._BASE_FITTED_KEYS,
            *self._FITTED_KEYS,
            *self._BASE_STREAM_KEYS,
            *self._STREAM_KEYS,
        )

    def _after_load(self) -> None:  # noqa: B027 - optional hook, most estimators need none
        """Checks the shapes of a loaded state and rebuilds derived caches."""


class DriftDetector(_StatefulEstimator):
    """Base of every drift and change detector: validation, NaN-row filtering, counters.

    Subclasses implement `_fit(reference)` (fitted state), `_reset_stream()` (stream state
    right after fitting) and `_update(rows)` (rows are finite and validated).
    """

    _BASE_STREAM_KEYS = (
        "_n_seen",
        "_rejected",
        "_drift_flag",
        "_score",
        "_threshold",
        "_p_value",
        "_detection_index",
    )
    #: True for detectors of one scalar stream (floats or 1-D arrays as input).
    _SCALAR_INPUT = False

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(seed)
        self._clear_counters()

    def _clear_counters(self) -> None:
        self._n_seen = 0
        self._rejected = 0
        self._drift_flag = 0
        self._score = _NONE
        self._threshold = _NONE
        self._p_value = _NONE
        self._detection_index = -1

    # -- public API -----------------------------------------------------------------------

    def fit(self: _D, reference: ArrayLike) -> _D:
        """Learns from the reference and returns to the just-fitted state."""
        if self._SCALAR_INPUT:
            ref = as_scalars(reference, what="reference")
            ref = ref[np.isfinite(ref)]
            if ref.size == 0:
                raise ValueError("reference has no finite values")
            self._fit(ref.reshape(-1, 1))
        else:
            ref2 = as_matrix(reference, None, what="reference")
            ref2 = ref2[finite_rows(ref2)]
            if ref2.shape[0] == 0:
                raise ValueError("reference has no rows without NaN/Inf")
            self._n_features = ref2.shape[1]
            self._fit(ref2)
        self._fitted = True
        self.reset()
        return self

    def update(self: _D, batch: ArrayLike) -> _D:
        """Feeds rows (or scalars); rows with NaN/Inf are dropped and counted in `rejected`."""
        self._require_fitted()
        if self._SCALAR_INPUT:
            arr = as_scalars(batch).reshape(-1, 1)
        else:
            arr = as_matrix(batch, self._n_features)
        ok = self._valid_rows(arr)
        if ok.all():  # the usual case: no copy
            self._update(arr)
            return self
        rows = arr[ok]
        self._rejected += int(ok.size - int(ok.sum()))
        if rows.shape[0]:
            self._update(rows)
        return self

    def reset(self: _D) -> _D:
        """Returns to the state right after fitting (windows, statistics and counters)."""
        self._require_fitted()
        self._clear_counters()
        self._reset_stream()
        return self

    @property
    def drift_detected(self) -> bool:
        """Whether the latest update signalled drift (see the class docstring for timing)."""
        return bool(self._drift_flag)

    @property
    def score(self) -> float | None:
        """The latest test statistic (None before the first test)."""
        return _optional(self._score)

    @property
    def threshold(self) -> float | None:
        """Decision threshold on the score's scale (None before the first test or where undefined).

        Where a detector signals drift on a high score, a score above it signals drift; the
        windowed two-sample tests give the critical value of their statistic at `alpha`.
        """
        return _optional(self._threshold)

    @property
    def p_value(self) -> float | None:
        """The latest p-value (None where undefined or before the first test)."""
        return _optional(self._p_value)

    @property
    def rejected(self) -> int:
        """Rows (or values) dropped because they held NaN or Inf."""
        return self._rejected

    @property
    def n_seen(self) -> int:
        """Rows (or values) accepted since fitting or the last reset."""
        return self._n_seen

    @property
    def detection_index(self) -> int | None:
        """0-based index (among accepted rows) where drift was first signalled, else None."""
        return None if self._detection_index < 0 else self._detection_index

    # -- subclass hooks -------------------------------------------------------------------

    @abstractmethod
    def _fit(self, reference: FloatArray) -> None:
        """Builds the fitted state from finite reference rows."""

    @abstractmethod
    def _reset_stream(self) -> None:
        """Builds the stream state as it is right after fitting."""

    @abstractmethod
    def _update(self, rows: FloatArray) -> None:
        """Consumes finite, validated rows (scalar detectors get an (n, 1) matrix)."""

    def _valid_rows(self, arr: FloatArray) -> NDArray[np.bool_]:
        """Rows the detector accepts; the others are dropped and counted in `rejected`."""
        return finite_rows(arr)

    def _mark_detection(self, row_index: int) -> None:
        """Records drift signalled at stream index `row_index`."""
        self._drift_flag = 1
        if self._detection_index < 0:
            self._detection_index = int(row_index)


_D = TypeVar("_D", bound=DriftDetector)
_S = TypeVar("_S", bound="OODScorer")


class OODScorer(_StatefulEstimator):
    """Base of out-of-distribution scorers: higher score = more out of distribution.

    `fit(reference)` fits on part of the reference and calibrates `threshold` on the
    held-out rest (`calibration_fraction`) so that a fraction `target_fpr` of in-distribution
    rows score above it. Rows with NaN/Inf get score NaN, are never flagged by `is_ood`, and
    are counted in `rejected`.
    """

    _BASE_FITTED_KEYS = ("_n_features", "_threshold")
    _BASE_STREAM_KEYS = ("_rejected",)
    #: Whether the scorer learns from the reference (False: only calibrates on it).
    _LEARNS = True

    def __init__(
        self,
        target_fpr: float = 0.05,
        calibration_fraction: float = 0.2,
        seed: int | None = None,
    ) -> None:
        self.target_fpr = check_open_unit("target_fpr", target_fpr)
        self.calibration_fraction = check_open_unit("calibration_fraction", calibration_fraction)
        super().__init__(seed)
        self._threshold = _NONE
        self._rejected = 0

    def _params(self) -> dict[str, object]:
        return {
            "target_fpr": self.target_fpr,
            "calibration_fraction": self.calibration_fraction,
            "seed": self.seed,
        }

    def fit(self: _S, reference: ArrayLike) -> _S:
        """Fits on the reference and calibrates `threshold` on its held-out part."""
        ref = as_matrix(reference, None, what="reference")
        ref = ref[finite_rows(ref)]
        if ref.shape[0] < 4:
            raise ValueError(f"reference needs at least 4 finite rows, got {ref.shape[0]}")
        self._n_features = ref.shape[1]
        if self._LEARNS:
            rng = np.random.default_rng([self._entropy, 0])
            order = rng.permutation(ref.shape[0])
            n_cal = max(1, int(round(self.calibration_fraction * ref.shape[0])))
            n_cal = min(n_cal, ref.shape[0] - 2)
            fit_rows, cal_rows = ref[order[n_cal:]], ref[order[:n_cal]]
            self._fit(fit_rows)
        else:
            self._fit(ref)
            cal_rows = ref
        self._fitted = True
        cal_scores = self._score_rows(cal_rows)
        self._threshold = float(np.quantile(cal_scores, 1.0 - self.target_fpr, method="higher"))
        self._rejected = 0
        return self

    def score(self, batch: ArrayLike) -> FloatArray:
        """OOD scores of the rows (NaN for rows with NaN/Inf, which are counted)."""
        self._require_fitted()
        arr = as_matrix(batch, self._n_features)
        ok = finite_rows(arr)
        out = np.full(arr.shape[0], np.nan)
        if ok.any():
            out[ok] = self._score_rows(arr[ok])
        self._rejected += int(ok.size - int(ok.sum()))
        return out

    def is_ood(self, batch: ArrayLike) -> NDArray[np.bool_]:
        """Rows scoring above the calibrated threshold (False for rejected rows)."""
        scores = self.score(batch)
        return np.asarray(np.nan_to_num(scores, nan=-np.inf) > self._threshold)

    def reset(self: _S) -> _S:
        """Clears the `rejected` counter (scorers carry no other stream state)."""
        self._require_fitted()
        self._rejected = 0
        return self

    @property
    def threshold(self) -> float | None:
        """Score above which a row is OOD, calibrated at `target_fpr` (None before fit)."""
        return _optional(self._threshold)

    @property
    def rejected(self) -> int:
        """Rows given to `score`/`is_ood` that held NaN or Inf."""
        return self._rejected

    @property
    def n_features(self) -> int:
        """Columns of the fitted reference."""
        return self._n_features

    @abstractmethod
    def _fit(self, reference: FloatArray) -> None:
        """Learns from finite reference rows (the calibration part is held out)."""

    @abstractmethod
    def _score_rows(self, rows: FloatArray) -> FloatArray:
        """Scores finite, validated rows."""
