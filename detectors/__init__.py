"""Streaming drift, change and out-of-distribution detectors in numpy and scipy.

Every detector follows one contract: constructor arguments stored under their own names
and validated, a reference given at construction or by `fit`, `update(batch) -> self`,
read-only `drift_detected`, `score`, `threshold`, `p_value`, `rejected`, `n_seen`,
`reset()` and a pickle-free `state_dict()` / `load_state_dict()`. OOD scorers offer
`fit`, `score`, `threshold` and `is_ood`. Performance: realized metrics with confidence
intervals (`detectors.performance_metrics`), label-free estimators with
`fit(probabilities, labels)` / `estimate(probabilities)` (`detectors.performance_estimation`)
and `PerformanceDegradationTest`. `QueryGuard` watches every query per client for
query-based attacks and model extraction. See detectors/README.md for when to use which.
"""

from __future__ import annotations

from detectors.adwin import ADWIN
from detectors.base import DriftDetector, OODScorer
from detectors.bbsd import BBSDDrift
from detectors.chi_square import ChiSquareDrift
from detectors.cusum import CUSUM
from detectors.cvm import CVMDrift
from detectors.cvm_online import CVMOnline
from detectors.knn import KnnScorer
from detectors.ks import KSDrift
from detectors.logit_scores import EnergyScorer, MaxSoftmaxScorer
from detectors.mahalanobis import MahalanobisScorer
from detectors.mmd import MMDDrift
from detectors.ood_rate import OODRateTest
from detectors.page_hinkley import PageHinkley
from detectors.pca_reconstruction import PCAReconstructionDrift
from detectors.performance_degradation import PerformanceDegradationTest
from detectors.performance_estimation import (
    ConfidenceBasedEstimator,
    PerformanceEstimator,
    ThresholdedConfidenceEstimator,
)
from detectors.performance_metrics import MetricValue
from detectors.query_fingerprint import QueryFingerprinter
from detectors.query_guard import ClientSuspicion, Observation, QueryGuard
from detectors.rff_mmd_online import RffMmdOnline

__all__ = [
    "ADWIN",
    "BBSDDrift",
    "CUSUM",
    "CVMDrift",
    "CVMOnline",
    "ChiSquareDrift",
    "ClientSuspicion",
    "ConfidenceBasedEstimator",
    "DriftDetector",
    "EnergyScorer",
    "KSDrift",
    "KnnScorer",
    "MMDDrift",
    "MahalanobisScorer",
    "MaxSoftmaxScorer",
    "MetricValue",
    "OODRateTest",
    "OODScorer",
    "Observation",
    "PCAReconstructionDrift",
    "PageHinkley",
    "PerformanceDegradationTest",
    "PerformanceEstimator",
    "QueryFingerprinter",
    "QueryGuard",
    "RffMmdOnline",
    "ThresholdedConfidenceEstimator",
]
