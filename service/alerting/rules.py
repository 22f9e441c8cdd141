"""The alert rule state machine: latest readings and a time in, transitions out.

Pure: no threads, no locks, no clock, no I/O. Each rule watches the streams its selector
matches. One alert instance exists per (rule, stream) and moves
inactive -> pending (condition true) -> firing (true for `for`) -> resolved (false for
`keep_firing_for`), as Prometheus does: a rule with `for: 0` fires at the first evaluation
that sees its condition, and a pending alert whose condition clears goes straight back to
inactive.

`stale_after` (seconds, None = never) makes a stream whose latest reading is older than
that count as "condition false", as Prometheus treats a series that stopped: a model
version that no longer gets traffic (e.g. after a rollback) must not keep its alert firing
forever. Kinds whose verdict stands until their source runs again (probes) never go
stale. An instance restored from a checkpoint counts its restore time as its latest
reading until a real one arrives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from service.alerting.conditions import ConditionCheck, condition_check, selects, watched_kinds
from service.alerting.instances import AlertInstance, AlertState, AlertTransition, TransitionKind
from service.alerting.readings import KIND_TERMS, Reading, ReadingKey, SourceKind
from service.alerting.settings import AlertRuleSettings

STATE_FORMAT_VERSION = 1


@dataclass(slots=True)
class _Instance:
    state: AlertState
    active_since: float
    kind: SourceKind
    fired_at: float | None = None
    keep_firing_since: float | None = None
    value: float | None = None


class _Rule:
    """One configured rule with its check and a cache of which streams it selects."""

    def __init__(self, settings: AlertRuleSettings) -> None:
        self.settings = settings
        self.check: ConditionCheck = condition_check(settings)
        self.kinds = watched_kinds(settings)
        self._selected: dict[tuple[SourceKind, ReadingKey], bool] = {}

    def selects(self, reading: Reading) -> bool:
        cache_key = (reading.kind, reading.key)
        selected = self._selected.get(cache_key)
        if selected is None:
            selected = self._selected[cache_key] = selects(self.settings, self.kinds, reading)
        return selected


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


def _or_na(value: float | None) -> object:
    return "n/a" if value is None else value


class RuleEngine:
    """Alert instances of a set of rules; `evaluate` moves them, nothing else does."""

    def __init__(
        self, rules: Sequence[AlertRuleSettings], *, stale_after: float | None = None
    ) -> None:
        if stale_after is not None and not stale_after > 0:
            raise ValueError(f"stale_after must be > 0 seconds or None, got {stale_after!r}")
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"alert rule names must be unique, repeated: {duplicates}")
        self.rules = tuple(rules)
        self.stale_after = stale_after
        self._rules = {rule.name: _Rule(rule) for rule in rules}
        self._instances: dict[tuple[str, ReadingKey], _Instance] = {}
        self._restored_at: dict[tuple[str, ReadingKey], float] = {}
        self.seen_models: dict[str, set[str]] = {name: set() for name in self._rules}
        """Models each rule has evaluated: their alert-state series exist, 0 when inactive."""

    def evaluate(self, latest: Mapping[ReadingKey, Reading], at: float) -> list[AlertTransition]:
        """Apply every rule to the `latest` readings at time `at`; the transitions made."""
        transitions: list[AlertTransition] = []
        for name, rule in self._rules.items():
            for reading in latest.values():
                if rule.selects(reading):
                    transitions += self._step(name, rule, reading.key, reading, at)
        for name, key in [k for k in self._instances if k[1] not in latest]:
            # Restored from a checkpoint and no reading since: wait, or go stale.
            transitions += self._step(name, self._rules[name], key, None, at)
        return transitions

    def _is_stale(self, name: str, key: ReadingKey, kind: SourceKind, reading: Reading | None,
                  at: float) -> bool:
        if self.stale_after is None or KIND_TERMS[kind].stands:
            return False
        last = reading.timestamp if reading is not None else self._restored_at.get((name, key))
        return last is not None and at - last >= self.stale_after

    def _step(
        self, name: str, rule: _Rule, key: ReadingKey, reading: Reading | None, at: float
    ) -> list[AlertTransition]:
        """Move one instance for one evaluation; zero or one transition."""
        settings = rule.settings
        instance = self._instances.get((name, key))
        kind = reading.kind if reading is not None else instance.kind if instance else "drift"
        if self._is_stale(name, key, kind, reading, at):
            holds, value = False, None
        elif reading is None:
            return []  # restored, no reading yet, not stale: nothing known, nothing changes
        else:
            holds, value = rule.check.test(reading)
        self.seen_models[name].add(key.model)
        if instance is None:
            if not holds:
                return []
            instance = _Instance(state="pending", active_since=at, kind=kind, value=value)
            self._instances[(name, key)] = instance
            if settings.for_ > 0:
                return [self._transition(name, key, reading, instance, "inactive", "pending", at)]
            previous: AlertState = "inactive"  # for: 0 fires at once, as Prometheus does
        else:
            instance.value = value
            instance.kind = kind
            previous = instance.state
        if holds:
            instance.keep_firing_since = None
            if instance.state == "pending" and at - instance.active_since >= settings.for_:
                instance.state = "firing"
                instance.fired_at = at
                return [self._transition(name, key, reading, instance, previous, "firing", at)]
            return []
        if instance.state == "firing":
            if instance.keep_firing_since is None:
                instance.keep_firing_since = at
            if at - instance.keep_firing_since < settings.keep_firing_for:
                return []
        del self._instances[(name, key)]
        self._restored_at.pop((name, key), None)
        to_state: TransitionKind = "resolved" if previous == "firing" else "inactive"
        return [self._transition(name, key, reading, instance, previous, to_state, at)]

    def _transition(
        self,
        name: str,
        key: ReadingKey,
        reading: Reading | None,
        instance: _Instance,
        from_state: AlertState,
        to_state: TransitionKind,
        at: float,
    ) -> AlertTransition:
        state: AlertState = "inactive" if to_state in ("resolved", "inactive") else instance.state
        snapshot = self._snapshot(name, key, instance, state, reading)
        return AlertTransition(snapshot, from_state, to_state, at, reading)

    def _snapshot(
        self,
        name: str,
        key: ReadingKey,
        instance: _Instance,
        state: AlertState,
        reading: Reading | None,
    ) -> AlertInstance:
        rule = self._rules[name].settings
        terms = KIND_TERMS[instance.kind]
        labels = dict(rule.labels)
        labels.update(alertname=name, severity=rule.severity, model=key.model, version=key.version)
        labels[terms.stream] = key.signal
        if key.detector:
            labels["detector"] = key.detector
        values: dict[str, object] = {
            "alert": name,
            "severity": rule.severity,
            "kind": instance.kind,
            "model": key.model,
            "version": key.version,
            "signal": key.signal,
            "detector": key.detector,
            "value": _or_na(instance.value),
        }
        for field_name in ("score", "threshold", "p_value", "ood_ratio"):
            values[field_name] = _or_na(None if reading is None else reading.value(field_name))
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

    def instances(
        self, latest: Mapping[ReadingKey, Reading]
    ) -> list[tuple[AlertInstance, Reading | None]]:
        """Every pending or firing instance, by rule then stream, with its latest reading."""
        pairs = []
        for (name, key), instance in sorted(self._instances.items(), key=lambda kv: kv[0]):
            reading = latest.get(key)
            pairs.append((self._snapshot(name, key, instance, instance.state, reading), reading))
        return pairs

    def states(self) -> dict[tuple[str, str], int]:
        """Per (rule, model) the highest instance state (0 inactive, 1 pending, 2 firing)."""
        states: dict[tuple[str, str], int] = {}
        for name, models in self.seen_models.items():
            for model in models:
                states[(name, model)] = 0
        for (name, key), instance in self._instances.items():
            value = 2 if instance.state == "firing" else 1
            if value > states.get((name, key.model), 0):
                states[(name, key.model)] = value
        return states

    def severity(self, name: str) -> str:
        """The configured severity of rule `name`."""
        return self._rules[name].settings.severity

    def state_dict(self) -> dict[str, Any]:
        """Pending and firing instances as nested dicts of numbers and strings (a checkpoint).

        Latest readings are not kept: restored detectors produce new ones within a window;
        until then a restored instance keeps its state (or goes stale, see `stale_after`).
        """
        instances = {
            str(index): {
                "alert": name,
                "model": key.model,
                "version": key.version,
                "source": key.signal,
                "detector": key.detector,
                "kind": instance.kind,
                "state": instance.state,
                "active_since": instance.active_since,
                "fired_at": _nan_for_none(instance.fired_at),
                "keep_firing_since": _nan_for_none(instance.keep_firing_since),
                "value": _nan_for_none(instance.value),
            }
            for index, ((name, key), instance) in enumerate(
                sorted(self._instances.items(), key=lambda kv: kv[0])
            )
        }
        return {"format_version": STATE_FORMAT_VERSION, "instances": instances}

    def load_state_dict(self, state: Mapping[str, Any], restored_at: float) -> None:
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
                    str(raw["model"]), str(raw["version"]), str(raw["source"]),
                    str(raw["detector"]),
                )
                saved_state = str(raw["state"])
                if saved_state not in ("pending", "firing"):
                    raise ValueError(f"state {saved_state!r}")
                instance = _Instance(
                    state="pending" if saved_state == "pending" else "firing",
                    active_since=float(raw["active_since"]),
                    kind=_saved_kind(raw, key),
                    fired_at=_none_for_nan(raw["fired_at"]),
                    keep_firing_since=_none_for_nan(raw["keep_firing_since"]),
                    value=_none_for_nan(raw["value"]),
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"alert state instance {index!r} is malformed: {error}") from None
            if name in self._rules:
                restored[(name, key)] = instance
        self._instances = restored
        self._restored_at = dict.fromkeys(restored, restored_at)
        for name, key in restored:
            self.seen_models[name].add(key.model)


def _saved_kind(raw: Mapping[str, Any], key: ReadingKey) -> SourceKind:
    # Checkpoints written before readings had kinds: probes are the streams without a
    # detector, and drift and ood streams are named, labelled and aged alike.
    kind = raw.get("kind", "probe" if key.detector == "" else "drift")
    if kind not in KIND_TERMS:
        raise ValueError(f"kind {kind!r}")
    return kind  # type: ignore[no-any-return]


def _nan_for_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _none_for_nan(value: object) -> float | None:
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number
