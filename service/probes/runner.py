"""The probes as one part of the sidecar: started if they can be, never at traffic's cost.

`ProbeRunner` starts the scheduler once the relay is up; probes that cannot start (a damaged
run history, a broken suite) are switched off, logged and reported by `health`, and start
goes on. It also tells the scheduler about model versions seen in traffic, so a new
version gets its suites run at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry

from service.alerting.readings import Reading, ReadingSink
from service.label_bounds import LabelPolicy
from service.probes.settings import ProbeSettings

if TYPE_CHECKING:
    from service.probes.scheduler import ProbeScheduler

log = structlog.get_logger(__name__)


class ProbeRunner:
    """Owns the probe scheduler's life: start, stop, health, versions seen in traffic."""

    def __init__(
        self,
        settings: ProbeSettings,
        *,
        target: str,
        registry: CollectorRegistry,
        state_dir: Path,
        sink: ReadingSink,
        labels: LabelPolicy,
    ) -> None:
        self.settings = settings
        self._target = settings.target or target
        self._registry = registry
        self._state_dir = state_dir
        self._sink = sink
        self._labels = labels
        self.scheduler: ProbeScheduler | None = None
        self.error: str | None = None
        """Why the probes are off although enabled."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._versions_seen: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Starts the scheduler; if it cannot start, probes are off and traffic goes on."""
        if not self.settings.enabled:
            return
        self._loop = asyncio.get_running_loop()
        # Imported here: grpc and APScheduler load only where probes are on.
        from service.probes.scheduler import ProbeScheduler

        try:
            self.scheduler = ProbeScheduler(
                self.settings,
                target=self._target,
                registry=self._registry,
                state_dir=self._state_dir,
                sink=self._sink,
                labels=self._labels,
            )
            await self.scheduler.start()
        except Exception as error:  # probes must never take the relay down with them
            self.error = f"{type(error).__name__}: {error}"
            log.error(
                "probes.disabled",
                error=self.error,
                consequence="no probe runs until restarted; traffic is relayed as usual",
            )
            scheduler, self.scheduler = self.scheduler, None
            if scheduler is not None:
                try:
                    await scheduler.stop()
                except Exception:
                    log.exception("probes.cleanup_failed")

    async def stop(self) -> None:
        """Stops the scheduler (runs in flight are cancelled)."""
        if self.scheduler is not None:
            await self.scheduler.stop()

    def health(self) -> tuple[bool, str]:
        """Running with N suites, or off and why."""
        if self.scheduler is None:
            return False, f"off: {self.error or 'not started'}"
        return True, f"running, {len(self.scheduler.suites)} suite(s) scheduled"

    def note_version(self, reading: Reading) -> None:
        """A reading listener: a version first seen in traffic gets its suites run now.

        Called on the publishing thread (the monitor worker); hands over to the loop.
        """
        if reading.kind not in ("drift", "ood"):
            return
        key = (reading.model, reading.version)
        loop = self._loop
        if self.scheduler is None or loop is None or key in self._versions_seen:
            return
        self._versions_seen.add(key)
        loop.call_soon_threadsafe(self._spawn_version_probe, *key)

    def _spawn_version_probe(self, model: str, version: str) -> None:
        if self.scheduler is None:
            return
        task = asyncio.ensure_future(self.scheduler.on_version_seen(model, version))
        # The loop keeps only weak references to tasks: hold this one until it is done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
