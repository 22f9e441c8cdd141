"""Checkpoints: nested dicts of numpy arrays, numbers and strings, written so a kill -9 is safe.

A checkpoint is one `.npz` file per name. Nested dicts are flattened into `a/b/c` keys and
loaded with `allow_pickle=False`, so a checkpoint can never run code. Writing goes to a temp
file in the same folder, is fsynced, then renamed over the old file: a crash at any point
leaves either the old checkpoint or the new one, never a mix. A file that cannot be read
(truncated, corrupt, written by an incompatible version) is logged, renamed aside and
reported as missing, so a bad checkpoint costs one interval of state, not a crash loop.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from service.store.set_aside import move_aside

FORMAT_VERSION = 1
"""Bumped when the file layout changes; files with another version are set aside."""

_FORMAT_KEY = "__format_version__"
# State keys live under this prefix so none can be taken for a savez() keyword argument.
_STATE_PREFIX = "state/"
_EMPTY_DICT = "__empty__"
_SEPARATOR = "/"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

_log = structlog.get_logger("outrider.checkpoints")


class CheckpointError(ValueError):
    """A state that cannot be checkpointed (a key or value type the format does not hold)."""


def flatten_state(state: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Turn a nested dict into `a/b/c` keyed arrays; scalars become 0-d arrays."""
    flat: dict[str, np.ndarray] = {}
    if not state and prefix:
        flat[prefix + _EMPTY_DICT] = np.zeros(0, dtype=np.int8)
    for key, value in state.items():
        if not isinstance(key, str) or not key or _SEPARATOR in key or key.startswith("__"):
            raise CheckpointError(
                f"checkpoint key {prefix}{key!r} must be a non-empty string without "
                f"'{_SEPARATOR}' that does not start with '__'"
            )
        path = prefix + key
        if isinstance(value, Mapping):
            flat.update(flatten_state(value, path + _SEPARATOR))
        elif isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise CheckpointError(f"checkpoint value {path!r} is an object array")
            flat[path] = value
        elif isinstance(value, bool | int | float | str | np.generic):
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise CheckpointError(f"checkpoint value {path!r} is not a plain scalar")
            flat[path] = array
        else:
            raise CheckpointError(
                f"checkpoint value {path!r} has type {type(value).__name__}; use a dict, a "
                "numpy array, a number or a string"
            )
    return flat


def unflatten_state(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Rebuild the nested dict; 0-d arrays come back as Python scalars (int, float, bool, str)."""
    state: dict[str, Any] = {}
    for path, array in flat.items():
        *parents, leaf = path.split(_SEPARATOR)
        node = state
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"checkpoint key {path!r} clashes with a value")
        if leaf == _EMPTY_DICT:
            continue
        node[leaf] = array.item() if array.ndim == 0 else array
    return state


class CheckpointStore:
    """Saves and loads named checkpoints in one folder (the state dir's `checkpoints/`)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Temp files of a save that was killed mid-write: never complete, never renamed.
        for leftover in self.directory.glob("*.npz.tmp-*"):
            try:
                leftover.unlink(missing_ok=True)
            except OSError as error:  # a read-only folder: harmless, never loaded
                _log.warning("checkpoint_leftover_kept", path=str(leftover), error=str(error))

    def path(self, name: str) -> Path:
        """The file of checkpoint `name`."""
        if not _NAME.match(name):
            raise CheckpointError(
                f"checkpoint name {name!r} must be 1-128 characters of letters, digits, _ . -"
            )
        return self.directory / f"{name}.npz"

    def save(self, name: str, state: Mapping[str, Any]) -> Path:
        """Write `state` atomically; on any failure the previous checkpoint stays as it was.

        Raises CheckpointError for a state the format cannot hold, OSError when writing fails.
        """
        target = self.path(name)
        arrays: dict[str, Any] = {
            _STATE_PREFIX + key: array for key, array in flatten_state(state).items()
        }
        arrays[_FORMAT_KEY] = np.asarray(FORMAT_VERSION)
        handle, temp_name = tempfile.mkstemp(prefix=f"{target.name}.tmp-", dir=self.directory)
        temp = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as file:
                # Object arrays were refused by flatten_state, so nothing here needs pickle.
                np.savez(file, **arrays)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._sync_directory()
        return target

    def load(self, name: str) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it could not be read (set aside)."""
        target = self.path(name)
        if not target.exists():
            return None
        try:
            # numpy reads members without reaching their end, so it never checks their CRC:
            # a flipped bit inside an array would load silently. testzip() reads and checks all.
            with zipfile.ZipFile(target) as zipped:
                damaged = zipped.testzip()
            if damaged is not None:
                raise CheckpointError(f"member {damaged!r} fails its CRC check")
            with np.load(target, allow_pickle=False) as archive:
                # Read every member now: a truncated member only shows up when read.
                flat = {key: archive[key] for key in archive.files}
            version = flat.pop(_FORMAT_KEY, None)
            if version is None or version.ndim != 0 or int(version) != FORMAT_VERSION:
                raise CheckpointError(
                    f"format_version {None if version is None else version.tolist()!r}, "
                    f"expected {FORMAT_VERSION}"
                )
            return unflatten_state(
                {
                    key.removeprefix(_STATE_PREFIX): array
                    for key, array in flat.items()
                    if key.startswith(_STATE_PREFIX)
                }
            )
        except Exception as error:  # any unreadable file is set aside alike
            self.set_aside(name, reason=f"{type(error).__name__}: {error}")
            return None

    def set_aside(self, name: str, *, reason: str) -> Path | None:
        """Rename checkpoint `name` to `<name>.corrupt-<UTC time>` and log why.

        Callers use it too when a checkpoint loads but its content does not fit the running
        configuration (e.g. a detector's state_dict is refused). Returns where the file went,
        or None when there was none or the rename failed: that is logged, never raised, so a
        bad checkpoint cannot stop start-up.
        """
        target = self.path(name)
        try:
            aside = move_aside(target, name)
        except OSError as error:
            # A read-only folder, say: the bad file stays where it is, but it has already
            # been reported unusable, so the caller goes on with a fresh state (the next
            # save replaces it) rather than failing start-up over the rename.
            _log.error(
                "checkpoint_set_aside_failed",
                name=name,
                path=str(target),
                reason=reason,
                error=f"{type(error).__name__}: {error}",
            )
            return None
        if aside is None:
            return None
        _log.error(
            "checkpoint_set_aside",
            name=name,
            path=str(target),
            moved_to=str(aside),
            reason=reason,
        )
        return aside

    def _sync_directory(self) -> None:
        # The rename is durable only once the folder entry is on disk.
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
