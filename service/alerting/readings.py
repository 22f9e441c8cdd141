"""Readings: what every source of evidence hands to alerting, in one shape.

A reading is one evaluation of one stream at one moment. The monitor's detectors publish
kinds `drift` and `ood`, the probe suites `probe`; the rooms still to come publish
`performance` (realized or estimated model quality from ground truth), `guard` (per-client
attack suspicion) and `reference` (checks of a reference sample). Whatever the source, a
reading says the same things: a `score`, the `threshold` it is judged against, a `p_value`
where the source has one, a `verdict` (the source's own yes or no: drift detected, a
regression, ...) and named `evidence` values. Alert rules look at those fields only, so a
new source publishes readings and the rule engine does not change.

A reading is a plain value: `ReadingStore` keeps the latest per stream and a bounded
history of them; nothing else keeps a copy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol, get_args

SourceKind = Literal["drift", "ood", "probe", "performance", "guard", "reference"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)
NAMED_FIELDS = ("score", "threshold", "p_value")
"""The numeric fields every reading has; any other value name is looked up in evidence."""


@dataclass(frozen=True, slots=True)
class KindTerms:
    """What one kind of source calls its fields where people read them (labels, evidence)."""

    stream: str = "signal"
    """Label and evidence name of the reading's `signal` (a probe reading's is its suite)."""
    score: str = "score"
    threshold: str = "threshold"
    verdict: str = "verdict"
    stands: bool = False
    """The verdict stands until the source runs again: its stream never goes stale."""


KIND_TERMS: Mapping[SourceKind, KindTerms] = MappingProxyType(
    {
        "drift": KindTerms(verdict="drift_detected"),
        "ood": KindTerms(verdict="drift_detected"),
        "probe": KindTerms(
            stream="suite",
            score="accuracy",
            threshold="baseline_accuracy",
            verdict="regression",
            stands=True,
        ),
        "performance": KindTerms(stream="metric", verdict="degraded"),
        "guard": KindTerms(verdict="suspicious"),
        "reference": KindTerms(verdict="flagged", stands=True),
    }
)


class ReadingKey(NamedTuple):
    """Which stream a reading belongs to: one detector on one signal of one model version.

    `detector` is empty for sources that have none (a probe reading's `signal` is its
    suite), so a probe key never collides with a detector key (detector names are never
    empty). Sources of other kinds name their signals so that they do not collide either.
    """

    model: str
    version: str
    signal: str
    detector: str


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def json_ready(value: Any) -> Any:
    """Evidence as JSON has it: tuples become lists, mappings dicts (recursively)."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [json_ready(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class Reading:
    """One source's evaluation of one stream of one model version, read at `timestamp`.

    `evidence` holds named, JSON-ready values (numbers, strings, booleans, None, tuples
    and mappings of them); numeric ones can be alerted on by name, like `score`.
    """

    kind: SourceKind
    model: str
    version: str
    signal: str
    detector: str
    timestamp: float
    """Seconds since the epoch (`time.time()`)."""
    verdict: bool
    score: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KIND_TERMS:
            raise ValueError(f"reading kind {self.kind!r} is not one of {list(SOURCE_KINDS)}")
        clash = sorted(set(self.evidence) & {*NAMED_FIELDS, "value", "kind", "read_at"})
        if clash:
            raise ValueError(f"evidence names {clash} are reserved for the reading's own fields")
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))

    @property
    def key(self) -> ReadingKey:
        """The stream this reading belongs to."""
        return ReadingKey(self.model, self.version, self.signal, self.detector)

    @property
    def terms(self) -> KindTerms:
        """How this reading's kind names its fields."""
        return KIND_TERMS[self.kind]

    def value(self, name: str) -> float | None:
        """The finite number called `name` (score, threshold, p_value or an evidence value).

        None when the reading has no such value, or it is not a finite number.
        """
        if name in NAMED_FIELDS:
            return _finite(getattr(self, name))
        return _finite(self.evidence.get(name))

    def describe(self, value: float | None) -> dict[str, Any]:
        """This reading as JSON-ready incident evidence; `value` is what a rule looked at."""
        terms = self.terms
        described: dict[str, Any] = {"value": value, "kind": self.kind, terms.stream: self.signal}
        if self.detector:
            described["detector"] = self.detector
        described.update(
            {
                "read_at": self.timestamp,
                terms.verdict: self.verdict,
                terms.score: self.score,
                terms.threshold: self.threshold,
                "p_value": self.p_value,
            }
        )
        for name, item in self.evidence.items():  # the reading's own fields win
            described.setdefault(name, json_ready(item))
        return described


def reading_evidence(reading: Reading | None, value: float | None) -> dict[str, Any]:
    """What a reading says, as JSON-ready evidence (only `value` when there is no reading)."""
    return {"value": value} if reading is None else reading.describe(value)


class ReadingSink(Protocol):
    """Where sources publish readings (alerting's `ReadingStore`); must not block for long."""

    def publish(self, reading: Reading) -> None:
        """Take `reading` as the latest of its stream."""
        ...
