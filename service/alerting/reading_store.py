"""The one sink of readings: the latest reading of every stream, and their recent history.

Every source publishes here (the monitor's worker thread, the probe scheduler on the event
loop, later guard and feedback); alert rules, metrics and incident plots read from here.
Nothing else keeps a copy of the latest readings.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

import structlog

from service.alerting.history import ReadingHistory, ReadingSeries
from service.alerting.readings import Reading, ReadingKey, SourceKind
from service.label_bounds import LabelPolicy
from service.store.checkpointer import CheckpointRegistry

CHECKPOINT_PART = "history"

Listener = Callable[[Reading], None]

_log = structlog.get_logger("outrider.readings")


class ReadingStore:
    """Keeps the latest reading per stream (an older one than kept is ignored) and a history.

    With `labels`, the process's label policy, a reading's model and version become their
    labels first, so streams, alerts and metrics fold the same versions into `other`.
    Thread-safe. `publish` tells each subscribed listener, on the publishing thread; a
    listener that raises is logged and never stops the others or the publisher.
    """

    def __init__(
        self,
        history: ReadingHistory | None = None,
        *,
        labels: LabelPolicy | None = None,
        checkpoints: CheckpointRegistry | None = None,
    ) -> None:
        self.history = history if history is not None else ReadingHistory()
        self._labels = labels
        self._lock = threading.Lock()
        self._latest: dict[ReadingKey, Reading] = {}
        self._listeners: list[Listener] = []
        if checkpoints is not None:
            checkpoints.register(CHECKPOINT_PART, self)

    def publish(self, reading: Reading) -> None:
        """Take `reading` as the latest of its stream and add it to the history."""
        if not isinstance(reading, Reading):
            raise TypeError(f"expected a Reading, got {type(reading)!r}")
        if self._labels is not None:
            model = self._labels.model(reading.model)
            version = self._labels.version(reading.model, reading.version)
            if (model, version) != (reading.model, reading.version):
                reading = dataclasses.replace(reading, model=model, version=version)
        key = reading.key
        with self._lock:
            kept = self._latest.get(key)
            if kept is None or reading.timestamp >= kept.timestamp:
                self._latest[key] = reading
            listeners = tuple(self._listeners)
        self.history.append(reading)
        for listener in listeners:
            try:
                listener(reading)
            except Exception:  # a listener's bug must not stop monitoring
                _log.exception("reading_listener_failed", key=key)

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` with every reading published from now on."""
        with self._lock:
            self._listeners.append(listener)

    def latest(self, kinds: Collection[SourceKind] | None = None) -> dict[ReadingKey, Reading]:
        """The latest reading per stream (of `kinds` only, when given)."""
        with self._lock:
            if kinds is None:
                return dict(self._latest)
            return {key: r for key, r in self._latest.items() if r.kind in kinds}

    def series(
        self, key: ReadingKey, *, since: float | None = None, until: float | None = None
    ) -> ReadingSeries:
        """The stream's recent readings as arrays (see `ReadingHistory.series`)."""
        return self.history.series(key, since=since, until=until)

    def state_dict(self) -> dict[str, Any]:
        """The history (a checkpoint); latest readings are not kept, sources publish anew."""
        return self.history.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the history saved by `state_dict`; raises ValueError when it is not one."""
        self.history.load_state_dict(state)
