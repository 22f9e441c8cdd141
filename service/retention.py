"""Retention of the state directory beyond its databases' own pruning.

Set-aside `*.corrupt-*` files (checkpoints, references) are deleted once old, and the probe
run history is pruned on a connection of its own, so it happens whether or not probes run.
The alert thread calls these (see `OutriderApp._prune_state`), never the event loop.
"""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path

from service.probes.run_store import RunStore, run_store_path
from service.store.set_aside import STAMP_FORMAT

# The UTC time `move_aside` puts in the name of a file it sets aside (STAMP_FORMAT).
_SET_ASIDE_STAMP = re.compile(r"\.corrupt-(\d{8}T\d{6}Z)")


def remove_set_aside_files(root: Path, older_than: float) -> int:
    """Deletes the `*.corrupt-*` files under `root` set aside before `older_than` (epoch).

    A file's age is the later of its mtime and the time in its name: a rename keeps the
    mtime, so a reference written long ago and set aside today would otherwise look old at
    once and be gone before anyone could look at it. Returns how many files went.
    """
    removed = 0
    for path in root.rglob("*.corrupt-*"):
        try:
            if path.is_symlink() or not path.is_file():
                continue
            if max(path.stat().st_mtime, _set_aside_time(path.name)) >= older_than:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed


def _set_aside_time(name: str) -> float:
    stamp = _SET_ASIDE_STAMP.search(name)
    if stamp is None:
        return 0.0
    try:
        return float(calendar.timegm(time.strptime(stamp.group(1), STAMP_FORMAT)))
    except ValueError:  # not a date after all: the mtime alone decides
        return 0.0


def prune_probe_runs(state_root: Path, started_before: float) -> int:
    """Prunes the probe run history, on its own connection (so whether or not probes run)."""
    path = run_store_path(state_root)
    if not path.exists():
        return 0
    store = RunStore(path)
    try:
        return store.prune_runs(started_before)
    finally:
        store.close()
