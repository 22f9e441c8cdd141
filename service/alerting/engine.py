"""In-process alert rules over detector and probe readings, with Prometheus semantics.

Each rule watches the streams its selector matches. One alert instance exists per
(rule, model, version, signal or suite, detector) and moves
inactive -> pending (condition true) -> firing (true for `for`) -> resolved (false for
`keep_firing_for`), as Prometheus does: a rule with `for: 0` fires at the first evaluation
that sees its condition, and a pending alert whose condition clears goes straight back to
inactive. `outrider_alert_state{alert,severity,model}` is read at scrape time, every
transition is logged and handed to `on_transition` (which opens incidents and runs hooks).
A transition whose callback raised is kept and handed over again on later evaluations
(see `AlertEngine`), so a full disk delays an incident instead of losing it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Literal

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from service.alerting.events import AlertEvent
from service.alerting.readings import DetectorReading, ProbeReading, Reading, ReadingKey
from service.alerting.settings import (
    AlertRuleSettings,
    OodRatioAbove,
    PValueBelow,
    ScoreAbove,
)

AlertState = Literal["inactive", "pending", "firing"]
TransitionKind = Literal["pending", "firing", "resolved", "inactive"]
"""Where an instance went: `inactive` is a pending alert whose condition cleared."""

STATE_VALUES: Mapping[AlertState, int] = MappingProxyType(
    {"inactive": 0, "pending": 1, "firing": 2}
)
STATE_FORMAT_VERSION = 1
FAILURE_LOG_INTERVAL = 60.0
"""Seconds between two error lines about failing callbacks (each failing round counts)."""

_log = structlog.get_logger("outrider.alerts")


@dataclass(frozen=True, slots=True)
class AlertInstance:
    """A snapshot of one alert instance: which rule, which stream, where it stands."""

    alert: str
    severity: str
    state: AlertState
    key: ReadingKey
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    active_since: float
    """When the condition last became true (start of pending)."""
    fired_at: float | None
    value: float | None
    """The value the condition looked at on the last evaluation (score, p-value, ...)."""

    @property
    def fingerprint(self) -> str:
        """A stable id of the instance (alert name and labels), the same across restarts."""
        canonical = json.dumps([self.alert, sorted(self.labels.items())], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One instance moving from one state to another at time `at`."""

    instance: AlertInstance
    from_state: AlertState
    to_state: TransitionKind
    at: float
    reading: Reading | None
    """The latest reading of the instance's stream when it moved (None after a restore)."""

    def evidence(self) -> dict[str, Any]:
        """Detector (or probe) statistics at transition time, for the incident record."""
        return reading_evidence(self.reading, self.instance.value)

    def to_alert_event(
        self, *, incident_id: int | None = None, incident_url: str | None = None
    ) -> AlertEvent | None:
        """The hooks' view of this transition; None for pending and cancelled-pending moves."""
        if self.to_state == "firing":
            return alert_event(
                self.instance,
                "firing",
                evidence=self.evidence(),
                incident_id=incident_id,
                incident_url=incident_url,
            )
        if self.to_state == "resolved":
            return alert_event(
                self.instance,
                "resolved",
                ends_at=self.at,
                evidence=self.evidence(),
                incident_id=incident_id,
                incident_url=incident_url,
            )
        return None


def reading_evidence(reading: Reading | None, value: float | None) -> dict[str, Any]:
    """What a reading says, as JSON-ready evidence: statistics, top dimensions, request ids."""
    evidence: dict[str, Any] = {"value": value}
    if isinstance(reading, DetectorReading):
        evidence.update(
            detector=reading.detector,
            signal=reading.signal,
            read_at=reading.timestamp,
            drift_detected=reading.drift_detected,
            score=reading.score,
            threshold=reading.threshold,
            p_value=reading.p_value,
            ood_ratio=reading.ood_ratio,
            window_fill=reading.window_fill,
            top_dimensions=[
                {"dimension": dim, "statistic": stat} for dim, stat in reading.top_dimensions
            ],
            example_request_ids=list(reading.example_request_ids),
        )
    elif isinstance(reading, ProbeReading):
        evidence.update(
            suite=reading.suite,
            read_at=reading.timestamp,
            regression=reading.regression,
            accuracy=reading.accuracy,
            baseline_accuracy=reading.baseline_accuracy,
            p_value=reading.p_value,
        )
    return evidence


