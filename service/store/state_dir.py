"""The state directory layout: incidents database, references, checkpoints, probes, plots."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


class StateDirError(RuntimeError):
    """The state directory cannot be created or written; the message says which path and why."""


@dataclass(frozen=True)
class StateDir:
    """Paths inside one state directory (`state_dir` in the config)."""

    root: Path

    @property
    def incidents_db(self) -> Path:
        """The SQLite incidents database."""
        return self.root / "incidents.sqlite"

    @property
    def references(self) -> Path:
        """Reference samples per signal."""
        return self.root / "references"

    @property
    def checkpoints(self) -> Path:
        """Detector, window and alert state, written atomically."""
        return self.root / "checkpoints"

    @property
    def probes(self) -> Path:
        """Probe suites and their baselines."""
        return self.root / "probes"

    @property
    def plots(self) -> Path:
        """Incident plots (PNG)."""
        return self.root / "plots"

    def plot_path(self, incident_id: int, state: str) -> Path:
        """Where the plot of one incident at one alert state (firing, resolved) goes."""
        return self.plots / plot_file_name(incident_id, state)


# One plot per alert state: the resolved plot (the whole incident) does not overwrite the
# picture the on-call was paged with.
PLOT_STATES = ("firing", "resolved")


def plot_file_name(incident_id: int, state: str) -> str:
    """`incident-<id>-<state>.png`; raises ValueError for a state that gets no plot."""
    if state not in PLOT_STATES:
        raise ValueError(f"plots are drawn for {', '.join(PLOT_STATES)}, not {state!r}")
    return f"incident-{incident_id}-{state}.png"


def prepare_state_dir(root: str | os.PathLike[str]) -> StateDir:
    """Create the state directory and its sub-folders, and check that each can be written.

    Raises StateDirError naming the path that failed, so a misconfigured volume is caught at
    start rather than at the first incident.
    """
    state = StateDir(Path(root).expanduser().absolute())
    for folder in (state.root, state.references, state.checkpoints, state.probes, state.plots):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StateDirError(
                f"state directory path {folder} exists and is not a folder"
            ) from None
        except OSError as error:
            raise StateDirError(
                f"cannot create state directory {folder}: {error.strerror or error}"
            ) from None
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            raise StateDirError(
                f"state directory {folder} is not writable by uid {os.getuid()}: "
                f"{error.strerror or error}; set state_dir to a writable path"
            ) from None
    return state
