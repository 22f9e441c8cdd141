"""Readings as the monitor and the probes publish them, and a sink that records them."""

from __future__ import annotations

from collections.abc import Sequence

from service.alerting.readings import Reading


def drift_reading(
    *,
    model: str,
    version: str,
    signal: str,
    detector: str,
    timestamp: float,
    drift_detected: bool,
    score: float | None,
    threshold: float | None,
    p_value: float | None,
    ood_ratio: float | None = None,
    window_fill: float = 1.0,
    top_mean_shifts: Sequence[tuple[int, float]] = (),
    example_request_ids: tuple[str, ...] = (),
    kind: str = "drift",
) -> Reading:
    """A detector's reading with the evidence the monitor attaches to it."""
    return Reading(
        kind=kind,  # type: ignore[arg-type]
        model=model,
        version=version,
        signal=signal,
        detector=detector,
        timestamp=timestamp,
        verdict=drift_detected,
        score=score,
        threshold=threshold,
        p_value=p_value,
        evidence={
            "ood_ratio": ood_ratio,
            "window_fill": window_fill,
            "top_mean_shifts": tuple(
                {"dimension": dim, "shift": shift} for dim, shift in top_mean_shifts
            ),
            "example_request_ids": example_request_ids,
        },
    )


def probe_reading(
    *,
    model: str,
    version: str,
    suite: str,
    timestamp: float,
    regression: bool,
    accuracy: float,
    baseline_accuracy: float,
    p_value: float | None,
) -> Reading:
    """A probe suite's reading as the probe scheduler publishes it."""
    return Reading(
        kind="probe",
        model=model,
        version=version,
        signal=suite,
        detector="",
        timestamp=timestamp,
        verdict=regression,
        score=accuracy,
        threshold=baseline_accuracy,
        p_value=p_value,
    )


class RecordingSink:
    """A reading sink that keeps every reading published to it, in order."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []

    def publish(self, reading: Reading) -> None:
        self.readings.append(reading)
