"""One call that runs every applicable reference check within a time budget.

`run_reference_checks(vectors, ...)` takes what is known about a reference (its vectors,
and optionally the model's probabilities, the true labels, a trusted seed sample, probe
suites, the training set and the expected class priors), runs the checks those inputs
allow, most important first, and returns a `ReferenceCheckReport`. A check that has not
started when the budget is spent is reported as skipped, never silently dropped; a check
that lacks its inputs is reported as skipped saying which.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import (
    FloatArray,
    as_matrix,
    check_open_unit,
    check_positive_float,
    check_positive_int,
    finite_rows,
)
from detectors.reference_checks.activation_clustering import CHECK as CLUSTERING_CHECK
from detectors.reference_checks.activation_clustering import activation_clustering
from detectors.reference_checks.class_balance import LABELS_CHECK, PREDICTED_CHECK, class_balance
from detectors.reference_checks.duplicates import CHECK as DUPLICATES_CHECK
from detectors.reference_checks.duplicates import find_duplicates, near_radius
from detectors.reference_checks.findings import NON_FINITE, CheckResult, build_result, skipped
from detectors.reference_checks.label_errors import CHECK as LABEL_ERRORS_CHECK
from detectors.reference_checks.label_errors import (
    check_labels,
    check_probabilities,
    label_errors,
)
from detectors.reference_checks.leakage import (
    PROBE_CHECK,
    PROBE_TRAINING_CHECK,
    TRAINING_CHECK,
    overlap,
)
from detectors.reference_checks.neighbours import exact_representatives
from detectors.reference_checks.outliers import ROBUST_CHECK, SEED_CHECK, robust_outliers, seed_ood
from detectors.reference_checks.spectral_signatures import CHECK as SPECTRAL_CHECK
from detectors.reference_checks.spectral_signatures import spectral_signatures

NON_FINITE_CHECK = "non_finite"
#: Every check's name, in the order they run and are reported.
CHECKS: tuple[str, ...] = (
    NON_FINITE_CHECK,
    DUPLICATES_CHECK,
    PROBE_CHECK,
    TRAINING_CHECK,
    PROBE_TRAINING_CHECK,
    SEED_CHECK,
    ROBUST_CHECK,
    PREDICTED_CHECK,
    LABELS_CHECK,
    LABEL_ERRORS_CHECK,
    SPECTRAL_CHECK,
    CLUSTERING_CHECK,
)
REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds and limits of the reference checks (defaults chosen on validation data).

    The defaults come from `python -m benchmarks.reference_hygiene --validation`, on data
    apart from what the benchmark scores (see benchmarks/README.md).
    """

    time_budget_s: float = 30.0
    """Checks not started within this many seconds are reported as skipped."""
    seed: int = 0
    """Seeds every random choice (projections, samples, hash functions)."""
    near_ratio: float = 0.1
    """Rows closer than this fraction of the median nearest-neighbour distance are near copies."""
    duplicate_warn_share: float = 0.01
    """Duplicates flag the reference above this share of rows."""
    leakage_warn_share: float = 0.0
    """Probe or training overlap flags above this share (0: any overlap)."""
    outlier_knn_z_max: float = 3.5
    """Robust z of the log kNN distance above which a row is an outlier (no seed reference)."""
    outlier_mahalanobis_z_max: float = 5.0
    """Robust z of the log robust Mahalanobis distance above which a row is an outlier."""
    outlier_k: int = 10
    """Which neighbour's distance the kNN outlier scores use."""
    seed_ood_false_positive_rate: float = 0.005
    """Share of seed-like rows allowed above the seed OOD threshold."""
    outlier_warn_share: float = 0.02
    """Outliers (or OOD rows against the seed) flag above this share."""
    balance_alpha: float = 1e-3
    """Class balance flags when the chi-squared p-value is below this..."""
    balance_min_effect: float = 0.02
    """...and the total variation distance to the priors is at least this."""
    label_error_warn_share: float = 0.02
    """Likely label errors flag above this share."""
    spectral_whiten: bool = True
    """Whiten each class by a robust covariance first (SPECTRE); False: Tran et al. as published."""
    spectral_components: int = 32
    """Spectral signatures: principal components kept per class before whitening."""
    spectral_directions: int = 1
    """Spectral signatures: top singular directions each row is scored on."""
    spectral_z_max: float = 60.0
    """Spectral score (robust z over the directions) above which a row is flagged."""
    spectral_class_warn_share: float = 0.04
    """Spectral signatures flag when some class has more than this share flagged."""
    clustering_max_relative_size: float = 0.35
    """Activation clustering: largest relative size of a poisoned cluster."""
    clustering_min_silhouette: float = 0.8
    """Activation clustering: smallest mean silhouette of a poisoned split."""
    clustering_whiten: bool = True
    """Activation clustering: whiten each class by a robust covariance before 2-means."""
    poisoning_checks: bool = True
    """Run spectral signatures and activation clustering (meaningful on model embeddings)."""
    only: tuple[str, ...] | None = None
    """Run only these checks (names from `CHECKS`); None runs every applicable one."""

    def __post_init__(self) -> None:
        check_positive_float("time_budget_s", self.time_budget_s)
        if self.only is not None:
            unknown = sorted(set(self.only) - set(CHECKS))
            if unknown:
                raise ValueError(f"only names unknown checks {unknown}; checks: {list(CHECKS)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        check_open_unit("near_ratio", self.near_ratio)
        for name in (
            "duplicate_warn_share",
            "leakage_warn_share",
            "outlier_warn_share",
            "label_error_warn_share",
            "spectral_class_warn_share",
            "balance_min_effect",
        ):
            value = check_positive_float(name, getattr(self, name), allow_zero=True)
            if value >= 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        check_positive_float("outlier_knn_z_max", self.outlier_knn_z_max)
        check_positive_float("outlier_mahalanobis_z_max", self.outlier_mahalanobis_z_max)
        check_positive_float("spectral_z_max", self.spectral_z_max)
        check_positive_int("outlier_k", self.outlier_k)
        check_positive_int("spectral_components", self.spectral_components)
        check_positive_int("spectral_directions", self.spectral_directions)
        check_open_unit("seed_ood_false_positive_rate", self.seed_ood_false_positive_rate)
        check_open_unit("balance_alpha", self.balance_alpha)
        check_open_unit("clustering_max_relative_size", self.clustering_max_relative_size)
        check_open_unit("clustering_min_silhouette", self.clustering_min_silhouette)


@dataclass(frozen=True)
class ReferenceCheckReport:
    """Every check's result on one reference, in `CHECKS` order."""

    n_rows: int
    n_dims: int
    results: tuple[CheckResult, ...]
    elapsed_s: float
    settings: CheckSettings

    @property
    def flagged(self) -> bool:
        """Whether any check is above its warn threshold."""
        return any(r.flagged for r in self.results)

    @property
    def flagged_checks(self) -> list[str]:
        """Names of the checks above their warn thresholds."""
        return [r.check for r in self.results if r.flagged]

    def result(self, check: str) -> CheckResult:
        """The result of one check by name; KeyError naming the checks there are."""
        for r in self.results:
            if r.check == check:
                return r
        raise KeyError(f"no check {check!r}; checks: {[r.check for r in self.results]}")

    def flagged_rows(self, checks: Iterable[str] | None = None) -> NDArray[np.int64]:
        """Reference rows flagged by any of `checks` (default: every check on the reference)."""
        wanted = None if checks is None else set(checks)
        parts = [
            r.rows
            for r in self.results
            if r.subject == "reference" and (wanted is None or r.check in wanted)
        ]
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(parts)).astype(np.int64)

    def to_dict(self, include_rows: bool = True) -> dict[str, object]:
        """The report as plain Python types (the `--json` of `outrider reference check`)."""
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "rows": self.n_rows,
            "dims": self.n_dims,
            "flagged": self.flagged,
            "flagged_checks": self.flagged_checks,
            "elapsed_s": self.elapsed_s,
            "time_budget_s": self.settings.time_budget_s,
            "settings": dataclasses.asdict(self.settings),
            "checks": [r.to_dict(include_rows) for r in self.results],
        }


