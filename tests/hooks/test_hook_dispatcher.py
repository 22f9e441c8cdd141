"""HookDispatcher safety rules: matching, idempotency, cooldown, window, dry run, records."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
from prometheus_client import CollectorRegistry

from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.dispatcher import ConfiguredHook, HookDispatcher, UnknownHookError
from service.hooks.recorder import InMemoryActionRecorder, RecordedAction
from service.hooks.settings import HookMatch

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)


@dataclass
class RecordingHook:
    """A hook that records calls and returns a fixed outcome (or raises)."""

    name: str
    outcome: str = "success"
    raises: bool = False
    acts_on_resolve: bool = True
    fired: list[tuple[AlertEvent, bool]] = field(default_factory=list)
    resolved: list[tuple[AlertEvent, bool]] = field(default_factory=list)

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        self.fired.append((event, dry_run))
        if self.raises:
            raise RuntimeError("boom")
        return HookResult(
            "dry_run" if dry_run else self.outcome,  # type: ignore[arg-type]
            f"act on {event.name}",
            {"n": len(self.fired)},
        )

    async def resolve(self, event: AlertEvent, *, dry_run: bool) -> HookResult | None:
        if not self.acts_on_resolve:
            return None
        self.resolved.append((event, dry_run))
        return HookResult("success", f"restore after {event.name}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def alert(
    name: str = "InputDrift",
    *,
    severity: str = "critical",
    status: str = "firing",
    fingerprint: str = "fp1",
    incident_id: int | None = 7,
    model: str = "digits",
) -> AlertEvent:
    return AlertEvent(
        name=name,
        severity=severity,
        status=status,  # type: ignore[arg-type]
        model=model,
        fingerprint=fingerprint,
        starts_at=T0,
        incident_id=incident_id,
    )


def make(
    *hooks: ConfiguredHook, queue_size: int = 10
) -> tuple[HookDispatcher, InMemoryActionRecorder, CollectorRegistry, Clock]:
    recorder = InMemoryActionRecorder()
    registry = CollectorRegistry()
    clock = Clock()
    dispatcher = HookDispatcher(
        list(hooks), recorder=recorder, registry=registry, queue_size=queue_size, clock=clock
    )
    return dispatcher, recorder, registry, clock


def count(registry: CollectorRegistry, hook: str, outcome: str) -> float | None:
    return registry.get_sample_value(
        "outrider_hook_actions_total", {"hook": hook, "outcome": outcome}
    )


async def test_one_action_per_incident_and_hook() -> None:
    hook = RecordingHook("undo")
    dispatcher, recorder, registry, clock = make(ConfiguredHook(hook, cooldown_seconds=0))

    first = await dispatcher.dispatch(alert())
    clock.now += 10
    second = await dispatcher.dispatch(alert())

    assert [a.outcome for a in first] == ["success"]
    assert [a.outcome for a in second] == ["duplicate"]
    assert len(hook.fired) == 1
    assert recorder.actions == [
        RecordedAction(
            7,
            "undo",
            "act on InputDrift",
            "success",
            {
                "incident_key": "incident:7",
                "phase": "fire",
                "alert": "InputDrift",
                "severity": "critical",
                "model": "digits",
                "version": "",
                "dry_run": False,
                "n": 1,
            },
        )
    ]
    assert count(registry, "undo", "success") == 1.0
    assert count(registry, "undo", "duplicate") == 1.0
    assert count(registry, "undo", "failed") == 0.0


async def test_match_on_alert_name_severity_and_model() -> None:
    by_name = RecordingHook("by-name")
    by_severity = RecordingHook("by-severity")
    by_model = RecordingHook("by-model")
    dispatcher, *_ = make(
        ConfiguredHook(by_name, match=HookMatch(alerts=["OodSpike"])),
        ConfiguredHook(by_severity, match=HookMatch(severities=["critical"])),
        ConfiguredHook(by_model, match=HookMatch(models=["other"])),
    )
    done = await dispatcher.dispatch(alert("InputDrift", severity="critical"))
    assert [a.hook for a in done] == ["by-severity"]
    done = await dispatcher.dispatch(alert("OodSpike", severity="warning", incident_id=8))
    assert [a.hook for a in done] == ["by-name"]


async def test_cooldown_blocks_other_incidents_and_is_recorded_once() -> None:
    hook = RecordingHook("undo")
    dispatcher, recorder, registry, clock = make(
        ConfiguredHook(hook, cooldown_seconds=60, max_actions=10)
    )
    await dispatcher.dispatch(alert(incident_id=1))
    clock.now += 30
    blocked = await dispatcher.dispatch(alert(incident_id=2))
    clock.now += 1
    again = await dispatcher.dispatch(alert(incident_id=2))
    clock.now += 30  # 61 s after the first action: cooldown over
    allowed = await dispatcher.dispatch(alert(incident_id=2))

    assert [a.outcome for a in blocked + again + allowed] == ["cooldown", "cooldown", "success"]
    assert [(r.incident_id, r.outcome) for r in recorder.actions] == [
        (1, "success"),
        (2, "cooldown"),
        (2, "success"),
    ]
    assert count(registry, "undo", "cooldown") == 2.0
    assert len(hook.fired) == 2


async def test_a_failed_action_is_retried_by_a_later_event_and_a_success_is_not() -> None:
    hook = RecordingHook("undo", outcome="failed")
    dispatcher, recorder, registry, clock = make(
        ConfiguredHook(hook, cooldown_seconds=60, max_actions=10)
    )
    failed = await dispatcher.dispatch(alert())
    clock.now += 30  # the failed attempt still counts for the cooldown: retries are spaced
    too_soon = await dispatcher.dispatch(alert())
    clock.now += 31
    hook.outcome = "success"
    retried = await dispatcher.dispatch(alert())
    clock.now += 61
    again = await dispatcher.dispatch(alert())

    assert [a.outcome for a in failed + too_soon + retried + again] == [
        "failed",
        "cooldown",
        "success",
        "duplicate",
    ]
    assert len(hook.fired) == 2
    assert [r.outcome for r in recorder.actions] == ["failed", "cooldown", "success"]
    assert count(registry, "undo", "failed") == 1.0


async def test_a_failed_manual_action_does_not_reopen_a_done_incident() -> None:
    hook = RecordingHook("undo")
    dispatcher, *_ = make(ConfiguredHook(hook, cooldown_seconds=0, max_actions=10))
    await dispatcher.dispatch(alert(incident_id=7))
    hook.outcome = "failed"
    manual = await dispatcher.run_manual("undo", "once more", incident_id=7)
    again = await dispatcher.dispatch(alert(incident_id=7))

    assert (manual.outcome, [a.outcome for a in again]) == ("failed", ["duplicate"])
    assert len(hook.fired) == 2


async def test_cooldown_is_per_model_and_the_window_counts_every_model() -> None:
    hook = RecordingHook("undo")
    dispatcher, _, registry, clock = make(
        ConfiguredHook(hook, cooldown_seconds=60, max_actions=3, window_seconds=3600)
    )
    outcomes = []
    for incident, model in [(1, "digits"), (2, "letters"), (3, "digits"), (4, "faces")]:
        outcomes += [
            (a.outcome, a.detail["model"])
            for a in await dispatcher.dispatch(alert(incident_id=incident, model=model))
        ]
        clock.now += 10
    clock.now += 60  # every cooldown is over, the window still holds three actions
    outcomes += [
        (a.outcome, a.detail["model"])
        for a in await dispatcher.dispatch(alert(incident_id=5, model="digits"))
    ]

    assert outcomes == [
        ("success", "digits"),
        ("success", "letters"),  # a rollback of digits does not hold back one of letters
        ("cooldown", "digits"),
        ("success", "faces"),
        ("rate_limited", "digits"),
    ]
    assert count(registry, "undo", "cooldown") == 1.0
    assert count(registry, "undo", "rate_limited") == 1.0
    # Models whose cooldown ran out are forgotten, so the per-model memory stays small.
    assert list(dispatcher._state["undo"].last) == []


async def test_dry_run_uses_up_neither_cooldown_nor_window() -> None:
    cooled = RecordingHook("cooled")
    capped = RecordingHook("capped")
    dispatcher, _, registry, clock = make(
        ConfiguredHook(cooled, dry_run=True, cooldown_seconds=60, max_actions=10),
        ConfiguredHook(capped, dry_run=True, cooldown_seconds=0, max_actions=1),
    )
    outcomes = []
    for incident in (1, 2, 3):
        outcomes += [
            (a.hook, a.outcome) for a in await dispatcher.dispatch(alert(incident_id=incident))
        ]
        clock.now += 1

    assert sorted(outcomes) == [("capped", "dry_run")] * 3 + [("cooled", "dry_run")] * 3
    assert (len(cooled.fired), len(capped.fired)) == (3, 3)
    assert count(registry, "cooled", "cooldown") == 0.0
    assert count(registry, "capped", "rate_limited") == 0.0


async def test_max_actions_per_window() -> None:
    hook = RecordingHook("undo")
    dispatcher, recorder, registry, clock = make(
        ConfiguredHook(hook, cooldown_seconds=0, max_actions=2, window_seconds=100)
    )
    outcomes = []
    for incident in range(1, 5):
        outcomes += [a.outcome for a in await dispatcher.dispatch(alert(incident_id=incident))]
        clock.now += 10
    clock.now = 1000.0 + 100  # the first action leaves the window
    outcomes += [a.outcome for a in await dispatcher.dispatch(alert(incident_id=5))]

    assert outcomes == ["success", "success", "rate_limited", "rate_limited", "success"]
    assert count(registry, "undo", "rate_limited") == 2.0


async def test_dry_run_records_what_would_be_done() -> None:
    hook = RecordingHook("undo")
    dispatcher, recorder, registry, _ = make(ConfiguredHook(hook, dry_run=True))

    done = await dispatcher.dispatch(alert())

    assert [a.outcome for a in done] == ["dry_run"]
    assert hook.fired[0][1] is True
    assert recorder.actions[0].outcome == "dry_run"
    assert recorder.actions[0].detail["dry_run"] is True
    assert count(registry, "undo", "dry_run") == 1.0


async def test_a_raising_hook_is_recorded_as_failed_and_others_still_run() -> None:
    broken = RecordingHook("broken", raises=True)
    fine = RecordingHook("fine")
    dispatcher, recorder, registry, _ = make(ConfiguredHook(broken), ConfiguredHook(fine))

    done = await dispatcher.dispatch(alert())

    assert sorted((a.hook, a.outcome) for a in done) == [("broken", "failed"), ("fine", "success")]
    failed = next(r for r in recorder.actions if r.hook == "broken")
    assert failed.detail["error"] == "RuntimeError: boom"
    assert count(registry, "broken", "failed") == 1.0


async def test_resolve_runs_once_and_ignores_cooldown() -> None:
    hook = RecordingHook("fallback")
    silent = RecordingHook("silent", acts_on_resolve=False)
    dispatcher, recorder, _, clock = make(
        ConfiguredHook(hook, cooldown_seconds=600), ConfiguredHook(silent, cooldown_seconds=600)
    )
    await dispatcher.dispatch(alert())
    clock.now += 1
    first = await dispatcher.dispatch(alert(status="resolved"))
    second = await dispatcher.dispatch(alert(status="resolved"))

    assert [(a.hook, a.outcome) for a in first] == [("fallback", "success")]
    assert [(a.hook, a.outcome) for a in second] == [("fallback", "duplicate")]
    assert len(hook.resolved) == 1
    assert [(r.hook, r.detail["phase"]) for r in recorder.actions] == [
        ("fallback", "fire"),
        ("silent", "fire"),
        ("fallback", "resolve"),
    ]


async def test_incident_key_falls_back_to_fingerprint_and_start() -> None:
    hook = RecordingHook("undo")
    dispatcher, *_ = make(ConfiguredHook(hook, cooldown_seconds=0))
    await dispatcher.dispatch(alert(incident_id=None, fingerprint="aaa"))
    await dispatcher.dispatch(alert(incident_id=None, fingerprint="aaa"))
    await dispatcher.dispatch(alert(incident_id=None, fingerprint="bbb"))
    assert [e.fingerprint for e, _ in hook.fired] == ["aaa", "bbb"]


async def test_manual_action_bypasses_idempotency_but_not_cooldown() -> None:
    hook = RecordingHook("undo")
    dispatcher, recorder, _, clock = make(ConfiguredHook(hook, cooldown_seconds=60))

    first = await dispatcher.run_manual("undo", "canary looks wrong", requested_by="alice")
    second = await dispatcher.run_manual("undo", "again")
    clock.now += 61
    third = await dispatcher.run_manual("undo", "again", incident_id=3)

    assert [first.outcome, second.outcome, third.outcome] == ["success", "cooldown", "success"]
    assert recorder.actions[0].detail["manual"] == {
        "reason": "canary looks wrong",
        "requested_by": "alice",
    }
    assert recorder.actions[2].incident_id == 3
    with pytest.raises(UnknownHookError):
        await dispatcher.run_manual("nope", "x")


async def test_queue_full_refuses_and_worker_drains() -> None:
    hook = RecordingHook("undo")
    dispatcher, *_ = make(ConfiguredHook(hook, cooldown_seconds=0, max_actions=100), queue_size=2)
    assert dispatcher.submit(alert(incident_id=1)) is True
    assert dispatcher.submit(alert(incident_id=2)) is True
    assert dispatcher.submit(alert(incident_id=3)) is False
    dispatcher.start()
    await asyncio.wait_for(dispatcher.join(), timeout=5)
    await dispatcher.stop()
    assert [e.incident_id for e, _ in hook.fired] == [1, 2]


async def test_recorder_failure_does_not_escape() -> None:
    class BrokenRecorder:
        def record_action(self, *args: object) -> None:
            raise OSError("disk full")

    hook = RecordingHook("undo")
    dispatcher = HookDispatcher(
        [ConfiguredHook(hook)], recorder=BrokenRecorder(), registry=CollectorRegistry()
    )
    done = await dispatcher.dispatch(alert())
    assert [a.outcome for a in done] == ["success"]


def test_duplicate_hook_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="hook names must be unique"):
        make(ConfiguredHook(RecordingHook("a")), ConfiguredHook(RecordingHook("a")))
