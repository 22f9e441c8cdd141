"""Exec hook: runs a program (argv, no shell) with the alert in OUTRIDER_ALERT_* variables."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from typing import Any

from service.alerting.events import AlertEvent
from service.hooks.actions import HookResult
from service.hooks.settings import ExecHookSettings

_OUTPUT_EXCERPT = 2048
#: How long to wait for a killed program to be reaped. Only a descendant that left the
#: process group (setsid) and kept the output pipes open can hold it up this long.
_REAP_SECONDS = 5.0
#: The only variables inherited from outrider's environment: secrets there stay there.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


def alert_environment(event: AlertEvent) -> dict[str, str]:
    """The OUTRIDER_ALERT_* variables describing ``event`` (maps as JSON)."""
    return {
        "OUTRIDER_ALERT_NAME": event.name,
        "OUTRIDER_ALERT_SEVERITY": event.severity,
        "OUTRIDER_ALERT_STATUS": event.status,
        "OUTRIDER_ALERT_MODEL": event.model,
        "OUTRIDER_ALERT_VERSION": event.version,
        "OUTRIDER_ALERT_FINGERPRINT": event.fingerprint,
        "OUTRIDER_ALERT_STARTS_AT": event.starts_at.isoformat() if event.starts_at else "",
        "OUTRIDER_ALERT_ENDS_AT": event.ends_at.isoformat() if event.ends_at else "",
        "OUTRIDER_ALERT_INCIDENT_ID": "" if event.incident_id is None else str(event.incident_id),
        "OUTRIDER_ALERT_INCIDENT_URL": event.incident_url or "",
        "OUTRIDER_ALERT_LABELS": json.dumps(dict(event.labels), sort_keys=True),
        "OUTRIDER_ALERT_ANNOTATIONS": json.dumps(dict(event.annotations), sort_keys=True),
        "OUTRIDER_ALERT_EVIDENCE": json.dumps(dict(event.evidence), sort_keys=True, default=str),
    }


class ExecHook:
    """Run the configured program for firing and resolved alerts; record its exit status."""

    def __init__(self, settings: ExecHookSettings) -> None:
        self.settings = settings

    @property
    def name(self) -> str:
        """The configured hook name."""
        return self.settings.name

    async def fire(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        """Run the program for a firing alert."""
        return await self._run(event, dry_run=dry_run)

    async def resolve(self, event: AlertEvent, *, dry_run: bool) -> HookResult | None:
        """Run the program for a resolved alert (OUTRIDER_ALERT_STATUS=resolved)."""
        return await self._run(event, dry_run=dry_run)

    def _environment(self, event: AlertEvent) -> dict[str, str]:
        env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
        env.update(self.settings.env)
        env.update(alert_environment(event))
        return env

    async def _run(self, event: AlertEvent, *, dry_run: bool) -> HookResult:
        argv = list(self.settings.argv)
        action = f"exec {argv[0]} ({event.status} {event.name})"
        detail: dict[str, Any] = {"argv": argv}
        if dry_run:
            return HookResult("dry_run", action, detail)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environment(event),
                cwd=self.settings.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            return HookResult("failed", action, {**detail, "error": f"cannot start: {exc}"})
        try:
            stdout, stderr = await asyncio.wait_for(
                process.communicate(), timeout=self.settings.timeout_seconds
            )
        except asyncio.TimeoutError:
            return HookResult(
                "failed",
                action,
                {
                    **detail,
                    "error": "timeout",
                    "timeout_seconds": self.settings.timeout_seconds,
                    "exit_status": await _kill_and_reap(process),
                },
            )
        except asyncio.CancelledError:
            # Shutdown or a cancelled dispatch: the program must not outlive the hook either.
            await _kill_and_reap(process)
            raise
        detail.update(
            exit_status=process.returncode,
            stdout=stdout[-_OUTPUT_EXCERPT:].decode("utf-8", "replace"),
            stderr=stderr[-_OUTPUT_EXCERPT:].decode("utf-8", "replace"),
        )
        return HookResult("success" if process.returncode == 0 else "failed", action, detail)


async def _kill_and_reap(process: asyncio.subprocess.Process) -> int | None:
    """Kill the program and everything it started, then reap it; its exit status (None when
    it could not be reaped within ``_REAP_SECONDS``)."""
    # The program leads its own process group (start_new_session), so this one signal also
    # reaches what a shell script started in the background. Killing only the program would
    # leave those running, holding the output pipes open and the wait below with them.
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(process.wait(), timeout=_REAP_SECONDS)
    return process.returncode