def run_reference_checks(
    vectors: ArrayLike,
    *,
    probabilities: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    seed_reference: ArrayLike | None = None,
    probe_suites: Mapping[str, ArrayLike] | None = None,
    training_set: ArrayLike | None = None,
    priors: ArrayLike | None = None,
    settings: CheckSettings | None = None,
) -> ReferenceCheckReport:
    """Runs every check the inputs allow on a reference; see the module docstring.

    Parameters
    ----------
    vectors
        (n, d) reference rows (the signal's vectors: embeddings, features, flattened
        tensors). Rows with NaN/Inf are flagged by `non_finite` and left out of the others.
    probabilities
        (n, n_classes) the model's class probabilities for the rows (out of sample for
        label errors): predicted classes for class balance and for grouping the poisoning
        checks when there are no labels.
    labels
        (n,) true class indices: label errors, class balance of labels, and the grouping of
        the poisoning checks.
    seed_reference
        (m, d) trusted rows: `seed_ood` instead of `robust_outliers`.
    probe_suites
        suite name -> (k, d) probe rows in the same space as `vectors`: `probe_leakage`
        (its `related` indexes the suites concatenated in the mapping's order; the summary
        gives each suite's offset).
    training_set
        (t, d) the model's training rows in the same space: `training_leakage`, and with
        probe suites `probe_training_leakage`.
    priors
        (n_classes,) expected class shares for the class balance checks.
    settings
        thresholds and the time budget (defaults: `CheckSettings()`).
    """
    settings = settings if settings is not None else CheckSettings()
    started = time.perf_counter()
    x_all = as_matrix(vectors, None, what="vectors")
    n, d = x_all.shape
    finite = finite_rows(x_all)
    index = np.flatnonzero(finite).astype(np.int64)
    inputs = _inputs(
        x_all[finite], finite, probabilities, labels, seed_reference, probe_suites,
        training_set, priors, settings,
    )  # fmt: skip
    results = [_non_finite(finite)]
    budget = settings.time_budget_s
    for name, run in _PLAN:
        elapsed = time.perf_counter() - started
        if settings.only is not None and name not in settings.only:
            results.append(skipped(name, "not selected"))
            continue
        if len(index) == 0:
            results.append(skipped(name, "no finite rows"))
            continue
        why_not = _missing_inputs(name, inputs)
        if why_not:
            results.append(skipped(name, why_not))
            continue
        if elapsed >= budget:
            results.append(
                skipped(name, f"time budget of {budget:g} s spent ({elapsed:.1f} s) before it")
            )
            continue
        t0 = time.perf_counter()
        result = run(inputs)
        if result.subject == "reference" and len(index) < n:
            result = result.remapped(index, n, related_too=name == DUPLICATES_CHECK)
        results.append(result.with_elapsed(time.perf_counter() - t0))
    return ReferenceCheckReport(
        n_rows=n,
        n_dims=d,
        results=tuple(results),
        elapsed_s=time.perf_counter() - started,
        settings=settings,
    )


