"""The detectors a signal can run: their config names, classes and how the monitor runs them.

The one list. Settings validate `type` against it, the factory builds from it, and the
configuration reference lists it. To offer a new detector from the `detectors` package,
add one line: its config name, its class name there, and its role:
- `window`: a two-sample test of a window (`window` rows, or `window_seconds`);
- `online`: a detector calibrated on a run length, fed row by row (`window` rows only);
- `scorer`: an OOD scorer; the monitor tests its share of flagged rows per window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Role = Literal["window", "online", "scorer"]


@dataclass(frozen=True, slots=True)
class DetectorKind:
    """One detector type as configured (`type`) and as found in the detectors package."""

    type: str
    class_name: str
    role: Role


DETECTORS: Mapping[str, DetectorKind] = MappingProxyType(
    {
        kind.type: kind
        for kind in (
            DetectorKind("ks", "KSDrift", "window"),
            DetectorKind("mmd", "MMDDrift", "window"),
            DetectorKind("cvm", "CVMDrift", "window"),
            DetectorKind("chi_square", "ChiSquareDrift", "window"),
            DetectorKind("bbsd", "BBSDDrift", "window"),
            DetectorKind("pca_reconstruction", "PCAReconstructionDrift", "window"),
            DetectorKind("rff_mmd_online", "RffMmdOnline", "online"),
            DetectorKind("cvm_online", "CVMOnline", "online"),
            DetectorKind("mahalanobis", "MahalanobisScorer", "scorer"),
            DetectorKind("knn", "KnnScorer", "scorer"),
            DetectorKind("energy", "EnergyScorer", "scorer"),
            DetectorKind("max_softmax", "MaxSoftmaxScorer", "scorer"),
        )
    }
)


def detector_kind(type_: str) -> DetectorKind:
    """The registered kind of `type_`; ValueError naming the valid types otherwise."""
    kind = DETECTORS.get(type_)
    if kind is None:
        valid = ", ".join(repr(name) for name in DETECTORS)
        raise ValueError(f"unknown detector type {type_!r}; valid types: {valid}")
    return kind
