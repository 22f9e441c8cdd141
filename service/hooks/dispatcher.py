"""Maps alert events to hooks and enforces the safety rules around every action.

Rules, per hook: one action per incident and phase (a repeated event is a no-op, unless the
action failed: then a later event retries it), a cooldown between actions on the same model,
at most ``max_actions`` (over all models) in a sliding window, ``dry_run`` (the hook reports
what it would do; as nothing is done, it uses up neither cooldown nor window), and every
action and decision recorded through an :class:`~service.hooks.recorder.ActionRecorder` and
counted in ``outrider_hook_actions_total{hook,outcome}``. Resolve-phase actions (switch back,
resolved notifications) restore rather than intervene, so cooldown and window do not apply to
them. Hook failures never raise out of the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from service.alerting.events import AlertEvent
from service.hooks.actions import OUTCOMES, Hook, HookResult, Outcome
from service.hooks.recorder import ActionRecorder
from service.hooks.settings import HookMatch
from service.metric_families import HOOK_ACTIONS

logger = logging.getLogger(__name__)

Phase = Literal["fire", "resolve"]


class UnknownHookError(KeyError):
    """No hook has the requested name."""


@dataclass(frozen=True)
class ConfiguredHook:
    """A hook with the rules that decide when it may act."""

    hook: Hook
    match: HookMatch = field(default_factory=HookMatch)
    dry_run: bool = False
    cooldown_seconds: float = 300.0
    max_actions: int = 3
    window_seconds: float = 3600.0

    def matches(self, event: AlertEvent) -> bool:
        """Whether ``event`` is one this hook is configured for."""
        rule = self.match
        return (
            (not rule.alerts or event.name in rule.alerts)
            and (not rule.severities or event.severity in rule.severities)
            and (not rule.models or event.model in rule.models)
        )


@dataclass(frozen=True)
class DispatchedAction:
    """What the dispatcher did with one hook for one event."""

    hook: str
    incident_key: str
    phase: Phase
    outcome: Outcome
    action: str
    detail: dict[str, Any]


class _HookState:
    """Per-hook bookkeeping: recent action times for the window, last action per model."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque()
        #: Time of the latest action per model, for models still in their cooldown.
        self.last: dict[str, float] = {}