@dataclass
class _Inputs:
    """Validated inputs; reference rows (and their probabilities and labels) finite only."""

    x: FloatArray
    probabilities: FloatArray | None
    labels: NDArray[np.int64] | None
    seed_rows: FloatArray | None
    training: FloatArray | None
    suites: FloatArray | None
    suite_offsets: dict[str, tuple[int, int]]
    priors: FloatArray | None
    n_classes: int
    settings: CheckSettings
    _representatives: NDArray[np.int64] | None = None
    _radius: tuple[float, float] | None = None

    @property
    def groups(self) -> NDArray[np.int64]:
        """Classes for the poisoning checks: the labels, else the predicted classes."""
        if self.labels is not None:
            return self.labels
        assert self.probabilities is not None
        predicted: NDArray[np.int64] = np.argmax(self.probabilities, axis=1).astype(np.int64)
        return predicted

    def representatives(self) -> NDArray[np.int64]:
        """Exact-duplicate representatives, hashed once for duplicates and the radius."""
        if self._representatives is None:
            self._representatives = exact_representatives(self.x, self.settings.seed)
        return self._representatives

    def radius(self) -> tuple[float, float]:
        """(near radius, median nearest-neighbour distance), shared by duplicates and leakage."""
        if self._radius is None:
            self._radius = near_radius(
                self.x,
                self.settings.near_ratio,
                self.settings.seed,
                representatives=self.representatives(),
            )
        return self._radius