def alert_event(
    instance: AlertInstance,
    status: Literal["firing", "resolved"],
    *,
    ends_at: float | None = None,
    evidence: Mapping[str, Any] | None = None,
    incident_id: int | None = None,
    incident_url: str | None = None,
) -> AlertEvent:
    """The one conversion from an in-process alert instance to the hooks' AlertEvent."""
    started = instance.fired_at if instance.fired_at is not None else instance.active_since
    return AlertEvent(
        name=instance.alert,
        severity=instance.severity,
        status=status,
        model=instance.key.model,
        version=instance.key.version,
        labels=instance.labels,
        annotations=instance.annotations,
        starts_at=_utc(started),
        ends_at=None if ends_at is None else _utc(ends_at),
        fingerprint=instance.fingerprint,
        incident_id=incident_id,
        incident_url=incident_url,
        evidence=evidence or {},
    )


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


@dataclass(slots=True)
class _Instance:
    state: AlertState
    active_since: float
    fired_at: float | None = None
    keep_firing_since: float | None = None
    value: float | None = None


@dataclass(slots=True)
class _Undelivered:
    """A transition whose callback has not yet returned without raising."""

    transition: AlertTransition
    attempts: int = 0


@dataclass(slots=True)
class _Rule:
    settings: AlertRuleSettings
    matches: dict[ReadingKey, bool] = field(default_factory=dict)

    def selects(self, reading: Reading) -> bool:
        key = reading.key
        cached = self.matches.get(key)
        if cached is None:
            selector = self.settings.selector
            if self.settings.watches_probes:
                cached = isinstance(reading, ProbeReading) and fnmatch.fnmatchcase(
                    key.source, selector.signal
                )
            else:
                cached = isinstance(reading, DetectorReading) and (
                    fnmatch.fnmatchcase(key.source, selector.signal)
                    and fnmatch.fnmatchcase(key.detector, selector.detector)
                )
            cached = cached and fnmatch.fnmatchcase(key.model, selector.model)
            self.matches[key] = cached
        return cached


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def condition_value(rule: AlertRuleSettings, reading: Reading) -> tuple[bool, float | None]:
    """Whether `rule`'s condition holds on `reading`, and the value it looked at.

    A missing or non-finite statistic never satisfies a condition.
    """
    condition = rule.condition
    if isinstance(reading, ProbeReading):
        return condition == "probe_regression" and reading.regression, _finite(reading.accuracy)
    if condition == "drift_detected":
        return reading.drift_detected, _finite(reading.score)
    if isinstance(condition, ScoreAbove):
        score = _finite(reading.score)
        return score is not None and score > condition.score_above, score
    if isinstance(condition, PValueBelow):
        p_value = _finite(reading.p_value)
        return p_value is not None and p_value < condition.p_value_below, p_value
    if isinstance(condition, OodRatioAbove):
        ratio = _finite(reading.ood_ratio)
        return ratio is not None and ratio > condition.ood_ratio_above, ratio
    return False, None


class _TemplateValues(dict[str, object]):
    def __missing__(self, name: str) -> str:
        return "{" + name + "}"


def _render(template: str | None, values: Mapping[str, object]) -> str | None:
    if template is None:
        return None
    try:
        return template.format_map(_TemplateValues(values))
    except (ValueError, TypeError, KeyError, IndexError):
        # A format spec such as {score:.2f} on a missing value ("n/a"): keep the raw text
        # rather than lose the annotation.
        return template


