"""The monitor's state as a checkpoint: detectors, time windows, evidence, partial captures.

Nested dicts of numpy arrays, numbers and strings (no pickle), one entry per detector
stream, evidence stream and unfinished capture, each naming its model, version and
signal. Restoring is entry by entry: an entry of a signal or detector no longer
configured, or saved with other settings, is skipped (that detector starts fresh); a state
this codec did not write raises ValueError and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from service.monitor.monitored_signal import MonitoredSignal

STATE_FORMAT_VERSION = 1


def encode_state(
    signals: Sequence[MonitoredSignal], *, versions: Mapping[str, list[str]] | None
) -> dict[str, Any]:
    """The state of `signals`, with version labels where `versions` are given.

    The version labels are the shared label policy's now (its own checkpoint part); states
    saved by earlier releases carry them here and still load.
    """
    streams: dict[str, Any] = {}
    evidence: dict[str, Any] = {}
    captures: dict[str, Any] = {}
    for signal in signals:
        if signal.capture is not None and signal.capture.count:
            captures[str(len(captures))] = {
                "model": signal.model,
                "signal": signal.name,
                **signal.capture.state_dict(),
            }
        for version, stream in signal.streams.items():
            where = {"model": signal.model, "version": version, "signal": signal.name}
            evidence[str(len(evidence))] = {**where, **stream.evidence.state_dict()}
            for label, detector in stream.detectors.items():
                streams[str(len(streams))] = {
                    **where,
                    "detector": label,
                    "kind": detector.kind,
                    "state": detector.state_dict(),
                }
    state: dict[str, Any] = {
        "format_version": STATE_FORMAT_VERSION,
        "streams": streams,
        "captures": captures,
        "evidence": evidence,
    }
    if versions is not None:
        # JSON: model names may hold '/', which checkpoint keys may not.
        state["versions"] = json.dumps(dict(versions))
    return state


def check_state(state: object) -> dict[str, list[str]] | None:
    """Raises ValueError unless `state` is one `encode_state` wrote; its version labels."""
    if not isinstance(state, Mapping) or state.get("format_version") != STATE_FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, Mapping) else None
        raise ValueError(f"monitor state format_version {found!r} is not {STATE_FORMAT_VERSION}")
    for key in ("streams", "captures"):
        if not isinstance(state.get(key), Mapping):
            raise ValueError(f"monitor state lacks a {key!r} mapping")
    if "versions" not in state:
        return None
    try:
        versions = json.loads(str(state.get("versions")))
        if not isinstance(versions, dict):
            raise ValueError("not a mapping")
    except ValueError as exc:
        raise ValueError(f"monitor state versions unreadable: {exc}") from None
    return {str(model): [str(v) for v in listed] for model, listed in versions.items()}


def decode_state(state: Mapping[str, Any], signals: Sequence[MonitoredSignal]) -> list[str]:
    """Restores a checked state into `signals`; returns what was skipped, and why."""
    by_name = {(signal.model, signal.name): signal for signal in signals}

    def find(entry: Mapping[str, Any]) -> MonitoredSignal | None:
        return by_name.get((str(entry.get("model")), str(entry.get("signal"))))

    skipped: list[str] = []
    for entry in state["captures"].values():
        signal = find(entry)
        if signal is None or signal.capture is None:
            skipped.append(f"capture {entry.get('model')}/{entry.get('signal')}: unused")
            continue
        try:
            signal.capture.load_state_dict(dict(entry))
            signal.resume_capture()
        except (KeyError, ValueError) as exc:
            skipped.append(f"capture {signal.model}/{signal.name}: {exc}")
    for entry in state["streams"].values():
        what = (
            f"{entry.get('model')}/{entry.get('version')}/{entry.get('signal')}/"
            f"{entry.get('detector')}"
        )
        signal = find(entry)
        if signal is None or signal.reference is None:
            skipped.append(f"{what}: signal not configured or has no reference")
            continue
        label = str(entry.get("detector"))
        if label not in {d.label for d in signal.settings.detectors}:
            skipped.append(f"{what}: detector not configured")
            continue
        stream = signal.stream(str(entry.get("version")))
        detector = stream.detectors[label]
        try:
            if entry.get("kind") != detector.kind:
                raise ValueError(f"kind {entry.get('kind')!r} is now {detector.kind!r}")
            detector.load_state_dict(dict(entry["state"]))
        except (KeyError, TypeError, ValueError) as exc:
            skipped.append(f"{what}: {exc}")
            # A failed load may have changed part of the detector: start it fresh.
            stream.detectors[label] = signal.build(label)
    for entry in state.get("evidence", {}).values():
        signal = find(entry)
        evidence_of = signal.streams.get(str(entry.get("version"))) if signal else None
        if evidence_of is None:
            continue  # evidence of a stream with no restored detector: not needed
        try:
            evidence_of.evidence.load_state_dict(entry)
        except (KeyError, TypeError, ValueError) as exc:
            skipped.append(f"evidence {entry.get('model')}/{entry.get('signal')}: {exc}")
    return skipped
