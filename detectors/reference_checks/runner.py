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
    x = x_all[finite]
    seed = settings.seed
    p = _optional_probabilities(probabilities, n)
    y = None
    if labels is not None:
        y = check_labels(np.asarray(labels), n, None if p is None else p.shape[1])
    n_classes = _n_classes(p, y, priors)
    prior_array = None if priors is None else np.asarray(priors, dtype=np.float64).ravel()
    seed_rows = _optional_matrix(seed_reference, d, "seed reference")
    training = _optional_matrix(training_set, d, "training set")
    suites, offsets = _probe_rows(probe_suites, d)
    p_f = None if p is None else p[finite]
    y_f = None if y is None else y[finite]
    groups = _groups(p_f, y_f, len(index))
    has_classes = p_f is not None or y_f is not None
    poisoning_skip = (
        "poisoning checks are turned off"
        if not settings.poisoning_checks
        else "needs labels or probabilities (the checks work class by class)"
    )
    radius: list[float] = []
    representatives: list[NDArray[np.int64]] = []

    def the_representatives() -> NDArray[np.int64]:
        if not representatives:
            representatives.append(exact_representatives(x, seed))
        return representatives[0]

    def the_radius() -> float:
        if not radius:
            r, median = near_radius(
                x, settings.near_ratio, seed, representatives=the_representatives()
            )
            radius.extend((r, median))
        return radius[0]

    def run_duplicates() -> CheckResult:
        return find_duplicates(
            x,
            the_radius(),
            warn_share=settings.duplicate_warn_share,
            seed=seed,
            median_nn_distance=radius[1],
            representatives=the_representatives(),
        )

    plan: list[tuple[str, Callable[[], CheckResult] | str, bool]] = [
        (DUPLICATES_CHECK, run_duplicates, True),
        (
            PROBE_CHECK,
            (
                lambda: _with_suite_summary(
                    overlap(
                        x,
                        suites,
                        the_radius(),
                        check=PROBE_CHECK,
                        warn_share=settings.leakage_warn_share,
                        seed=seed,
                    ),
                    offsets,
                )
            )
            if suites is not None
            else "no probe suites given",
            True,
        ),
        (
            TRAINING_CHECK,
            (
                lambda: overlap(
                    x,
                    training,
                    the_radius(),
                    check=TRAINING_CHECK,
                    warn_share=settings.leakage_warn_share,
                    seed=seed,
                )
            )
            if training is not None
            else "no training set given",
            True,
        ),
        (
            PROBE_TRAINING_CHECK,
            (
                lambda: overlap(
                    suites,
                    training,
                    the_radius(),
                    check=PROBE_TRAINING_CHECK,
                    warn_share=settings.leakage_warn_share,
                    seed=seed,
                )
            )
            if suites is not None and training is not None
            else "needs probe suites and a training set",
            False,
        ),
        (
            SEED_CHECK,
            (
                lambda: seed_ood(
                    x,
                    seed_rows,
                    k=settings.outlier_k,
                    false_positive_rate=settings.seed_ood_false_positive_rate,
                    warn_share=settings.outlier_warn_share,
                    seed=seed,
                )
            )
            if seed_rows is not None
            else "no seed reference given (robust_outliers runs instead)",
            True,
        ),
        (
            ROBUST_CHECK,
            (
                lambda: robust_outliers(
                    x,
                    None if p_f is None and y_f is None else groups,
                    knn_z_max=settings.outlier_knn_z_max,
                    mahalanobis_z_max=settings.outlier_mahalanobis_z_max,
                    k=settings.outlier_k,
                    warn_share=settings.outlier_warn_share,
                    seed=seed,
                )
            )
            if seed_rows is None
            else "a seed reference was given (seed_ood runs instead)",
            True,
        ),
        (
            PREDICTED_CHECK,
            (
                lambda: class_balance(
                    np.argmax(p_f, axis=1).astype(np.int64),
                    prior_array,
                    n_classes=n_classes,
                    check=PREDICTED_CHECK,
                    alpha=settings.balance_alpha,
                    min_effect=settings.balance_min_effect,
                )
            )
            if p_f is not None
            else "no probabilities given",
            True,
        ),
        (
            LABELS_CHECK,
            (
                lambda: class_balance(
                    y_f,
                    prior_array,
                    n_classes=n_classes,
                    check=LABELS_CHECK,
                    alpha=settings.balance_alpha,
                    min_effect=settings.balance_min_effect,
                )
            )
            if y_f is not None
            else "no labels given",
            True,
        ),
        (
            LABEL_ERRORS_CHECK,
            (lambda: label_errors(p_f, y_f, warn_share=settings.label_error_warn_share))
            if p_f is not None and y_f is not None
            else "needs labels and probabilities",
            True,
        ),
        (
            SPECTRAL_CHECK,
            (
                lambda: spectral_signatures(
                    x,
                    groups,
                    whiten=settings.spectral_whiten,
                    n_components=settings.spectral_components,
                    n_directions=settings.spectral_directions,
                    z_max=settings.spectral_z_max,
                    class_warn_share=settings.spectral_class_warn_share,
                    seed=seed,
                )
            )
            if settings.poisoning_checks and has_classes
            else poisoning_skip,
            True,
        ),
        (
            CLUSTERING_CHECK,
            (
                lambda: activation_clustering(
                    x,
                    groups,
                    whiten=settings.clustering_whiten,
                    max_relative_size=settings.clustering_max_relative_size,
                    min_silhouette=settings.clustering_min_silhouette,
                    seed=seed,
                )
            )
            if settings.poisoning_checks and has_classes
            else poisoning_skip,
            True,
        ),
    ]

    results = [
        build_result(
            NON_FINITE_CHECK,
            n_rows=n,
            flagged=~finite,
            reasons=NON_FINITE,
            scores=np.ones(n),
            row_scores=(~finite).astype(np.float64),
            above_warn=not bool(finite.all()),
            summary={"non_finite_rows": int((~finite).sum())},
            message=f"{int((~finite).sum())} rows hold NaN or infinite values",
        )
    ]
    budget = settings.time_budget_s
    for name, run, on_reference_rows in plan:
        elapsed = time.perf_counter() - started
        if settings.only is not None and name not in settings.only:
            results.append(skipped(name, "not selected"))
            continue
        if isinstance(run, str):
            results.append(skipped(name, run))
            continue
        if len(index) == 0:
            results.append(skipped(name, "no finite rows"))
            continue
        if elapsed >= budget:
            results.append(
                skipped(name, f"time budget of {budget:g} s spent ({elapsed:.1f} s) before it")
            )
            continue
        t0 = time.perf_counter()
        result = run()
        if on_reference_rows and len(index) < n:
            result = result.remapped(index, n, related_too=name == DUPLICATES_CHECK)
        results.append(result.with_elapsed(time.perf_counter() - t0))
    return ReferenceCheckReport(
        n_rows=n,
        n_dims=d,
        results=tuple(results),
        elapsed_s=time.perf_counter() - started,
        settings=settings,
    )


def _optional_probabilities(probabilities: ArrayLike | None, n: int) -> FloatArray | None:
    if probabilities is None:
        return None
    return check_probabilities(np.asarray(probabilities, dtype=np.float64), n)


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


def _n_classes(p: FloatArray | None, y: NDArray[np.int64] | None, priors: ArrayLike | None) -> int:
    if p is not None:
        return int(p.shape[1])
    if priors is not None:
        return int(np.asarray(priors).size)
    if y is not None and len(y):
        return int(y.max()) + 1
    return 0


def _groups(p: FloatArray | None, y: NDArray[np.int64] | None, n: int) -> NDArray[np.int64]:
    """Classes for the poisoning checks: labels, else predicted classes (else unused)."""
    if y is not None:
        return y
    if p is not None:
        predicted: NDArray[np.int64] = np.argmax(p, axis=1).astype(np.int64)
        return predicted
    return np.zeros(n, dtype=np.int64)
