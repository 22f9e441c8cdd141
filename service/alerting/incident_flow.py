"""What happens when an alert moves: incident opened and committed, plot drawn, hooks told.

Runs on the alert thread, never on the event loop that relays traffic: SQLite commits and
matplotlib take milliseconds to hundreds of milliseconds. Hook events are handed to the
dispatcher on the loop with `call_soon_threadsafe`, after the incident is committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Protocol

import structlog

from service.alerting.events import AlertEvent
from service.alerting.history import ReadingHistory
from service.alerting.incident_plot import render_alert_plot
from service.alerting.instances import AlertTransition
from service.store.incidents import IncidentStore
from service.store.state_dir import StateDir

log = structlog.get_logger(__name__)

INCIDENTS_PATH = "/incidents"
"""Where the admin server serves incidents; hooks get links below it."""


class EventSubmitter(Protocol):
    """Where alert events go next (the hook dispatcher): queue one, never wait."""

    def submit(self, event: AlertEvent) -> bool:
        """Queue `event`; False when the queue is full."""
        ...


def incident_path(incident_id: int) -> str:
    """Where the admin server serves one incident (the default incident URL for hooks)."""
    return f"{INCIDENTS_PATH}/{incident_id}"


class IncidentFlow:
    """The outbox's handler of alert transitions (the alert engine's `on_transition`).

    When a commit fails (a full disk), the exception goes back to the outbox, which keeps
    the transition and calls again on later evaluations, in order per alert instance (see
    `service.alerting.outbox`). Every step is safe to repeat: `open_incident` returns the instance's
    open incident instead of a second one, a resolved incident keeps its first end time,
    and the dispatcher runs one action per incident and phase. An alert that fired and
    resolved while the store was down therefore gets its incident opened and then resolved
    once the store recovers, with both times as the alert saw them, and the hooks receive
    firing then resolved: the record is never lost, and the hooks learn what happened as
    they would have, late.
    """

    def __init__(
        self,
        store: IncidentStore,
        history: ReadingHistory,
        state_dir: StateDir,
        *,
        submit_event: Callable[[AlertEvent], bool],
        loop: asyncio.AbstractEventLoop,
        incident_url: Callable[[int], str] = incident_path,
    ) -> None:
        self.store = store
        self.history = history
        self.state_dir = state_dir
        self._submit_event = submit_event
        self._loop = loop
        self._incident_url = incident_url

    def __call__(self, transition: AlertTransition) -> None:
        instance = transition.instance
        incident_id: int | None = None
        if transition.to_state == "firing":
            # Committed before anything else happens (DESIGN.md: incidents are never lost).
            incident_id = self.store.open_incident(
                alert=instance.alert,
                severity=instance.severity,
                labels=instance.labels,
                model=instance.key.model,
                version=instance.key.version,
                started_at=instance.fired_at or transition.at,
                evidence=transition.evidence(),
                annotations=instance.annotations,
            )
            self._plot(incident_id, transition)
        elif transition.to_state == "resolved":
            incident_id = self.store.find_open_incident(instance.alert, instance.labels)
            if incident_id is not None:
                self.store.resolve_incident(incident_id, transition.at)
                self._plot(incident_id, transition)
        else:
            return
        event = transition.to_alert_event(
            incident_id=incident_id,
            incident_url=None if incident_id is None else self._incident_url(incident_id),
        )
        if event is not None:
            self._loop.call_soon_threadsafe(self._hand_over, event)

    def _hand_over(self, event: AlertEvent) -> None:
        if not self._submit_event(event):
            log.warning("hook_queue_full", alert=event.name, incident_id=event.incident_id)

    def _plot(self, incident_id: int, transition: AlertTransition) -> None:
        try:
            path = render_alert_plot(
                self.state_dir.plot_path(incident_id, transition.to_state),
                self.history,
                transition,
            )
            self.store.set_plot_path(incident_id, path)
        except Exception:  # a plot is an aid for triage; failing to draw it loses nothing
            log.exception("incident_plot_failed", incident_id=incident_id)


class ReceivedAlertIncidents:
    """Opens and resolves incidents for alerts that arrive from Alertmanager.

    Wraps the dispatcher the inbound endpoints submit to: the incident is committed first,
    then the event goes on to the hooks carrying its incident id, exactly as in-process
    alerts do. Manual rollbacks pass straight through.

    `with_incident` is the blocking half (a SQLite commit), for callers that queue the
    event themselves: the admin receivers run it in a worker thread, off the event loop.
    """

    def __init__(
        self,
        store: IncidentStore,
        dispatcher: EventSubmitter,
        incident_url: Callable[[int], str] = incident_path,
    ) -> None:
        self.store = store
        self._dispatcher = dispatcher
        self._incident_url = incident_url

    def submit(self, event: AlertEvent) -> bool:
        return self._dispatcher.submit(self.with_incident(event))

    def with_incident(self, event: AlertEvent) -> AlertEvent:
        """Opens or resolves the event's incident; returns the event carrying its id."""
        if event.incident_id is not None:  # an in-process alert: its incident exists
            return event
        labels = {**event.labels, "source": "alertmanager"}
        started = event.starts_at.timestamp() if event.starts_at else self.store.clock()
        if event.status == "firing":
            incident_id = self.store.open_incident(
                alert=event.name,
                severity=event.severity,
                labels=labels,
                model=event.model,
                version=event.version,
                started_at=started,
                evidence={"received_from": "alertmanager", **dict(event.evidence)},
                annotations=event.annotations,
            )
        else:
            found = self.store.find_open_incident(event.name, labels)
            if found is None:
                return event
            incident_id = found
            ended = event.ends_at.timestamp() if event.ends_at else self.store.clock()
            self.store.resolve_incident(incident_id, ended)
        return dataclasses.replace(
            event, incident_id=incident_id, incident_url=self._incident_url(incident_id)
        )
