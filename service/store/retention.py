"""Retention of the state directory: old state deleted part by part, on its own schedule.

The parts are functions of a time horizon (epoch seconds) that delete what is older and
say how much went: resolved incidents with their actions and plots
(`IncidentStore.prune_resolved`), probe runs (`service.probes.run_store.prune_probe_runs`),
set-aside files (`service.store.set_aside.remove_set_aside_files`). `Retention` runs them
once at start and every `interval_hours` on the thread it is scheduled on (the alert
thread), never on the event loop that relays traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field

Part = Callable[[float], "int | Mapping[str, int]"]
"""Deletes what is older than the horizon; how many went (or counts by kind)."""

_log = structlog.get_logger("outrider.retention")


class RetentionSettings(BaseModel):
    """How long the state directory keeps what it no longer needs, so the volume never fills.

    Pruned: resolved incidents (with their actions and plots), probe runs (except the
    known-good baseline each regression test compares with) and set-aside `*.corrupt-*`
    files. Open incidents and the known-good promotion state are never pruned.
    """

    model_config = ConfigDict(extra="forbid")

    days: int = Field(
        default=90,
        ge=0,
        le=36500,
        description="Keep resolved incidents (with their actions and plots), probe runs and "
        "set-aside `*.corrupt-*` files this many days. Open incidents and the runs the probe "
        "regression test compares with are kept whatever their age. 0: keep everything forever.",
    )
    interval_hours: float = Field(
        default=24.0,
        gt=0,
        le=8760,
        description="How often pruning runs (it runs once at start, then at this interval).",
    )

    @property
    def enabled(self) -> bool:
        return self.days > 0


class Schedule(Protocol):
    """Where retention runs: `every` calls a job on an interval, `stopping` says stop now."""

    def every(
        self, name: str, seconds: float, job: Callable[[], object], *, now: bool = False
    ) -> None:
        """Call `job` every `seconds` (and at the first round when `now`)."""
        ...

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        ...


class Retention:
    """Deletes state older than `settings.days`, part by part; one info line of counts."""

    def __init__(
        self,
        settings: RetentionSettings,
        parts: Mapping[str, Part],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.parts = dict(parts)
        self._clock = clock

    def schedule(self, on: Schedule) -> None:
        """Run at the first round of `on` and every `interval_hours` after (unless off)."""
        if self.settings.enabled:
            interval = self.settings.interval_hours * 3600
            on.every("retention", interval, lambda: self.run(lambda: on.stopping), now=True)

    def run(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """Prune every part once.

        A part that fails is logged and left for the next interval; the others still run.
        Between parts a stop request wins, so a long first pruning cannot hold up shutdown's
        final checkpoint for more than one part.
        """
        days = self.settings.days
        horizon = self._clock() - days * 86400.0
        counts: dict[str, int] = {}
        failed: list[str] = []
        for name, prune in self.parts.items():
            if stopping():
                return
            try:
                pruned = prune(horizon)
            except Exception:  # a locked or full disk: the next interval tries again
                _log.exception(
                    "state_pruning_failed",
                    part=name,
                    retry_in_hours=self.settings.interval_hours,
                )
                failed.append(name)
                continue
            counts.update({name: pruned} if isinstance(pruned, int) else pruned)
        _log.info("state_pruned", older_than_days=days, failed=failed, **counts)
