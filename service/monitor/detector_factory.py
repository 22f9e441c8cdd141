"""Builds the configured detectors of a signal from the detectors/ package and a reference.

Which class a type is, and how it runs, comes from `detector_registry`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import detectors
from detectors.base import DriftDetector, OODScorer
from service.monitor.detector_registry import DETECTORS
from service.monitor.monitored_detector import (
    MonitoredDetector,
    OodRateWindow,
    StreamingDetector,
    TumblingTimeWindow,
)
from service.monitor.settings import DetectorSettings

# Without `window`, a time window keeps at most this many rows per period.
DEFAULT_TIME_WINDOW_CAP = 5000
DEFAULT_SEED = 0


class DetectorBuildError(ValueError):
    """A detector that cannot be built from its settings; the message names it."""


def _detector_class(kind: str) -> type[Any]:
    name = DETECTORS[kind].class_name
    cls = getattr(detectors, name, None)
    if cls is None:
        raise DetectorBuildError(f"detector type {kind!r} needs detectors.{name}, not available")
    return cls  # type: ignore[no-any-return]


def time_window_cap(settings: DetectorSettings, max_samples_per_second: float | None) -> int:
    """Rows a time window keeps per period: `window` if given, else what the rate allows."""
    if settings.window is not None:
        return settings.window
    assert settings.window_seconds is not None
    if max_samples_per_second is None:
        return DEFAULT_TIME_WINDOW_CAP
    per_period = math.ceil(max_samples_per_second * settings.window_seconds)
    return max(2, min(DEFAULT_TIME_WINDOW_CAP, per_period))


def subsample_reference(reference: np.ndarray, rows: int | None, seed: object) -> np.ndarray:
    """At most `rows` reference rows, drawn without replacement by a seeded generator."""
    if rows is None or reference.shape[0] <= rows:
        return reference
    entropy = seed if isinstance(seed, int) and seed >= 0 else DEFAULT_SEED
    picked = np.random.default_rng([entropy, 7]).choice(reference.shape[0], rows, replace=False)
    return reference[np.sort(picked)]


def build_detector(
    settings: DetectorSettings,
    reference: np.ndarray,
    *,
    max_samples_per_second: float | None = None,
) -> MonitoredDetector:
    """A fitted detector for one (model, version, signal); raises `DetectorBuildError`."""
    cls = _detector_class(settings.type)
    params = dict(settings.params)
    params.setdefault("seed", DEFAULT_SEED)
    reference = subsample_reference(reference, settings.reference_rows, params["seed"])
    label = f"detector {settings.label!r} ({settings.type})"
    try:
        if DETECTORS[settings.type].role == "scorer":
            alpha = float(params.pop("alpha", 0.01))
            scorer = cls(**params)
            if not isinstance(scorer, OODScorer):
                raise DetectorBuildError(f"{label}: {cls.__name__} is not an OOD scorer")
            scorer.fit(reference)
            cap = time_window_cap(settings, max_samples_per_second)
            return OodRateWindow(
                scorer,
                window=settings.window,
                seconds=settings.window_seconds,
                alpha=alpha,
                cap=cap,
            )

        def make(window_size: int) -> DriftDetector:
            detector = cls(window_size=window_size, **params)
            if not isinstance(detector, DriftDetector):
                raise DetectorBuildError(f"{label}: {cls.__name__} is not a drift detector")
            return detector.fit(reference)

        if settings.window_seconds is not None:
            cap = time_window_cap(settings, max_samples_per_second)
            make(cap)  # fail now, at start, if the parameters are wrong
            return TumblingTimeWindow(_cached(make), settings.window_seconds, cap)
        assert settings.window is not None
        return StreamingDetector(make(settings.window), settings.window)
    except DetectorBuildError:
        raise
    except (TypeError, ValueError) as exc:
        raise DetectorBuildError(f"{label}: {exc}") from None


def _cached(make: Callable[[int], DriftDetector]) -> Callable[[int], DriftDetector]:
    """Reuses the fitted detector of a window size (reset) instead of refitting each period."""
    cache: dict[int, DriftDetector] = {}

    def get(n: int) -> DriftDetector:
        detector = cache.get(n)
        if detector is None:
            if len(cache) >= 4:
                cache.pop(next(iter(cache)))
            detector = cache[n] = make(n)
            return detector
        return detector.reset()

    return get
