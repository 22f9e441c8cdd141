"""Checks of a reference sample before detectors learn from it: is it what it claims to be?

Every drift, OOD and performance verdict is only as good as its reference. These checks
look for duplicates, rows out of distribution (against a trusted seed, or robust outliers),
class imbalance against expected priors, poisoning signatures in embedding space (spectral
signatures, activation clustering), likely label errors (confident learning) and leakage
between the reference, the probe suites and the training set. Each returns a
`CheckResult` (flagged row indices, a reason code and a score per row, summary figures);
`run_reference_checks` runs every applicable one within a time budget. numpy and scipy
only; see detectors/README.md for the methods and their costs.
"""

from __future__ import annotations

from detectors.reference_checks.activation_clustering import activation_clustering
from detectors.reference_checks.class_balance import class_balance
from detectors.reference_checks.duplicates import find_duplicates, near_radius
from detectors.reference_checks.findings import REASONS, STATUSES, CheckResult, Status
from detectors.reference_checks.label_errors import label_errors
from detectors.reference_checks.leakage import overlap
from detectors.reference_checks.outliers import robust_outliers, seed_ood
from detectors.reference_checks.runner import (
    CHECKS,
    REPORT_SCHEMA_VERSION,
    CheckSettings,
    ReferenceCheckReport,
    run_reference_checks,
)
from detectors.reference_checks.spectral_signatures import spectral_signatures

__all__ = [
    "CHECKS",
    "REASONS",
    "REPORT_SCHEMA_VERSION",
    "STATUSES",
    "CheckResult",
    "CheckSettings",
    "ReferenceCheckReport",
    "Status",
    "activation_clustering",
    "class_balance",
    "find_duplicates",
    "label_errors",
    "near_radius",
    "overlap",
    "robust_outliers",
    "run_reference_checks",
    "seed_ood",
    "spectral_signatures",
]
