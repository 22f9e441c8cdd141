"""`outrider demo`: model server + outrider as child processes, phased traffic, live view.

Ends by listing the incidents outrider opened, with the plots drawn for them. Ctrl-C stops
traffic and both children cleanly and still prints what was found so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from service.demo.driver import TrafficStats, drive
from service.demo.live_view import Scrape, render, scrape, status_line
from service.demo.processes import ChildProcess, free_port, http_ok, port_open, wait_until
from service.demo.setup import DemoSetup, prepare_demo
from service.demo.traffic import PHASES, TrafficGenerator

# After traffic stops, alerts get this long to settle before the summary.
_SETTLE_SECONDS = 8.0


def run_demo(
    *, state_dir: Path, duration: float, rate: float, dataset: str, live: bool | None
) -> int:
    console = Console()
    use_live = console.is_terminal if live is None else live
    _stop_on_hangup_or_term()
    console.print(f"[bold]outrider demo[/bold]: preparing the {dataset} model and references ...")
    setup = prepare_demo(
        state_dir,
        dataset=dataset,
        model_port=free_port(),
        relay_port=free_port(),
        admin_port=free_port(),
    )
    logs = setup.state_dir / "logs"
    logs.mkdir(exist_ok=True)
    model = ChildProcess(
        "model server",
        [
            "modelserver",
            "--model",
            str(setup.model_path),
            "--port",
            str(setup.model_port),
            "--log-level",
            "warning",
        ],
        logs / "modelserver.log",
    )
    outrider: ChildProcess | None = None
    stats = TrafficStats()
    interrupted = False
    try:
        wait_until(lambda: port_open(setup.model_port), "model server", 120, model)
        outrider = ChildProcess(
            "outrider", ["serve", "--config", str(setup.config_path)], logs / "outrider.log"
        )
        admin = f"http://127.0.0.1:{setup.admin_port}"
        wait_until(lambda: http_ok(f"{admin}/readyz"), "outrider", 120, outrider)
        console.print(
            f"model server on 127.0.0.1:{setup.model_port}; outrider relays 127.0.0.1:"
            f"{setup.relay_port} -> it; metrics at {admin}/metrics"
        )
        for phase in PHASES:
            console.print(f"  {phase.name}: {phase.share * duration:.0f} s, {phase.description}")
        try:
            asyncio.run(_traffic_with_view(setup, stats, duration, rate, admin, console, use_live))
        except KeyboardInterrupt:
            interrupted = True
            console.print("[yellow]interrupted: stopping traffic[/yellow]")
        if not interrupted:
            time.sleep(_SETTLE_SECONDS)
        _summary(console, setup, stats, admin)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if outrider is not None:
            outrider.stop()
        model.stop()
    console.print(f"logs: {logs}; config: {setup.config_path}")
    return 130 if interrupted else 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_hangup_or_term() -> None:
    """A closed terminal or a `kill` stops the demo like Ctrl-C does.

    The children run in their own sessions (so Ctrl-C reaches only the demo, which then
    stops them in order); without this, SIGHUP or SIGTERM would end the demo and leave
    them running.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)


async def _traffic_with_view(
    setup: DemoSetup,
    stats: TrafficStats,
    duration: float,
    rate: float,
    admin: str,
    console: Console,
    use_live: bool,
) -> None:
    generator = TrafficGenerator(setup.data, seed=1)
    traffic = asyncio.create_task(
        drive(f"127.0.0.1:{setup.relay_port}", generator, stats, duration=duration, rate=rate)
    )
    start = time.monotonic()
    view: Scrape | None = None
    last_line = 0.0
    live = (
        Live(render(stats, None, 0.0, duration), console=console, refresh_per_second=4)
        if use_live
        else None
    )
    with live if live is not None else contextlib.nullcontext():
        while not traffic.done():
            await asyncio.sleep(0.5)
            with contextlib.suppress(OSError, ValueError):
                view = await asyncio.to_thread(scrape, f"{admin}/metrics")
            elapsed = time.monotonic() - start
            if live is not None:
                live.update(render(stats, view, elapsed, duration))
            elif elapsed - last_line >= 10.0:
                last_line = elapsed
                console.print(status_line(stats, view, elapsed))
    await traffic


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5.0) as response:
        return json.loads(response.read())


def _summary(console: Console, setup: DemoSetup, stats: TrafficStats, admin: str) -> None:
    console.print(
        f"\n[bold]traffic[/bold]: {stats.sent} requests answered, {stats.failed} failed"
        + (f" {stats.errors}" if stats.errors else "")
    )
    try:
        incidents = _get_json(f"{admin}/incidents")["incidents"]
    except (OSError, ValueError, KeyError) as error:
        console.print(f"[red]could not read incidents: {error}[/red]")
        return
    if not incidents:
        console.print("no incidents were opened")
        return
    table = Table(title="incidents opened by outrider")
    for column in ("id", "alert", "severity", "signal/detector", "started", "status", "actions"):
        table.add_column(column)
    for incident in incidents:
        evidence = incident.get("evidence", {})
        table.add_row(
            str(incident["id"]),
            incident["alert"],
            incident["severity"],
            f"{evidence.get('signal', '-')}/{evidence.get('detector', '-')}",
            time.strftime("%H:%M:%S", time.localtime(incident["started_at"])),
            "resolved" if incident.get("ended_at") else "open",
            str(len(incident.get("actions", []))),
        )
    console.print(table)
    for incident in incidents:
        if incident.get("plot_path"):
            console.print(f"  plot of incident {incident['id']}: {incident['plot_path']}")
    console.print(
        f"inspect one: outrider incidents show {incidents[0]['id']} --state-dir {setup.state_dir}"
    )


def main_for_cli(args: Any) -> int:
    try:
        return run_demo(
            state_dir=Path(args.state_dir),
            duration=args.duration,
            rate=args.rate,
            dataset=args.dataset,
            live=args.live,
        )
    except (RuntimeError, TimeoutError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
