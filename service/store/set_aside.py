"""Moving an unusable file aside: `<stem>.corrupt-<UTC time>` next to it, never over another.

Checkpoints and captured references that cannot be read are kept for a look, not deleted,
and a fresh one takes their place; `service.retention` deletes them once old.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: strftime format of the time in a set-aside file's name (UTC).
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


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
