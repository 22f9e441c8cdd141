"""Shared plumbing for benchmarks: alternating rounds, medians, ratios, targets, JSON.

This machine is shared and noisy, so a benchmark never reports a lone absolute time:
it runs every contender in the same round, alternating their order, takes medians over
rounds and reports ratios between contenders measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Comparison = Literal["<=", ">=", "<", ">"]


@dataclass
class Target:
    """One target an issue names: `value comparison limit` must hold.

    A comparison that could not run (a peer not installed, an AttributeError or TypeError
    from either side) stays in the report as a miss: `value` NaN and `error` saying why
    (see `not_measured`). `error` is written to JSON only when set.
    """

    name: str
    value: float
    limit: float
    comparison: Comparison
    met: bool = field(init=False)
    error: str | None = None

    def __post_init__(self) -> None:
        ops: dict[str, Callable[[float, float], bool]] = {
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
        }
        if self.comparison not in ops:
            raise ValueError(f"comparison must be one of {sorted(ops)}, got {self.comparison!r}")
        self.met = self.error is None and bool(ops[self.comparison](self.value, self.limit))


def not_measured(name: str, limit: float, comparison: Comparison, error: str) -> Target:
    """A target whose measurement failed or could not run: a miss that names its error."""
    return Target(name, float("nan"), limit, comparison, error=error)


def describe_error(exc: BaseException) -> str:
    """`Type: message`, the form failed comparisons are reported in."""
    return f"{type(exc).__name__}: {exc}"


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The common command line: --quick for a CI-sized run, --json PATH for the results."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small run, minutes at most")
    parser.add_argument("--json", type=Path, default=None, help="write results and targets here")
    parser.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    return parser.parse_args(argv)


def alternating_rounds(
    contenders: dict[str, Callable[[], float | dict[str, float]]], rounds: int
) -> dict[str, list[Any]]:
    """Runs every contender once per round, reversing the order on odd rounds.

    Each callable returns one measurement (a number or a dict of numbers). Alternating the
    order cancels drift in machine load between the first and the last contender.
    """
    names = list(contenders)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            results[name].append(contenders[name]())
    return results


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, like numpy's default."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    if pos == lo or ordered[hi] == ordered[lo]:  # also keeps inf (never seen) from turning NaN
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _commit() -> str | None:
    """The checkout's commit (short), with "+changes" when the tree differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty.strip() else "")


#: The checkout a run started from (imported at start; a commit made mid-run is not it).
COMMIT_AT_START = _commit()


def report(
    name: str,
    results: dict[str, Any],
    targets: list[Target],
    json_path: Path | None,
    *,
    quick: bool,
) -> int:
    """Prints the targets table, writes JSON, and returns 0 (targets are reported, not asserted)."""
    print(f"\n== {name}: targets ({'quick' if quick else 'full'} run) ==")
    for t in targets:
        mark = "MET " if t.met else "MISS"
        if t.error is not None:
            print(f"  [{mark}] {t.name}: not measured ({t.error}); {t.comparison} {t.limit:.4g}")
        else:
            print(f"  [{mark}] {t.name}: {t.value:.4g} {t.comparison} {t.limit:.4g}")
    if json_path is not None:
        payload = {
            "benchmark": name,
            "quick": quick,
            "commit": COMMIT_AT_START,
            "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                        "load_average": os.getloadavg(), "cpu_count": os.cpu_count()},
            "results": results,
            "targets": [
                {k: v for k, v in asdict(t).items() if k != "error" or v is not None}
                for t in targets
            ],
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
        print(f"  results written to {json_path}")
    return 0
