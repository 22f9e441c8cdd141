"""Recent readings per stream, bounded by age and count: the evidence behind incident plots."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.alerting.readings import SOURCE_KINDS, Reading, ReadingKey, SourceKind

STATE_FORMAT_VERSION = 1
# Checkpoints written before readings had kinds call every detector stream "detector".
_FORMER_KINDS: dict[str, SourceKind] = {"detector": "drift"}
_FIELDS = ("timestamp", "score", "threshold", "p_value", "ood_ratio", "flagged")

# One stored point: timestamp, score, threshold, p-value, OOD ratio (NaN when missing),
# and the reading's verdict (drift detected, a probe regression, ...).
_Point = tuple[float, float, float, float, float, bool]


@dataclass(frozen=True, slots=True)
class ReadingSeries:
    """One stream's readings over time as arrays (NaN where a reading had no value).

    `flagged` is the readings' verdict; for probe streams `score` is the accuracy and
    `threshold` the baseline accuracy.
    """

    key: ReadingKey
    kind: SourceKind
    timestamp: np.ndarray
    score: np.ndarray
    threshold: np.ndarray
    p_value: np.ndarray
    ood_ratio: np.ndarray
    flagged: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamp)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _point(reading: Reading) -> _Point:
    return (reading.timestamp, _nan(reading.score), _nan(reading.threshold),
            _nan(reading.p_value), _nan(reading.value("ood_ratio")), reading.verdict)


def _idle_repeat(reading: Reading, last: _Point | None) -> bool:
    """A time-window reading re-read without traffic: empty window, last outcome repeated.

    The monitor re-reads time-windowed detectors every second when no traffic comes, so
    their windows move on (its readings carry `window_fill` evidence); such a reading
    repeats the last completed window's outcome and is no new evidence. (A window that just
    completed also has an empty window, but a new outcome.)
    """
    if reading.value("window_fill") != 0.0 or last is None:
        return False
    point = _point(reading)
    return all(
        (math.isnan(a) and math.isnan(b)) or a == b
        for a, b in zip(point[1:5], last[1:5], strict=True)
    ) and point[5] == last[5]


class ReadingHistory:
    """Keeps, per stream, the readings of the last `max_age_seconds` (at most `max_points`).

    Thread-safe. A reading older than the newest one kept for its stream is ignored (the
    detector worker produces them in order; a straggler would only blur the plot). A
    reading that only repeats the last outcome because no traffic came (`_idle_repeat`) is
    kept as a gap: its time, no values, not flagged, so plots show no traffic as a gap.
    """

    def __init__(self, *, max_age_seconds: float = 7200.0, max_points: int = 2000) -> None:
        if not max_age_seconds > 0:
            raise ValueError(f"max_age_seconds must be > 0, got {max_age_seconds!r}")
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
        self.max_age_seconds = float(max_age_seconds)
        self.max_points = max_points
        self._lock = threading.Lock()
        self._streams: dict[ReadingKey, deque[_Point]] = {}
        self._kinds: dict[ReadingKey, SourceKind] = {}
        self._last_evidence: dict[ReadingKey, _Point] = {}  # latest point that was no gap

    def append(self, reading: Reading) -> bool:
        """Add a reading; False when it was ignored as older than the stream's newest."""
        if not isinstance(reading, Reading):
            raise TypeError(f"expected a Reading, got {type(reading)!r}")
        point = _point(reading)
        with self._lock:
            if _idle_repeat(reading, self._last_evidence.get(reading.key)):
                point = (point[0], math.nan, math.nan, math.nan, math.nan, False)
            return self._add(reading.key, reading.kind, point)

    def _add(self, key: ReadingKey, kind: SourceKind, point: _Point) -> bool:
        points = self._streams.get(key)
        if points is None:
            points = self._streams[key] = deque(maxlen=self.max_points)
            self._kinds[key] = kind
        if points and point[0] < points[-1][0]:
            return False
        points.append(point)
        if not all(math.isnan(value) for value in point[1:5]):
            self._last_evidence[key] = point
        oldest_kept = point[0] - self.max_age_seconds
        while points[0][0] < oldest_kept:
            points.popleft()
        return True

    def keys(self) -> list[ReadingKey]:
        """Every stream with readings, sorted."""
        with self._lock:
            return sorted(self._streams)

    def series(
        self, key: ReadingKey, *, since: float | None = None, until: float | None = None
    ) -> ReadingSeries:
        """The stream's readings with `since <= timestamp <= until` (empty if none)."""
        with self._lock:
            points = list(self._streams.get(key, ()))
            kind = self._kinds.get(key, "probe" if key.detector == "" else "drift")
        low = -math.inf if since is None else since
        high = math.inf if until is None else until
        points = [point for point in points if low <= point[0] <= high]
        columns = list(zip(*points, strict=True)) if points else [()] * len(_FIELDS)
        return ReadingSeries(
            key=key,
            kind=kind,
            timestamp=np.asarray(columns[0], dtype=np.float64),
            score=np.asarray(columns[1], dtype=np.float64),
            threshold=np.asarray(columns[2], dtype=np.float64),
            p_value=np.asarray(columns[3], dtype=np.float64),
            ood_ratio=np.asarray(columns[4], dtype=np.float64),
            flagged=np.asarray(columns[5], dtype=bool),
        )

    def state_dict(self) -> dict[str, Any]:
        """Every stream as arrays (a checkpoint); evidence beyond the OOD ratio is not kept."""
        with self._lock:
            keys = sorted(self._streams)
            streams: dict[str, Any] = {}
            for index, key in enumerate(keys):
                points = self._streams[key]
                columns = list(zip(*points, strict=True))
                stream: dict[str, Any] = {
                    "model": key.model, "version": key.version, "source": key.signal,
                    "detector": key.detector, "kind": self._kinds[key],
                }
                for name, column in zip(_FIELDS, columns, strict=True):
                    stream[name] = np.asarray(column, dtype=bool if name == "flagged"
                                              else np.float64)
                streams[str(index)] = stream
        return {"format_version": STATE_FORMAT_VERSION, "streams": streams}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore streams saved by `state_dict` (this history's limits apply).

        Raises ValueError (and changes nothing) when the state is not one this class wrote.
        """
        if state.get("format_version") != STATE_FORMAT_VERSION:
            raise ValueError(
                f"reading history format_version {state.get('format_version')!r} is not "
                f"{STATE_FORMAT_VERSION}"
            )
        streams = state.get("streams", {})
        if not isinstance(streams, Mapping):
            raise ValueError("reading history 'streams' must be a mapping")
        restored: list[tuple[ReadingKey, SourceKind, list[_Point]]] = []
        for index, raw in streams.items():
            try:
                key = ReadingKey(str(raw["model"]), str(raw["version"]), str(raw["source"]),
                                 str(raw["detector"]))
                kind = _FORMER_KINDS.get(str(raw["kind"]), raw["kind"])
                if kind not in SOURCE_KINDS:
                    raise ValueError(f"kind {kind!r}")
                columns = [np.asarray(raw[name]).reshape(-1) for name in _FIELDS]
                if len({len(column) for column in columns}) != 1:
                    raise ValueError("columns differ in length")
                points = [
                    (float(t), float(s), float(h), float(p), float(o), bool(f))
                    for t, s, h, p, o, f in zip(*columns, strict=True)
                ]
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"reading history stream {index!r} is malformed: {error}"
                ) from None
            restored.append((key, kind, points))
        with self._lock:
            self._streams.clear()
            self._kinds.clear()
            self._last_evidence.clear()
            for key, kind, points in restored:
                for point in points:
                    self._add(key, kind, point)