def _inputs(
    x: FloatArray,
    finite: NDArray[np.bool_],
    probabilities: ArrayLike | None,
    labels: ArrayLike | None,
    seed_reference: ArrayLike | None,
    probe_suites: Mapping[str, ArrayLike] | None,
    training_set: ArrayLike | None,
    priors: ArrayLike | None,
    settings: CheckSettings,
) -> _Inputs:
    n, d = len(finite), x.shape[1]
    p = None
    if probabilities is not None:
        p = check_probabilities(np.asarray(probabilities, dtype=np.float64), n)
    prior_array = None if priors is None else np.asarray(priors, dtype=np.float64).ravel()
    if p is not None:
        n_classes = int(p.shape[1])
    elif prior_array is not None:
        n_classes = int(prior_array.size)
    else:
        n_classes = 0
    y = None
    if labels is not None:
        y = check_labels(np.asarray(labels), n, n_classes or None)
        n_classes = n_classes or (int(y.max()) + 1 if n else 0)
    suites, offsets = _probe_rows(probe_suites, d)
    return _Inputs(
        x=x,
        probabilities=None if p is None else p[finite],
        labels=None if y is None else y[finite],
        seed_rows=_optional_matrix(seed_reference, d, "seed reference"),
        training=_optional_matrix(training_set, d, "training set"),
        suites=suites,
        suite_offsets=offsets,
        priors=prior_array,
        n_classes=n_classes,
        settings=settings,
    )


def _non_finite(finite: NDArray[np.bool_]) -> CheckResult:
    n, bad = len(finite), int((~finite).sum())
    return build_result(
        NON_FINITE_CHECK,
        n_rows=n,
        flagged=~finite,
        reasons=NON_FINITE,
        scores=np.ones(n),
        row_scores=(~finite).astype(np.float64),
        above_warn=bad > 0,
        summary={"non_finite_rows": bad},
        message=f"{bad} rows hold NaN or infinite values",
    )


def _missing_inputs(check: str, i: _Inputs) -> str:
    """Why `check` cannot run on these inputs ("" when it can)."""
    has_classes = i.probabilities is not None or i.labels is not None
    needs = {
        PROBE_CHECK: ("no probe suites given", i.suites is not None),
        TRAINING_CHECK: ("no training set given", i.training is not None),
        PROBE_TRAINING_CHECK: (
            "needs probe suites and a training set",
            i.suites is not None and i.training is not None,
        ),
        SEED_CHECK: (
            "no seed reference given (robust_outliers runs instead)",
            i.seed_rows is not None,
        ),
        ROBUST_CHECK: ("a seed reference was given (seed_ood runs instead)", i.seed_rows is None),
        PREDICTED_CHECK: ("no probabilities given", i.probabilities is not None),
        LABELS_CHECK: ("no labels given", i.labels is not None),
        LABEL_ERRORS_CHECK: (
            "needs labels and probabilities",
            i.labels is not None and i.probabilities is not None,
        ),
    }
    if check in (SPECTRAL_CHECK, CLUSTERING_CHECK):
        if not i.settings.poisoning_checks:
            return "poisoning checks are turned off"
        if not has_classes:
            return "needs labels or probabilities (the checks work class by class)"
    why, ready = needs.get(check, ("", True))
    return "" if ready else why


# One function per check; each runs only when `_missing_inputs` found what it needs.


def _duplicates(i: _Inputs) -> CheckResult:
    radius, median = i.radius()
    s = i.settings
    return find_duplicates(
        i.x,
        radius,
        warn_share=s.duplicate_warn_share,
        seed=s.seed,
        median_nn_distance=median,
        representatives=i.representatives(),
    )


def _probe_leakage(i: _Inputs) -> CheckResult:
    assert i.suites is not None
    s = i.settings
    result = overlap(
        i.x, i.suites, i.radius()[0], check=PROBE_CHECK, warn_share=s.leakage_warn_share,
        seed=s.seed,
    )  # fmt: skip
    return _with_suite_summary(result, i.suite_offsets)


def _training_leakage(i: _Inputs) -> CheckResult:
    assert i.training is not None
    s = i.settings
    return overlap(
        i.x, i.training, i.radius()[0], check=TRAINING_CHECK, warn_share=s.leakage_warn_share,
        seed=s.seed,
    )  # fmt: skip


def _probe_training_leakage(i: _Inputs) -> CheckResult:
    assert i.suites is not None and i.training is not None
    s = i.settings
    return overlap(
        i.suites, i.training, i.radius()[0], check=PROBE_TRAINING_CHECK,
        warn_share=s.leakage_warn_share, seed=s.seed,
    )  # fmt: skip


def _seed_ood(i: _Inputs) -> CheckResult:
    assert i.seed_rows is not None
    s = i.settings
    return seed_ood(
        i.x, i.seed_rows, k=s.outlier_k, false_positive_rate=s.seed_ood_false_positive_rate,
        warn_share=s.outlier_warn_share, seed=s.seed,
    )  # fmt: skip


