"""Streaming drift, change and out-of-distribution detectors in numpy and scipy."""

from __future__ import annotations

from detectors.base import DriftDetector, OODScorer
from detectors.ks import KSDrift
from detectors.mmd import MMDDrift

__all__ = [
    "DriftDetector",
    "KSDrift",
    "MMDDrift",
    "OODScorer",
]