class AlertEngine(Collector):
    """Evaluates alert rules over the latest reading of every stream.

    Thread-safe: the monitor worker calls `observe` and `evaluate`, Prometheus scrapes call
    `collect`, the admin endpoints call `firing`. `on_transition` runs in the thread that
    called `evaluate`, after the engine's lock is released, in transition order.

    A transition whose `on_transition` raised (the incident store's disk is full, say) is
    kept and handed over again at the start of every later `evaluate`, until a call returns.
    Transitions of the same instance stay in order: while one waits, the later ones of that
    instance wait behind it without being tried, so an instance that fired and resolved
    during an outage has its incident opened and then resolved, and the hooks see firing
    then resolved, once the store recovers. Other instances are not held up. At most
    `max_undelivered` transitions wait; beyond that the oldest is dropped and logged. The
    callback must therefore be safe to call again for a transition it failed part way
    through (`IncidentFlow` is). Failing rounds are logged at error level, at most once per
    `FAILURE_LOG_INTERVAL` seconds of evaluation time; `callback_failures` and
    `undelivered` count them for metrics. Evaluations run one at a time, callbacks included,
    so two threads never hand over the same waiting transition.

    `stale_after` (seconds, None = never) makes a detector stream whose latest reading is
    older than that count as "condition false", as Prometheus treats a series that stopped:
    a model version that no longer gets traffic (e.g. after a rollback) must not keep its
    alert firing forever. Probe readings never go stale: a suite's verdict stands until the
    suite runs again. An instance restored from a checkpoint counts its restore time as
    its latest reading until a real one arrives.
    """

    def __init__(
        self,
        rules: Sequence[AlertRuleSettings],
        *,
        registry: CollectorRegistry | None,
        on_transition: Callable[[AlertTransition], None],
        clock: Callable[[], float] = time.time,
        stale_after: float | None = None,
        max_undelivered: int = 256,
    ) -> None:
        if stale_after is not None and not stale_after > 0:
            raise ValueError(f"stale_after must be > 0 seconds or None, got {stale_after!r}")
        if max_undelivered < 1:
            raise ValueError(f"max_undelivered must be >= 1, got {max_undelivered!r}")
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"alert rule names must be unique, repeated: {duplicates}")
        self.rules = tuple(rules)
        self.on_transition = on_transition
        self.clock = clock
        self.stale_after = stale_after
        self.max_undelivered = max_undelivered
        self._rules = {rule.name: _Rule(rule) for rule in rules}
        self._lock = threading.Lock()
        # Held for a whole evaluation, callbacks included (`_lock` is not: scrapes must not
        # wait for SQLite); it serialises hand-overs so each happens once and in order.
        self._evaluation_lock = threading.Lock()
        self._undelivered: deque[_Undelivered] = deque()
        self._callback_failures = 0
        self._failure_logged_at: float | None = None
        self._unlogged_failing_rounds = 0
        self._latest: dict[ReadingKey, Reading] = {}
        self._instances: dict[tuple[str, ReadingKey], _Instance] = {}
        self._seen_models: dict[str, set[str]] = {name: set() for name in self._rules}
        self._restored_at: dict[tuple[str, ReadingKey], float] = {}
        if registry is not None:
            registry.register(self)

    def observe(self, reading: Reading) -> None:
        """Keep `reading` as the latest of its stream (one older than the kept one is ignored)."""
        if not isinstance(reading, DetectorReading | ProbeReading):
            raise TypeError(f"expected a DetectorReading or ProbeReading, got {type(reading)!r}")
        key = reading.key
        with self._lock:
            kept = self._latest.get(key)
            if kept is None or reading.timestamp >= kept.timestamp:
                self._latest[key] = reading

    @property
    def callback_failures(self) -> int:
        """How many `on_transition` calls have raised since the engine was built."""
        return self._callback_failures

    @property
    def undelivered(self) -> int:
        """How many transitions wait for `on_transition` to be retried."""
        return len(self._undelivered)

    def evaluate(self, now: float | None = None) -> list[AlertTransition]:
        """Apply every rule to the latest readings at time `now`; return the transitions made.

        Transitions still waiting from earlier rounds are handed to `on_transition` first.
        """
        with self._evaluation_lock:
            at = self.clock() if now is None else now
            transitions: list[AlertTransition] = []
            with self._lock:
                for name, rule in self._rules.items():
                    for reading in self._latest.values():
                        if rule.selects(reading):
                            transitions += self._step(name, rule.settings, reading.key, reading, at)
                for name, key in [k for k in self._instances if k[1] not in self._latest]:
                    # Restored from a checkpoint and no reading since: wait, or go stale.
                    transitions += self._step(name, self._rules[name].settings, key, None, at)
            for transition in transitions:
                self._announce(transition)
            self._undelivered.extend(_Undelivered(transition) for transition in transitions)
            self._deliver(at)
        return transitions

    def _is_stale(self, name: str, key: ReadingKey, reading: Reading | None, at: float) -> bool:
        if self.stale_after is None or key.detector == "":  # probe streams never go stale
            return False
        last = reading.timestamp if reading is not None else self._restored_at.get((name, key))
        return last is not None and at - last >= self.stale_after

    def _step(
        self,
        name: str,
        rule: AlertRuleSettings,
        key: ReadingKey,
        reading: Reading | None,
        at: float,
    ) -> list[AlertTransition]:
        """Move one instance for one evaluation; zero or one transition."""
        instance = self._instances.get((name, key))
        if self._is_stale(name, key, reading, at):
            holds, value = False, None
        elif reading is None:
            return []  # restored, no reading yet, not stale: nothing known, nothing changes
        else:
            holds, value = condition_value(rule, reading)
        self._seen_models[name].add(key.model)
        if instance is None:
            if not holds:
                return []
            instance = _Instance(state="pending", active_since=at, value=value)
            self._instances[(name, key)] = instance
            if rule.for_ > 0:
                return [
                    self._transition(name, rule, key, reading, instance, "inactive", "pending", at)
                ]
            previous: AlertState = "inactive"  # for: 0 fires at once, as Prometheus does
        else:
            instance.value = value
            previous = instance.state
        if holds:
            instance.keep_firing_since = None
            if instance.state == "pending" and at - instance.active_since >= rule.for_:
                instance.state = "firing"
                instance.fired_at = at
                return [
                    self._transition(name, rule, key, reading, instance, previous, "firing", at)
                ]
            return []
        if instance.state == "firing":
            if instance.keep_firing_since is None:
                instance.keep_firing_since = at
            if at - instance.keep_firing_since < rule.keep_firing_for:
                return []
        del self._instances[(name, key)]
        self._restored_at.pop((name, key), None)
        to_state: TransitionKind = "resolved" if previous == "firing" else "inactive"
        return [self._transition(name, rule, key, reading, instance, previous, to_state, at)]

    def _transition(
        self,
        name: str,
        rule: AlertRuleSettings,
        key: ReadingKey,
        reading: Reading | None,
        instance: _Instance,
        from_state: AlertState,
        to_state: TransitionKind,
        at: float,
    ) -> AlertTransition:
        state: AlertState = "inactive" if to_state in ("resolved", "inactive") else instance.state
        snapshot = self._snapshot(name, rule, key, instance, state, reading)
        return AlertTransition(snapshot, from_state, to_state, at, reading)

    def _snapshot(
        self,
        name: str,
        rule: AlertRuleSettings,
        key: ReadingKey,
        instance: _Instance,
        state: AlertState,
        reading: Reading | None,
    ) -> AlertInstance:
        labels = dict(rule.labels)
        labels.update(alertname=name, severity=rule.severity, model=key.model, version=key.version)
        if rule.watches_probes:
            labels["suite"] = key.source
        else:
            labels.update(signal=key.source, detector=key.detector)
        values: dict[str, object] = {
            "alert": name,
            "severity": rule.severity,
            "model": key.model,
            "version": key.version,
            "signal": key.source,
            "detector": key.detector,
            "value": _or_na(instance.value),
        }
        if isinstance(reading, DetectorReading):
            values.update(
                score=_or_na(reading.score),
                threshold=_or_na(reading.threshold),
                p_value=_or_na(reading.p_value),
                ood_ratio=_or_na(reading.ood_ratio),
            )
        elif isinstance(reading, ProbeReading):
            values.update(
                score=_or_na(reading.accuracy),
                threshold=_or_na(reading.baseline_accuracy),
                p_value=_or_na(reading.p_value),
                ood_ratio="n/a",
            )
        else:
            values.update(score="n/a", threshold="n/a", p_value="n/a", ood_ratio="n/a")
        annotations = {
            field_name: rendered
            for field_name, template in rule.annotations.model_dump().items()
            if (rendered := _render(template, values)) is not None
        }
        return AlertInstance(
            alert=name,
            severity=rule.severity,
            state=state,
            key=key,
            labels=MappingProxyType(labels),
            annotations=MappingProxyType(annotations),
            active_since=instance.active_since,
            fired_at=instance.fired_at,
            value=instance.value,
        )

    def _announce(self, transition: AlertTransition) -> None:
        instance = transition.instance
        log = _log.warning if transition.to_state == "firing" else _log.info
        log(
            "alert_transition",
            alert=instance.alert,
            severity=instance.severity,
            from_state=transition.from_state,
            to_state=transition.to_state,
            model=instance.key.model,
            version=instance.key.version,
            source=instance.key.source,
            detector=instance.key.detector,
            value=instance.value,
            active_since=instance.active_since,
            at=transition.at,
            fingerprint=instance.fingerprint,
            summary=instance.annotations.get("summary"),
        )

    def _deliver(self, at: float) -> None:
        """Hand every waiting transition to `on_transition`, oldest first; keep the failures."""
        held: set[tuple[str, ReadingKey]] = set()  # instances with an earlier one still waiting
        waiting: deque[_Undelivered] = deque()
        failed: list[tuple[AlertTransition, Exception]] = []
        for item in self._undelivered:
            instance = item.transition.instance
            if (instance.alert, instance.key) in held:
                waiting.append(item)
                continue
            item.attempts += 1
            try:
                self.on_transition(item.transition)
            except Exception as error:
                held.add((instance.alert, instance.key))
                waiting.append(item)
                failed.append((item.transition, error))
                continue
            if item.attempts > 1:
                _log.info(
                    "alert_transition_delivered_late",
                    alert=instance.alert,
                    to_state=item.transition.to_state,
                    fingerprint=instance.fingerprint,
                    attempts=item.attempts,
                    delay_seconds=at - item.transition.at,
                )
        while len(waiting) > self.max_undelivered:
            dropped = waiting.popleft()
            _log.error(
                "alert_transition_dropped",
                alert=dropped.transition.instance.alert,
                to_state=dropped.transition.to_state,
                fingerprint=dropped.transition.instance.fingerprint,
                at=dropped.transition.at,
                attempts=dropped.attempts,
                max_undelivered=self.max_undelivered,
            )
        self._undelivered = waiting
        if failed:
            self._callback_failures += len(failed)
            self._log_failing_round(failed, at)

    def _log_failing_round(
        self, failed: Sequence[tuple[AlertTransition, Exception]], at: float
    ) -> None:
        # Retried every round for as long as the disk is full: one line a minute, not a
        # traceback per transition per round.
        last = self._failure_logged_at
        if last is not None and 0 <= at - last < FAILURE_LOG_INTERVAL:
            self._unlogged_failing_rounds += 1
            return
        transition, error = failed[0]
        _log.error(
            "alert_transition_callback_failed",
            alert=transition.instance.alert,
            to_state=transition.to_state,
            fingerprint=transition.instance.fingerprint,
            failed=len(failed),
            undelivered=len(self._undelivered),
            failures_total=self._callback_failures,
            failing_rounds_not_logged=self._unlogged_failing_rounds,
            exc_info=error,
        )
        self._failure_logged_at = at
        self._unlogged_failing_rounds = 0

    def instances(self) -> list[AlertInstance]:
        """Every pending or firing instance, ordered by rule then stream."""
        return [instance for instance, _ in self._instances_with_readings()]

    def firing(self) -> list[AlertEvent]:
        """The firing instances as hook events (what the Flagger/Argo gates read).

        Their evidence is what the stream's latest reading says now.
        """
        return [
            alert_event(instance, "firing", evidence=reading_evidence(reading, instance.value))
            for instance, reading in self._instances_with_readings()
            if instance.state == "firing"
        ]

    def _instances_with_readings(self) -> list[tuple[AlertInstance, Reading | None]]:
        with self._lock:
            pairs = []
            for (name, key), instance in sorted(self._instances.items()):
                reading = self._latest.get(key)
                snapshot = self._snapshot(
                    name, self._rules[name].settings, key, instance, instance.state, reading
                )
                pairs.append((snapshot, reading))
            return pairs

    def describe(self) -> Iterable[Metric]:
        """The metric family this collector exports, without reading state."""
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        """`outrider_alert_state`: per (alert, severity, model) the highest instance state."""
        family = self._family()
        with self._lock:
            states: dict[tuple[str, str], int] = {}
            for name, models in self._seen_models.items():
                for model in models:
                    states[(name, model)] = 0
            for (name, key), instance in self._instances.items():
                value = STATE_VALUES[instance.state]
                if value > states.get((name, key.model), 0):
                    states[(name, key.model)] = value
            for (name, model), value in sorted(states.items()):
                severity = self._rules[name].settings.severity
                family.add_metric([name, severity, model], value)
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "outrider_alert_state",
            "State of in-process alert rules: 0 inactive, 1 pending, 2 firing "
            "(highest over the model's versions and streams).",
            labels=["alert", "severity", "model"],
        )

    def state_dict(self) -> dict[str, Any]:
        """Pending and firing instances as nested dicts of numbers and strings (a checkpoint).

        Latest readings are not kept: restored detectors produce new ones within a window;
        until then a restored instance keeps its state (or goes stale, see `stale_after`).
        """
        with self._lock:
            instances = {
                str(index): {
                    "alert": name,
                    "model": key.model,
                    "version": key.version,
                    "source": key.source,
                    "detector": key.detector,
                    "state": instance.state,
                    "active_since": instance.active_since,
                    "fired_at": _nan_for_none(instance.fired_at),
                    "keep_firing_since": _nan_for_none(instance.keep_firing_since),
                    "value": _nan_for_none(instance.value),
                }
                for index, ((name, key), instance) in enumerate(sorted(self._instances.items()))
            }
        return {"format_version": STATE_FORMAT_VERSION, "instances": instances}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore instances saved by `state_dict`, dropping those of rules no longer configured.

        Raises ValueError (and changes nothing) when the state is not one this engine wrote.
        """
        version = state.get("format_version")
        if version != STATE_FORMAT_VERSION:
            raise ValueError(
                f"alert state format_version {version!r} is not {STATE_FORMAT_VERSION}"
            )
        restored: dict[tuple[str, ReadingKey], _Instance] = {}
        raw_instances = state.get("instances", {})
        if not isinstance(raw_instances, Mapping):
            raise ValueError("alert state 'instances' must be a mapping")
        for index, raw in raw_instances.items():
            try:
                name = str(raw["alert"])
                key = ReadingKey(
                    str(raw["model"]),
                    str(raw["version"]),
                    str(raw["source"]),
                    str(raw["detector"]),
                )
                saved_state = str(raw["state"])
                if saved_state not in ("pending", "firing"):
                    raise ValueError(f"state {saved_state!r}")
                instance = _Instance(
                    state="pending" if saved_state == "pending" else "firing",
                    active_since=float(raw["active_since"]),
                    fired_at=_none_for_nan(raw["fired_at"]),
                    keep_firing_since=_none_for_nan(raw["keep_firing_since"]),
                    value=_none_for_nan(raw["value"]),
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"alert state instance {index!r} is malformed: {error}") from None
            if name in self._rules:
                restored[(name, key)] = instance
        restored_at = self.clock()
        with self._lock:
            self._instances = restored
            self._restored_at = dict.fromkeys(restored, restored_at)
            for name, key in restored:
                self._seen_models[name].add(key.model)


def _or_na(value: float | None) -> object:
    return "n/a" if value is None else value


def _nan_for_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _none_for_nan(value: object) -> float | None:
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number