def _robust_outliers(i: _Inputs) -> CheckResult:
    s = i.settings
    has_classes = i.probabilities is not None or i.labels is not None
    return robust_outliers(
        i.x, i.groups if has_classes else None, knn_z_max=s.outlier_knn_z_max,
        mahalanobis_z_max=s.outlier_mahalanobis_z_max, k=s.outlier_k,
        warn_share=s.outlier_warn_share, seed=s.seed,
    )  # fmt: skip


def _class_balance_predicted(i: _Inputs) -> CheckResult:
    assert i.probabilities is not None
    s = i.settings
    predicted = np.argmax(i.probabilities, axis=1).astype(np.int64)
    return class_balance(
        predicted, i.priors, n_classes=i.n_classes, check=PREDICTED_CHECK,
        alpha=s.balance_alpha, min_effect=s.balance_min_effect,
    )  # fmt: skip


def _class_balance_labels(i: _Inputs) -> CheckResult:
    assert i.labels is not None
    s = i.settings
    return class_balance(
        i.labels, i.priors, n_classes=i.n_classes, check=LABELS_CHECK, alpha=s.balance_alpha,
        min_effect=s.balance_min_effect,
    )  # fmt: skip


def _label_errors(i: _Inputs) -> CheckResult:
    assert i.probabilities is not None and i.labels is not None
    return label_errors(i.probabilities, i.labels, warn_share=i.settings.label_error_warn_share)


def _spectral_signatures(i: _Inputs) -> CheckResult:
    s = i.settings
    return spectral_signatures(
        i.x, i.groups, whiten=s.spectral_whiten, n_components=s.spectral_components,
        n_directions=s.spectral_directions, z_max=s.spectral_z_max,
        class_warn_share=s.spectral_class_warn_share, seed=s.seed,
    )  # fmt: skip


def _activation_clustering(i: _Inputs) -> CheckResult:
    s = i.settings
    return activation_clustering(
        i.x, i.groups, whiten=s.clustering_whiten,
        max_relative_size=s.clustering_max_relative_size,
        min_silhouette=s.clustering_min_silhouette, seed=s.seed,
    )  # fmt: skip


_PLAN: tuple[tuple[str, Callable[[_Inputs], CheckResult]], ...] = (
    (DUPLICATES_CHECK, _duplicates),
    (PROBE_CHECK, _probe_leakage),
    (TRAINING_CHECK, _training_leakage),
    (PROBE_TRAINING_CHECK, _probe_training_leakage),
    (SEED_CHECK, _seed_ood),
    (ROBUST_CHECK, _robust_outliers),
    (PREDICTED_CHECK, _class_balance_predicted),
    (LABELS_CHECK, _class_balance_labels),
    (LABEL_ERRORS_CHECK, _label_errors),
    (SPECTRAL_CHECK, _spectral_signatures),
    (CLUSTERING_CHECK, _activation_clustering),
)


def _optional_matrix(rows: ArrayLike | None, d: int, what: str) -> FloatArray | None:
    if rows is None:
        return None
    matrix = as_matrix(rows, d, what=what)
    keep = finite_rows(matrix)
    return matrix[keep] if not keep.all() else matrix


def _probe_rows(
    suites: Mapping[str, ArrayLike] | None, d: int
) -> tuple[FloatArray | None, dict[str, tuple[int, int]]]:
    """All probe rows concatenated, and each suite's (offset, rows) in that concatenation."""
    if not suites:
        return None, {}
    parts, offsets, offset = [], {}, 0
    for name, rows in suites.items():
        matrix = as_matrix(rows, d, what=f"probe suite {name!r}")
        if not finite_rows(matrix).all():
            raise ValueError(f"probe suite {name!r} holds NaN or infinite values")
        parts.append(matrix)
        offsets[name] = (offset, matrix.shape[0])
        offset += matrix.shape[0]
    return np.concatenate(parts, axis=0), offsets


def _with_suite_summary(result: CheckResult, offsets: Mapping[str, tuple[int, int]]) -> CheckResult:
    """Adds each suite's offset, rows and overlapping reference rows to a probe_leakage result."""
    per_suite: dict[str, object] = {}
    for name, (offset, count) in offsets.items():
        inside = (result.related >= offset) & (result.related < offset + count)
        per_suite[name] = {"offset": offset, "rows": count, "reference_rows": int(inside.sum())}
    return dataclasses.replace(result, summary={**result.summary, "suites": per_suite})
