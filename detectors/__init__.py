"""Streaming drift, change and out-of-distribution detectors in numpy and scipy."""

from __future__ import annotations

from detectors.base import DriftDetector, OODScorer
from detectors.cvm import CVMDrift
from detectors.cvm_online import CVMOnline
from detectors.ks import KSDrift
from detectors.mmd import MMDDrift
from detectors.rff_mmd_online import RffMmdOnline

__all__ = [
    "CVMDrift",
    "CVMOnline",
    "DriftDetector",
    "KSDrift",
    "MMDDrift",
    "OODScorer",
    "RffMmdOnline",
]
