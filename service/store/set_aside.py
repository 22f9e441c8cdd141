"""Moving an unusable file aside: `<stem>.corrupt-<UTC time>` next to it, never over another.

Checkpoints and captured references that cannot be read are kept for a look, not deleted,
and a fresh one takes their place; `remove_set_aside_files` deletes them once old
(scheduled by `service.store.retention`).
"""

from __future__ import annotations

import calendar
import os
import re
import time
from pathlib import Path

#: strftime format of the time in a set-aside file's name (UTC).
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# The UTC time `move_aside` puts in the name of a file it sets aside (STAMP_FORMAT).
_SET_ASIDE_STAMP = re.compile(r"\.corrupt-(\d{8}T\d{6}Z)")


def move_aside(path: Path, stem: str) -> Path | None:
    """Renames `path` to `<stem>.corrupt-<UTC time>[-N]` in its folder; returns the new path.

    None when `path` is gone already; any other failure to rename raises OSError.
    """
    stamp = time.strftime(STAMP_FORMAT, time.gmtime())
    aside = path.with_name(f"{stem}.corrupt-{stamp}")
    suffix = 1
    while aside.exists():
        aside = path.with_name(f"{stem}.corrupt-{stamp}-{suffix}")
        suffix += 1
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    return aside


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