class HookDispatcher:
    """Runs the configured hooks for alert events, queued or direct, within the safety rules."""

    def __init__(
        self,
        hooks: Sequence[ConfiguredHook],
        *,
        recorder: ActionRecorder,
        registry: CollectorRegistry,
        queue_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        memory_capacity: int = 100_000,
    ) -> None:
        names = [configured.hook.name for configured in hooks]
        if len(set(names)) != len(names):
            raise ValueError(f"hook names must be unique, got {names}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._hooks = list(hooks)
        self._by_name = {configured.hook.name: configured for configured in hooks}
        self._recorder = recorder
        self._clock = clock
        self._queue: asyncio.Queue[AlertEvent] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None
        self._state = {name: _HookState() for name in names}
        # Keys of (hook, incident, phase) already acted on; bounded, oldest forgotten first.
        self._done: OrderedDict[tuple[str, str, Phase], None] = OrderedDict()
        self._skip_recorded: OrderedDict[tuple[str, str, Phase, str], None] = OrderedDict()
        self._memory_capacity = memory_capacity
        self._actions = HOOK_ACTIONS.counter(registry)
        for name in names:
            for outcome in OUTCOMES:
                self._actions.labels(hook=name, outcome=outcome)

    @property
    def hook_names(self) -> list[str]:
        """Configured hook names, in order."""
        return list(self._by_name)

    # -- queue -------------------------------------------------------------------------

    def submit(self, event: AlertEvent) -> bool:
        """Queue ``event`` without waiting; False when the queue is full (caller sheds/retries)."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    @property
    def queued(self) -> int:
        """Events waiting in the queue."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the worker that dispatches queued events (call from the running loop)."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._work(), name="outrider-hook-dispatcher"
            )

    async def join(self) -> None:
        """Wait until every queued event has been dispatched."""
        await self._queue.join()

    async def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Dispatch what is queued (up to ``drain_timeout`` seconds), then stop the worker."""
        if self._worker is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=drain_timeout)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    async def _work(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.dispatch(event)
            except Exception:  # dispatch guards hooks already; this guards the worker itself
                logger.exception("hook dispatcher failed on an event")
            finally:
                self._queue.task_done()

    # -- dispatch ----------------------------------------------------------------------

    async def dispatch(self, event: AlertEvent) -> list[DispatchedAction]:
        """Run every matching hook for ``event`` concurrently; return what each did."""
        phase: Phase = "fire" if event.status == "firing" else "resolve"
        runs = [
            self._run_one(configured, event, phase, manual=None)
            for configured in self._hooks
            if configured.matches(event)
        ]
        results = await asyncio.gather(*runs)
        return [result for result in results if result is not None]

    async def run_manual(
        self,
        hook_name: str,
        reason: str,
        *,
        incident_id: int | None = None,
        requested_by: str = "",
    ) -> DispatchedAction:
        """Pull one hook by hand (on-call): no alert matching and no idempotency, but the
        hook's dry_run, cooldown and window still apply. Raises UnknownHookError."""
        configured = self._by_name.get(hook_name)
        if configured is None:
            raise UnknownHookError(hook_name)
        event = AlertEvent(
            name="manual",
            severity="manual",
            status="firing",
            annotations={"reason": reason, "requested_by": requested_by},
            incident_id=incident_id,
        )
        result = await self._run_one(
            configured, event, "fire", manual={"reason": reason, "requested_by": requested_by}
        )
        assert result is not None  # the fire phase always yields a result
        return result

    def _remember(self, store: OrderedDict[Any, None], key: Any) -> None:
        store[key] = None
        store.move_to_end(key)
        while len(store) > self._memory_capacity:
            store.popitem(last=False)

    def _blocked_by(self, configured: ConfiguredHook, model: str, now: float) -> Outcome | None:
        state = self._state[configured.hook.name]
        # Forget cooldowns that are over, so only recently acted-on models are kept.
        cooled = [m for m, last in state.last.items() if now - last >= configured.cooldown_seconds]
        for cooled_model in cooled:
            del state.last[cooled_model]
        # Per model: rolling back one model must not hold back the rollback of another.
        if model in state.last:
            return "cooldown"
        while state.recent and now - state.recent[0] >= configured.window_seconds:
            state.recent.popleft()
        if len(state.recent) >= configured.max_actions:
            return "rate_limited"
        return None

    async def _run_one(
        self,
        configured: ConfiguredHook,
        event: AlertEvent,
        phase: Phase,
        *,
        manual: dict[str, str] | None,
    ) -> DispatchedAction | None:
        name = configured.hook.name
        key = (name, event.incident_key, phase)
        context: dict[str, Any] = {
            "incident_key": event.incident_key,
            "phase": phase,
            "alert": event.name,
            "severity": event.severity,
            "model": event.model,
            "version": event.version,
            "dry_run": configured.dry_run,
        }
        if manual is not None:
            context["manual"] = manual
        elif key in self._done:
            self._actions.labels(hook=name, outcome="duplicate").inc()
            return DispatchedAction(name, event.incident_key, phase, "duplicate", "", context)

        now = self._clock()
        if phase == "fire":
            blocked = self._blocked_by(configured, event.model, now)
            if blocked is not None:
                action = f"skipped ({blocked})"
                self._actions.labels(hook=name, outcome=blocked).inc()
                skip_key = (*key, blocked)
                # A skip is recorded once per incident, however often the alert repeats.
                if manual is not None or skip_key not in self._skip_recorded:
                    self._remember(self._skip_recorded, skip_key)
                    await self._record(event, name, action, blocked, context)
                return DispatchedAction(name, event.incident_key, phase, blocked, action, context)
            if not configured.dry_run:  # a dry run changes nothing, so it costs no slot
                state = self._state[name]
                state.last[event.model] = now
                state.recent.append(now)
        if manual is None:
            # Claimed before awaiting, so a concurrent duplicate sees it.
            self._remember(self._done, key)

        result = await self._call_hook(configured, event, phase)
        if result is None or result.outcome == "failed":
            # Nothing happened (the hook has nothing to do in this phase), or the action
            # failed: release the claim so that a later event for the incident acts again.
            # A manual run claimed nothing, and must not release an automatic run's claim.
            if manual is None:
                self._done.pop(key, None)
            if result is None:
                return None
        detail = {**context, **dict(result.detail)}
        self._actions.labels(hook=name, outcome=result.outcome).inc()
        await self._record(event, name, result.action, result.outcome, detail)
        return DispatchedAction(
            name, event.incident_key, phase, result.outcome, result.action, detail
        )

    async def _call_hook(
        self, configured: ConfiguredHook, event: AlertEvent, phase: Phase
    ) -> HookResult | None:
        hook = configured.hook
        try:
            if phase == "fire":
                return await hook.fire(event, dry_run=configured.dry_run)
            return await hook.resolve(event, dry_run=configured.dry_run)
        except Exception as exc:  # a broken hook is recorded as failed, never propagated
            logger.exception("hook %s raised", hook.name)
            return HookResult(
                "failed", f"{phase} {hook.name}", {"error": f"{type(exc).__name__}: {exc}"}
            )

    async def _record(
        self, event: AlertEvent, hook: str, action: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        try:
            # In a worker thread: a durable commit (fsync) must not stall the relay's loop.
            await asyncio.to_thread(
                self._recorder.record_action, event.incident_id, hook, action, outcome, detail
            )
        except Exception:  # recording must not stop the next hook; the log keeps the trace
            logger.exception("recording action of hook %s failed", hook)
