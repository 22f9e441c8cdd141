"""The alert engine: rules over the reading store, transitions through the outbox.

`evaluate` reads the latest readings from the `ReadingStore`, moves the rule instances
(`RuleEngine`, pure), logs each transition, puts the transitions in the outbox and has
the outbox hand them to `on_transition` (the incident flow). Its metrics are read when
Prometheus scrapes: the highest state per (alert, severity, model), the transitions
waiting and the failed hand-overs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from service import metric_families as families
from service.alerting.events import AlertEvent
from service.alerting.instances import AlertInstance, AlertTransition, alert_event
from service.alerting.outbox import MemoryOutbox, Outbox
from service.alerting.reading_store import ReadingStore
from service.alerting.readings import Reading, reading_evidence
from service.alerting.rules import RuleEngine
from service.alerting.settings import AlertRuleSettings
from service.store.checkpointer import CheckpointRegistry

CHECKPOINT_PART = "alerts"

_log = structlog.get_logger("outrider.alerts")


class AlertEngine:
    """Evaluates alert rules over the latest readings; see the module docstring.

    Thread-safe: the alert thread calls `evaluate`, Prometheus scrapes call the metrics,
    the admin endpoints call `firing`. `on_transition` runs in the thread that called
    `evaluate`, in transition order; evaluations run one at a time, hand-overs included,
    so two threads never hand over the same waiting transition. A transition whose
    `on_transition` raised waits in the outbox (see `service.alerting.outbox`), as do all
    transitions while `on_transition` is None (the app sets it once its event loop runs).
    """

    def __init__(
        self,
        rules: Sequence[AlertRuleSettings],
        *,
        registry: CollectorRegistry | None,
        on_transition: Callable[[AlertTransition], None] | None,
        clock: Callable[[], float] = time.time,
        stale_after: float | None = None,
        max_undelivered: int = 256,
        readings: ReadingStore | None = None,
        outbox: Outbox | None = None,
        checkpoints: CheckpointRegistry | None = None,
    ) -> None:
        self._rules = RuleEngine(rules, stale_after=stale_after)
        self.rules = self._rules.rules
        self.readings = readings if readings is not None else ReadingStore()
        self.outbox: Outbox = outbox if outbox is not None else MemoryOutbox(max_undelivered)
        self.on_transition = on_transition
        self.clock = clock
        self.stale_after = stale_after
        self._lock = threading.Lock()  # the rule state; never held while a handler runs
        # Held for a whole evaluation, hand-overs included (`_lock` is not: scrapes must
        # not wait for SQLite); it serialises hand-overs so each happens once and in order.
        self._evaluation_lock = threading.Lock()
        if registry is not None:
            registry.register(AlertMetrics(self))
        if checkpoints is not None:
            checkpoints.register(CHECKPOINT_PART, self)

    def observe(self, reading: Reading) -> None:
        """Publish `reading` to the reading store (as any source does)."""
        self.readings.publish(reading)

    @property
    def callback_failures(self) -> int:
        """How many `on_transition` calls have raised since the engine was built."""
        return self.outbox.failures

    @property
    def undelivered(self) -> int:
        """How many transitions wait for `on_transition` to be retried."""
        return self.outbox.undelivered

    def evaluate(self, now: float | None = None) -> list[AlertTransition]:
        """Apply every rule to the latest readings at time `now`; return the transitions made.

        Transitions still waiting from earlier rounds are handed to `on_transition` first.
        """
        with self._evaluation_lock:
            at = self.clock() if now is None else now
            latest = self.readings.latest()
            with self._lock:
                transitions = self._rules.evaluate(latest, at)
            for transition in transitions:
                _announce(transition)
            self.outbox.put(transitions)
            if self.on_transition is not None:
                self.outbox.deliver(self.on_transition, at)
        return transitions

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
        latest = self.readings.latest()
        with self._lock:
            return self._rules.instances(latest)

    def alert_states(self) -> list[tuple[str, str, str, int]]:
        """(alert, severity, model, highest state) per rule and model it has evaluated."""
        with self._lock:
            states = self._rules.states()
            return [
                (name, self._rules.severity(name), model, value)
                for (name, model), value in sorted(states.items())
            ]

    def state_dict(self) -> dict[str, Any]:
        """Pending and firing instances (a checkpoint); see `RuleEngine.state_dict`."""
        with self._lock:
            return self._rules.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore instances saved by `state_dict`; raises ValueError and changes nothing
        when the state is not one this engine wrote."""
        with self._lock:
            self._rules.load_state_dict(state, restored_at=self.clock())


def _announce(transition: AlertTransition) -> None:
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
        source=instance.key.signal,
        detector=instance.key.detector,
        value=instance.value,
        active_since=instance.active_since,
        at=transition.at,
        fingerprint=instance.fingerprint,
        summary=instance.annotations.get("summary"),
    )


class AlertMetrics(Collector):
    """The engine's metrics, read at scrape time.

    An incident that could not be committed (a full disk) is retried each round; an operator
    sees it in the undelivered gauge instead of an alert firing with no incident.
    """

    def __init__(self, engine: AlertEngine) -> None:
        self._engine = engine

    def describe(self) -> Iterable[Metric]:
        """The families this collector exports, without reading state."""
        return [
            families.ALERT_STATE.gauge_family(),
            families.ALERT_TRANSITIONS_UNDELIVERED.gauge_family(),
            families.ALERT_TRANSITION_FAILURES.counter_family(),
        ]

    def collect(self) -> Iterable[Metric]:
        state = families.ALERT_STATE.gauge_family()
        for name, severity, model, value in self._engine.alert_states():
            state.add_metric([name, severity, model], value)
        undelivered = families.ALERT_TRANSITIONS_UNDELIVERED.gauge_family()
        undelivered.add_metric([], self._engine.undelivered)
        failures = families.ALERT_TRANSITION_FAILURES.counter_family()
        failures.add_metric([], self._engine.callback_failures)
        return [state, undelivered, failures]
