"""Adapters running alibi-detect drift detectors behind outrider's detector API.

alibi-detect is an optional extra (``pip install 'outrider[alibi]'``); it pins numpy<2, so
it usually lives in its own environment. Nothing here imports it until an adapter is built.

Two adapters, because alibi-detect has two kinds of drift detector:

- `AlibiDetector` wraps a two-sample detector (``KSDrift``, ``CVMDrift``, ``MMDDrift``,
  ``LSDDDrift``, ``ChiSquareDrift``, ``FETDrift``) as a windowed test of the reference
  against the last `window_size` rows, with the same window timing as
  `detectors.windowed.WindowedTwoSampleTest`.
- `AlibiOnlineDetector` wraps an ERT-calibrated online detector (``MMDDriftOnline``,
  ``LSDDDriftOnline``, ``CVMDriftOnline``), feeding it one row at a time.

`state_dict()` holds our counters (and, for `AlibiDetector`, the window) but not
alibi-detect's own fitted state, which it can only save through pickle-based files:
`load_state_dict` needs an adapter already fitted on the same reference, and an online
adapter restarts alibi-detect's stream (its time step goes back to 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import DriftDetector, FloatArray, check_choice, check_positive_int
from detectors.multiple_testing import combine_p_values
from detectors.windowed import TestOutcome, WindowedTwoSampleTest

TWO_SAMPLE_DETECTORS = (
    "KSDrift",
    "CVMDrift",
    "MMDDrift",
    "LSDDDrift",
    "ChiSquareDrift",
    "FETDrift",
)
# FETDriftOnline is left out: it breaks ties at random inside a private method.
ONLINE_DETECTORS = ("MMDDriftOnline", "LSDDDriftOnline", "CVMDriftOnline")
# alibi-detect defaults these to TensorFlow; outrider's extra brings PyTorch.
_TORCH_BACKED = ("MMDDrift", "LSDDDrift", "MMDDriftOnline", "LSDDDriftOnline")
_INSTALL_HINT = (
    "alibi-detect is not installed: pip install 'outrider[alibi]' (it pins numpy<2, so it "
    "usually needs its own virtual environment; see benchmarks/README.md)"
)


def import_alibi_cd() -> Any:
    """The ``alibi_detect.cd`` module, or an ImportError naming the ``outrider[alibi]`` extra."""
    try:
        import alibi_detect.cd as cd
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return cd


def _seed_alibi(entropy: int) -> None:
    # alibi-detect draws permutations and bootstrap streams from numpy's and torch's global
    # generators and takes no seed argument, so the only way to make it repeatable is to
    # seed those globals right before each call into it.
    np.random.seed(entropy % 2**32)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(entropy % 2**63)


def _as_float(value: Any, reduce: str) -> float:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).all():
        return float("nan")
    return float(np.nanmax(arr) if reduce == "max" else np.nanmin(arr))


class AlibiDetector(WindowedTwoSampleTest):
    """An alibi-detect two-sample detector tested on the last `window_size` rows.

    Parameters
    ----------
    detector
        Name of the alibi-detect class, one of `TWO_SAMPLE_DETECTORS`.
    reference
        Reference rows (or call `fit` later).
    window_size, test_every, alpha, seed
        As for `detectors.windowed.WindowedTwoSampleTest`; `alpha` is passed as alibi-detect's
        ``p_val``. `seed` seeds numpy's and torch's global generators before each test,
        because alibi-detect has no seed argument.
    **alibi_kwargs
        Passed to the alibi-detect constructor (e.g. ``correction='fdr'``, ``n_permutations``).
        ``backend`` defaults to ``'pytorch'`` for MMD and LSDD.

    As in `detectors.KSDrift`, `score` is the largest feature distance (the MMD or LSDD
    estimate for those tests) and `p_value` the feature p-values combined by alibi-detect's
    ``correction`` (Bonferroni by default; "fdr" is Benjamini-Hochberg), compared with
    `alpha`. `threshold` is on the scale of `score`: alibi-detect's distance threshold for
    MMD and LSDD, None for the feature-wise tests (alibi-detect reports no critical value).
    Memory: alibi-detect's copy of the reference plus the window. Raises ImportError
    naming ``outrider[alibi]`` when alibi-detect is missing.
    """

    def __init__(
        self,
        detector: str,
        reference: ArrayLike | None = None,
        *,
        window_size: int = 100,
        test_every: int | None = None,
        alpha: float = 0.05,
        seed: int | None = None,
        **alibi_kwargs: Any,
    ) -> None:
        check_choice("detector", detector, TWO_SAMPLE_DETECTORS)
        super().__init__(window_size=window_size, test_every=test_every, alpha=alpha, seed=seed)
        self.detector = detector
        self.alibi_kwargs = dict(alibi_kwargs)
        self._cls = getattr(import_alibi_cd(), detector)
        self._alibi: Any = None
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "detector": self.detector, "alibi_kwargs": self.alibi_kwargs}

    def _fit(self, reference: FloatArray) -> None:
        kwargs = dict(self.alibi_kwargs)
        ref: np.ndarray = reference
        if self.detector in _TORCH_BACKED:
            kwargs.setdefault("backend", "pytorch")
            ref = reference.astype(np.float32)
        if self.seed is not None:
            _seed_alibi(self._entropy)
        self._alibi = self._cls(ref, p_val=self.alpha, **kwargs)

    def _after_load(self) -> None:
        if self._alibi is None:
            self._fitted = False
            raise ValueError(
                "fit the adapter on its reference before load_state_dict: alibi-detect's "
                "fitted state is not part of the state dict (it needs pickle)"
            )
        super()._after_load()

    def _test(self, window: FloatArray, rng: np.random.Generator) -> TestOutcome:
        batch: np.ndarray = window
        if self.detector in _TORCH_BACKED:
            batch = window.astype(np.float32)
        if self.seed is not None:
            _seed_alibi(int(rng.integers(2**63)))
        data = self._alibi.predict(batch)["data"]
        p_values = np.atleast_1d(np.asarray(data["p_val"], dtype=np.float64))
        correction = str(self.alibi_kwargs.get("correction", "bonferroni"))
        # On the scale of `score`, where alibi-detect reports one (MMD, LSDD); the
        # feature-wise tests give none, and then `threshold` is None.
        threshold = data.get("distance_threshold")
        return TestOutcome(
            detected=bool(np.any(data["is_drift"])),
            score=_as_float(data["distance"], "max"),
            p_value=combine_p_values(p_values, correction),
            threshold=float("nan") if threshold is None else _as_float(threshold, "max"),
        )


class AlibiOnlineDetector(DriftDetector):
    """An alibi-detect online detector, calibrated to `ert`, fed one row at a time.

    Parameters
    ----------
    detector
        Name of the alibi-detect class, one of `ONLINE_DETECTORS`.
    reference
        Reference rows (or call `fit` later); calibration runs in `fit`.
    ert
        Expected run time without drift, in rows.
    window_size
        The test window (alibi-detect's ``window_size``, or the single entry of
        ``window_sizes`` for CVM).
    seed
        Seeds numpy's and torch's global generators before calibration (alibi-detect has no
        seed argument).
    **alibi_kwargs
        Passed to the alibi-detect constructor (e.g. ``n_bootstraps``); ``verbose`` defaults
        to False and ``backend`` to ``'pytorch'`` for MMD and LSDD.

    `drift_detected` says whether any row of the latest update crossed its threshold;
    `score` and `threshold` are the latest statistic and threshold (the largest feature
    statistic for CVM). Decisions are alibi-detect's own ``predict``; after each row the
    adapter drops the per-step history ``predict`` accumulates (statistics, decisions, and
    for CVM every row seen), so memory stays O(reference + window) on long streams.
    """

    def __init__(
        self,
        detector: str,
        reference: ArrayLike | None = None,
        *,
        ert: float = 500.0,
        window_size: int = 20,
        seed: int | None = None,
        **alibi_kwargs: Any,
    ) -> None:
        check_choice("detector", detector, ONLINE_DETECTORS)
        super().__init__(seed=seed)
        if isinstance(ert, bool) or not isinstance(ert, (int, float)) or not ert > 1:
            raise ValueError(f"ert must be a number > 1, got {ert!r}")
        self.detector = detector
        self.ert = float(ert)
        self.window_size = check_positive_int("window_size", window_size, minimum=2)
        self.alibi_kwargs = dict(alibi_kwargs)
        self._cls = getattr(import_alibi_cd(), detector)
        self._alibi: Any = None
        if reference is not None:
            self.fit(reference)

    def _params(self) -> dict[str, object]:
        return {
            "detector": self.detector,
            "ert": self.ert,
            "window_size": self.window_size,
            "seed": self.seed,
            "alibi_kwargs": self.alibi_kwargs,
        }

    @property
    def _torch(self) -> bool:
        return self.detector in _TORCH_BACKED

    def _fit(self, reference: FloatArray) -> None:
        kwargs = dict(self.alibi_kwargs)
        kwargs.setdefault("verbose", False)
        if self._torch:
            kwargs.setdefault("backend", "pytorch")
            kwargs["window_size"] = self.window_size
            ref: np.ndarray = reference.astype(np.float32)
        else:
            kwargs["window_sizes"] = [self.window_size]
            ref = reference
        if self.seed is not None:
            _seed_alibi(self._entropy)
        self._alibi = self._cls(ref, ert=self.ert, **kwargs)

    def _reset_stream(self) -> None:
        if self._alibi is not None:
            self._alibi.reset_state()

    def _after_load(self) -> None:
        if self._alibi is None:
            self._fitted = False
            raise ValueError(
                "fit the adapter on its reference before load_state_dict: alibi-detect's "
                "calibrated state is not part of the state dict (it needs pickle)"
            )
        # Only our counters were saved: alibi-detect's stream starts again from t=0.
        self._alibi.reset_state()

    def _update(self, rows: FloatArray) -> None:
        self._drift_flag = 0
        batch = rows.astype(np.float32) if self._torch else rows
        for row in batch:
            data = self._alibi.predict(row, return_test_stat=True)["data"]
            self._trim_history()
            self._n_seen += 1
            self._score = _as_float(data["test_stat"], "max")
            self._threshold = _as_float(data["threshold"], "max")
            if data["is_drift"]:
                self._mark_detection(self._n_seen - 1)

    def _trim_history(self) -> None:
        # predict() appends every step's statistic and decision to arrays (and CVM keeps
        # every row in `xs`): memory and per-step time would grow with the stream. Only the
        # last window of rows is ever read again, so the rest is dropped here. The PyTorch
        # detectors keep that state on the backend object the public class wraps, which
        # offers no other way to bound it.
        state = getattr(self._alibi, "_detector", self._alibi)
        state.test_stats = state.test_stats[-1:]
        state.drift_preds = state.drift_preds[-1:]
        xs = getattr(state, "xs", None)
        if isinstance(xs, np.ndarray) and xs.ndim == 2 and xs.shape[0] > self.window_size:
            state.xs = xs[-self.window_size :]
