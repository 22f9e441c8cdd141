"""The delivery outbox: alert transitions wait here until their handler has taken them.

The handler (`IncidentFlow`: commit the incident, draw the plot, hand the event to the
hooks) may fail, say on a full disk. A transition whose handler raised stays in the
outbox and is handed over again on later rounds, until a call returns. Transitions of the
same alert instance stay in order: while one waits, the later ones of that instance wait
behind it without being tried, so an instance that fired and resolved during an outage
has its incident opened and then resolved once the store recovers, and the hooks see
firing then resolved. Other instances are not held up. The handler must therefore be
safe to call again for a transition it failed part way through (`IncidentFlow` is).

`Outbox` is the interface; `MemoryOutbox` keeps transitions in memory (a restart loses
those still waiting). A durable outbox implements the same four members over a store,
keeping each transition as `AlertTransition.to_record()` under its `delivery_id`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from service.alerting.instances import AlertTransition
from service.alerting.readings import ReadingKey

FAILURE_LOG_INTERVAL = 60.0
"""Seconds between two error lines about failing deliveries (each failing round counts)."""

Handler = Callable[[AlertTransition], None]
"""Takes one transition; raising means "not taken, hand it over again later"."""

_log = structlog.get_logger("outrider.alerts")


class Outbox(Protocol):
    """Where transitions wait for their handler, in order per alert instance."""

    def put(self, transitions: Sequence[AlertTransition]) -> None:
        """Keep `transitions` (in this order) until the handler has taken each."""
        ...

    def deliver(self, handler: Handler, now: float) -> None:
        """Hand every waiting transition to `handler`, oldest first; keep those it refused.

        A transition waits, untried, behind an earlier one of its instance that is still
        waiting. `now` is the evaluation time (for logs). Never raises for a handler error.
        """
        ...

    @property
    def undelivered(self) -> int:
        """How many transitions wait."""
        ...

    @property
    def failures(self) -> int:
        """How many handler calls have raised since the outbox was made."""
        ...


@dataclass(slots=True)
class _Waiting:
    transition: AlertTransition
    attempts: int = 0


class MemoryOutbox:
    """An `Outbox` in memory, bounded: beyond `max_undelivered` the oldest is dropped, logged.

    Failing rounds are logged at error level at most once per `FAILURE_LOG_INTERVAL`
    seconds of evaluation time. Not thread-safe: the alert engine calls it under its lock.
    """

    def __init__(self, max_undelivered: int = 256) -> None:
        if max_undelivered < 1:
            raise ValueError(f"max_undelivered must be >= 1, got {max_undelivered!r}")
        self.max_undelivered = max_undelivered
        self._waiting: deque[_Waiting] = deque()
        self._failures = 0
        self._failure_logged_at: float | None = None
        self._unlogged_failing_rounds = 0

    @property
    def undelivered(self) -> int:
        return len(self._waiting)

    @property
    def failures(self) -> int:
        return self._failures

    def put(self, transitions: Sequence[AlertTransition]) -> None:
        self._waiting.extend(_Waiting(transition) for transition in transitions)

    def deliver(self, handler: Handler, now: float) -> None:
        held: set[tuple[str, ReadingKey]] = set()  # instances with an earlier one still waiting
        waiting: deque[_Waiting] = deque()
        failed: list[tuple[AlertTransition, Exception]] = []
        for item in self._waiting:
            instance = item.transition.instance
            if (instance.alert, instance.key) in held:
                waiting.append(item)
                continue
            item.attempts += 1
            try:
                handler(item.transition)
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
                    delay_seconds=now - item.transition.at,
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
        self._waiting = waiting
        if failed:
            self._failures += len(failed)
            self._log_failing_round(failed, now)

    def _log_failing_round(
        self, failed: Sequence[tuple[AlertTransition, Exception]], now: float
    ) -> None:
        # Retried every round for as long as the disk is full: one line a minute, not a
        # traceback per transition per round.
        last = self._failure_logged_at
        if last is not None and 0 <= now - last < FAILURE_LOG_INTERVAL:
            self._unlogged_failing_rounds += 1
            return
        transition, error = failed[0]
        _log.error(
            "alert_transition_callback_failed",
            alert=transition.instance.alert,
            to_state=transition.to_state,
            fingerprint=transition.instance.fingerprint,
            failed=len(failed),
            undelivered=len(self._waiting),
            failures_total=self._failures,
            failing_rounds_not_logged=self._unlogged_failing_rounds,
            exc_info=error,
        )
        self._failure_logged_at = now
        self._unlogged_failing_rounds = 0
