"""Exec hook (real subprocesses) and fallback hook (a recording upstream switch)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from service.alerting.events import AlertEvent
from service.hooks.exec_hook import ExecHook
from service.hooks.fallback import FallbackHook
from service.hooks.settings import ExecHookSettings, FallbackHookSettings

EVENT = AlertEvent(
    name="InputDrift",
    severity="critical",
    status="firing",
    model="digits",
    version="3",
    labels={"alertname": "InputDrift"},
    starts_at=datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc),
    fingerprint="a1b2",
    incident_id=42,
    evidence={"score": 0.5},
)
PRINT_ENV = (
    "import json, os, sys; "
    "print(json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith('OUTRIDER') or k == 'EXTRA'})); print(sys.argv[1:])"
)


def exec_hook(argv: list[str], **overrides: object) -> ExecHook:
    return ExecHook(ExecHookSettings(type="exec", name="script", argv=argv, **overrides))  # type: ignore[arg-type]


async def test_exec_passes_alert_fields_as_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTRIDER_ADMIN_TOKEN", "must-not-leak")
    hook = exec_hook([sys.executable, "-c", PRINT_ENV, "$(rm -rf /); echo"], env={"EXTRA": "1"})

    result = await hook.fire(EVENT, dry_run=False)

    assert result.outcome == "success"
    assert result.detail["exit_status"] == 0
    env_line, argv_line = result.detail["stdout"].splitlines()
    assert json.loads(env_line) == {
        "EXTRA": "1",
        "OUTRIDER_ALERT_NAME": "InputDrift",
        "OUTRIDER_ALERT_SEVERITY": "critical",
        "OUTRIDER_ALERT_STATUS": "firing",
        "OUTRIDER_ALERT_MODEL": "digits",
        "OUTRIDER_ALERT_VERSION": "3",
        "OUTRIDER_ALERT_FINGERPRINT": "a1b2",
        "OUTRIDER_ALERT_STARTS_AT": "2026-11-23T18:00:00+00:00",
        "OUTRIDER_ALERT_ENDS_AT": "",
        "OUTRIDER_ALERT_INCIDENT_ID": "42",
        "OUTRIDER_ALERT_INCIDENT_URL": "",
        "OUTRIDER_ALERT_LABELS": '{"alertname": "InputDrift"}',
        "OUTRIDER_ALERT_ANNOTATIONS": "{}",
        "OUTRIDER_ALERT_EVIDENCE": '{"score": 0.5}',
    }
    # No shell: the metacharacters arrive as one literal argument.
    assert argv_line == "['$(rm -rf /); echo']"


async def test_exec_records_nonzero_exit_status() -> None:
    hook = exec_hook([sys.executable, "-c", "import sys; sys.stderr.write('nope'); sys.exit(3)"])
    result = await hook.fire(EVENT, dry_run=False)
    assert result.outcome == "failed"
    assert (result.detail["exit_status"], result.detail["stderr"]) == (3, "nope")


async def test_exec_timeout_kills_the_program() -> None:
    hook = exec_hook([sys.executable, "-c", "import time; time.sleep(30)"], timeout_seconds=0.5)
    started = time.monotonic()
    result = await hook.fire(EVENT, dry_run=False)
    assert time.monotonic() - started < 5
    assert result.outcome == "failed"
    assert result.detail["error"] == "timeout"
    assert result.detail["exit_status"] == -9


# A shell that leaves a background child and reports "<shell pid> <child pid>" in the file
# named by $1 (written whole, by rename, so a poller never reads half of it).
SPAWNS_A_CHILD = [
    "/bin/sh",
    "-c",
    'sleep 60 & echo "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"; wait',
    "sh",
]


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process; a killed zombie awaiting its reaper counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def poll(condition: Callable[[], bool], *, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def read_pids(pid_file: Path) -> list[int]:
    return [int(pid) for pid in pid_file.read_text().split()]


def kill_leftovers(pid_file: Path) -> None:
    # Only when an assertion failed: do not leave a sleeper behind on the test machine.
    if pid_file.exists():
        for pid in read_pids(pid_file):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_exec_timeout_kills_what_the_program_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    # Long enough for sh to start its child even on a loaded machine.
    hook = exec_hook([*SPAWNS_A_CHILD, str(pid_file)], timeout_seconds=2)
    try:
        started = time.monotonic()
        result = await hook.fire(EVENT, dry_run=False)

        # Not held until the child exits on its own (it would keep the output pipes open).
        assert time.monotonic() - started < 30
        assert (result.outcome, result.detail["error"]) == ("failed", "timeout")
        assert result.detail["exit_status"] == -9
        shell, child = read_pids(pid_file)
        assert await poll(lambda: not running(child)), f"child {child} outlived the timeout"
        assert not running(shell)
    finally:
        kill_leftovers(pid_file)


async def test_exec_cancelled_kills_and_reaps_the_program(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    hook = exec_hook([*SPAWNS_A_CHILD, str(pid_file)], timeout_seconds=60)
    task = asyncio.create_task(hook.fire(EVENT, dry_run=False))
    try:
        assert await poll(pid_file.exists), "the program never started its child"
        shell, child = read_pids(pid_file)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        # The shell was reaped before the cancellation went on: no zombie, no process.
        assert not Path(f"/proc/{shell}").exists()
        assert await poll(lambda: not running(child)), f"child {child} outlived the cancel"
    finally:
        kill_leftovers(pid_file)


async def test_exec_missing_program_is_a_failure(tmp_path: Path) -> None:
    result = await exec_hook([str(tmp_path / "absent")]).fire(EVENT, dry_run=False)
    assert result.outcome == "failed"
    assert result.detail["error"].startswith("cannot start: [Errno 2]")


async def test_exec_dry_run_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hook = exec_hook([sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    result = await hook.fire(EVENT, dry_run=True)
    assert result.outcome == "dry_run"
    assert not marker.exists()


@dataclass
class RecordingSwitch:
    calls: list[str] = field(default_factory=list)
    fail: bool = False

    async def use_fallback(self) -> None:
        if self.fail:
            raise ConnectionError("no fallback upstream")
        self.calls.append("fallback")

    async def use_primary(self) -> None:
        self.calls.append("primary")


async def test_fallback_switches_and_switches_back_when_configured() -> None:
    switch = RecordingSwitch()
    hook = FallbackHook(
        FallbackHookSettings(type="fallback", name="lkg", switch_back_on_resolve=True), switch
    )
    fired = await hook.fire(EVENT, dry_run=False)
    resolved = await hook.resolve(EVENT, dry_run=False)
    assert (fired.outcome, resolved.outcome if resolved else None) == ("success", "success")
    assert switch.calls == ["fallback", "primary"]


async def test_fallback_stays_on_resolve_by_default_and_reports_failures() -> None:
    switch = RecordingSwitch(fail=True)
    hook = FallbackHook(FallbackHookSettings(type="fallback", name="lkg"), switch)
    fired = await hook.fire(EVENT, dry_run=False)
    assert fired.outcome == "failed"
    assert fired.detail == {"error": "ConnectionError: no fallback upstream"}
    assert await hook.resolve(EVENT, dry_run=False) is None
    assert (await hook.fire(EVENT, dry_run=True)).outcome == "dry_run"
    assert switch.calls == []
