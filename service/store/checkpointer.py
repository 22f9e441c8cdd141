"""One checkpoint of every part that has state: parts register, the checkpointer saves them.

A part with state to keep across restarts (detector windows, alert instances, reading
history, admitted version labels, ...) registers itself under a name when it is built:

    checkpoints.register("pipeline", self)   # anything with state_dict / load_state_dict

`save` writes one file holding `{"format": 1, name: part.state_dict(), ...}` through the
`CheckpointStore` (atomic write and rename); `restore` hands each registered part its own
entry, in registration order. A part missing from the file (new since it was written)
starts fresh. A file whose format is not this one, or a part that refuses its entry, is
set aside, and the parts not yet restored start fresh: a bad checkpoint costs state, never
a crash loop.
The checkpoints of earlier releases have this layout (parts `pipeline`, `alerts`,
`history`) and still load.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from service.store.checkpoints import CheckpointStore

CHECKPOINT_NAME = "monitor"
FORMAT = 1

_log = structlog.get_logger("outrider.checkpoints")


class Checkpointed(Protocol):
    """A part with state: nested dicts of numpy arrays, numbers and strings (no pickle)."""

    def state_dict(self) -> Mapping[str, Any]:
        """The part's state now; must be safe to call from the checkpointing thread."""
        ...

    def load_state_dict(self, state: Mapping[str, Any], /) -> Any:
        """Restore `state`; raise ValueError if it is not one this part wrote.

        May return a list of what it skipped (strings), for the restore log.
        """
        ...


class CheckpointRegistry(Protocol):
    """Where a part with state registers itself (a `Checkpointer`)."""

    def register(self, name: str, part: Checkpointed) -> None:
        """Keep `part`'s state under `name`."""
        ...


class Checkpointer:
    """Saves and restores the registered parts as one named checkpoint."""

    def __init__(self, store: CheckpointStore, name: str = CHECKPOINT_NAME) -> None:
        self.store = store
        self.name = name
        self._parts: dict[str, Checkpointed] = {}
        self._lock = threading.Lock()

    def register(self, name: str, part: Checkpointed) -> None:
        """Keep `part`'s state under `name` from now on (restored in registration order)."""
        if name in self._parts or name == "format":
            raise ValueError(f"checkpoint part {name!r} is already registered")
        self._parts[name] = part

    @property
    def parts(self) -> list[str]:
        """The registered part names, in restore order."""
        return list(self._parts)

    def save(self) -> bool:
        """Write every part's state; False (logged) when it failed: the next save retries."""
        try:
            with self._lock:
                state: dict[str, Any] = {"format": FORMAT}
                for name, part in self._parts.items():
                    state[name] = part.state_dict()
                self.store.save(self.name, state)
        except Exception:  # the next interval tries again; traffic is unaffected
            _log.exception("checkpoint_failed")
            return False
        return True

    def restore(self) -> None:
        """Hand each part its saved state; set the file aside if any part refuses it."""
        state = self.store.load(self.name)
        if state is None:
            return
        skipped: list[str] = []
        fresh: list[str] = []
        try:
            if int(state.get("format", -1)) != FORMAT:
                raise ValueError(f"checkpoint format {state.get('format')!r} is not {FORMAT}")
            for name, part in self._parts.items():
                if name not in state:
                    fresh.append(name)
                    continue
                outcome = part.load_state_dict(state[name])
                if isinstance(outcome, list):
                    skipped += [str(item) for item in outcome]
        except Exception as error:  # incompatible: set aside, start fresh, never crash-loop
            _log.warning("checkpoint_incompatible", error=str(error))
            self.store.set_aside(self.name, reason=str(error))
            return
        _log.info("checkpoint_restored", skipped=skipped, fresh=fresh)
