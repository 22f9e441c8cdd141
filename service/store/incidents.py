"""Incidents and hook actions in SQLite: what fired, the evidence, and what was done about it.

One file (`state_dir/incidents.sqlite`) in WAL mode. Every write commits before its method
returns, so an incident exists on disk before hooks run and an action is on disk before the
hook reports it done. The schema is versioned with `PRAGMA user_version` and migrated
forward on open.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from service.store.state_dir import PLOT_STATES, plot_file_name

IncidentStatus = Literal["open", "resolved"]
INCIDENT_STATUSES: tuple[IncidentStatus, ...] = ("open", "resolved")

_log = structlog.get_logger("outrider.incidents")

# Each entry moves the schema from version i to i + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert TEXT NOT NULL,
        severity TEXT NOT NULL,
        -- alert name + sorted labels as JSON: which alert instance the incident belongs to
        instance_key TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        evidence TEXT NOT NULL,
        plot_path TEXT
    );
    -- At most one open incident per alert instance, whatever process opens it.
    CREATE UNIQUE INDEX incidents_open_instance ON incidents (instance_key)
        WHERE ended_at IS NULL;
    CREATE INDEX incidents_started_at ON incidents (started_at);
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        -- no foreign key: an action on an unknown incident is still recorded, never lost
        incident_id INTEGER,
        at REAL NOT NULL,
        hook TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX actions_incident_id ON actions (incident_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


# Incidents deleted per transaction when pruning, so the alert thread's own writes (a new
# incident) wait for one small batch at most; also well under SQLite's bound parameters.
PRUNE_BATCH = 500


@dataclass(frozen=True, slots=True)
class IncidentPruning:
    """What one pruning removed."""

    incidents: int
    actions: int
    plots: int

    def counts(self) -> dict[str, int]:
        """The counts by kind, for the retention log line."""
        return {"incidents": self.incidents, "actions": self.actions, "plots": self.plots}


class IncidentStoreError(RuntimeError):
    """The incidents database cannot be opened or migrated; the message says why."""


class UnknownIncidentError(LookupError):
    """No incident has this id."""

    def __init__(self, incident_id: int) -> None:
        super().__init__(f"no incident with id {incident_id}")
        self.incident_id = incident_id


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One hook action taken (or decided against) for an incident."""

    id: int
    incident_id: int | None
    at: float
    hook: str
    action: str
    outcome: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "at": self.at,
            "hook": self.hook,
            "action": self.action,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Incident:
    """One firing of one alert instance, its evidence and the actions taken on it."""

    id: int
    alert: str
    severity: str
    model: str
    version: str
    labels: dict[str, str]
    annotations: dict[str, str]
    started_at: float
    ended_at: float | None
    evidence: dict[str, Any]
    plot_path: str | None
    actions: tuple[ActionRecord, ...]

    @property
    def status(self) -> IncidentStatus:
        """`open` until the alert resolves."""
        return "open" if self.ended_at is None else "resolved"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, with `status` and the actions."""
        return {
            "id": self.id,
            "alert": self.alert,
            "severity": self.severity,
            "status": self.status,
            "model": self.model,
            "version": self.version,
            "labels": self.labels,
            "annotations": self.annotations,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "evidence": self.evidence,
            "plot_path": self.plot_path,
            "actions": [action.to_json() for action in self.actions],
        }


def json_ready(value: Any) -> Any:
    """`value` with numpy types unwrapped and NaN/inf as null, so strict JSON parsers accept it."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(json_ready(value), separators=(",", ":"), sort_keys=True)


def instance_key(alert: str, labels: Mapping[str, str]) -> str:
    """Identifies an alert instance: the alert name and its labels, order-independent."""
    return json.dumps([alert, sorted(labels.items())], separators=(",", ":"))


class IncidentStore:
    """Incidents and actions in one SQLite file; safe to share between threads.

    Also the hooks' `ActionRecorder` (`record_action`). Longer than most classes (~300
    lines) on purpose: it is the one owner of the file's connection and write lock, so every
    commit (open, resolve, record, prune) is serialised in one place; the row decoding and
    the deletions it shares are module functions.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        try:
            # Autocommit mode: transactions are opened explicitly below, so "committed" means
            # the COMMIT statement ran, not whenever the sqlite3 module decides.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as error:
            raise IncidentStoreError(
                f"cannot open incidents database {self.path}: {error}"
            ) from None
        try:
            self._configure()
            self._migrate()
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise IncidentStoreError(
                f"incidents database {self.path} is unusable ({error}); it is kept as it is: "
                "move it away to start with an empty one"
            ) from None
        except IncidentStoreError:
            self._db.close()
            raise

    def _configure(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: in WAL mode NORMAL survives a process kill but a power loss or
        # kernel crash can roll back the last commits. An incident must be on disk before
        # hooks act on it ("committed before anything else happens") and actions are never
        # lost; both are rare (a few per alert), so one WAL fsync per commit costs nothing
        # that matters, while NORMAL would only save it.
        self._db.execute("PRAGMA synchronous=FULL")

    def _migrate(self) -> None:
        current = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise IncidentStoreError(
                f"incidents database {self.path} has schema version {current}, newer than this "
                f"outrider supports ({SCHEMA_VERSION}); upgrade outrider or use another state_dir"
            )
        for version in range(current, SCHEMA_VERSION):
            self._db.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[version]}\nPRAGMA user_version={version + 1};\n"
                "COMMIT;"
            )
            _log.info("incidents_schema_migrated", path=str(self.path), version=version + 1)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> IncidentStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, statements: Callable[[sqlite3.Connection], int]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = statements(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return result

    def open_incident(
        self,
        *,
        alert: str,
        severity: str,
        labels: Mapping[str, str],
        model: str,
        version: str,
        started_at: float,
        evidence: Mapping[str, Any],
        annotations: Mapping[str, str] | None = None,
    ) -> int:
        """Record that an alert instance fired; return the incident id once it is committed.

        While an incident of the same alert instance (alert name and labels) is open, this
        returns that incident's id and changes nothing. `evidence` is stored as JSON as
        given: the caller decides what goes in (payloads only if configured).
        """
        key = instance_key(alert, labels)

        def insert(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT id FROM incidents WHERE instance_key = ? AND ended_at IS NULL", (key,)
            ).fetchone()
            if row is not None:
                return int(row[0])
            cursor = db.execute(
                "INSERT INTO incidents (alert, severity, instance_key, labels, annotations, "
                "model, version, started_at, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert,
                    severity,
                    key,
                    _dumps(dict(labels)),
                    _dumps(dict(annotations or {})),
                    model,
                    version,
                    float(started_at),
                    _dumps(evidence),
                ),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        incident_id = self._write(insert)
        _log.info(
            "incident_opened",
            incident_id=incident_id,
            alert=alert,
            model=model,
            version=version,
            severity=severity,
        )
        return incident_id

    def find_open_incident(self, alert: str, labels: Mapping[str, str]) -> int | None:
        """The id of the open incident of this alert instance, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM incidents WHERE instance_key = ? AND ended_at IS NULL",
                (instance_key(alert, labels),),
            ).fetchone()
        return None if row is None else int(row[0])

    def resolve_incident(self, incident_id: int, ended_at: float) -> None:
        """Mark an incident resolved at `ended_at`; resolving it again keeps the first end time.

        Raises UnknownIncidentError for an id that does not exist.
        """

        def resolve(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT ended_at FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
            if row is None:
                raise UnknownIncidentError(incident_id)
            if row[0] is None:
                db.execute(
                    "UPDATE incidents SET ended_at = ? WHERE id = ?", (float(ended_at), incident_id)
                )
            return incident_id

        self._write(resolve)
        _log.info("incident_resolved", incident_id=incident_id, ended_at=ended_at)

    def set_plot_path(self, incident_id: int, plot_path: str | os.PathLike[str]) -> None:
        """Attach the rendered plot's path to an incident. Raises UnknownIncidentError."""

        def update(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "UPDATE incidents SET plot_path = ? WHERE id = ?", (str(plot_path), incident_id)
            )
            if cursor.rowcount == 0:
                raise UnknownIncidentError(incident_id)
            return incident_id

        self._write(update)

    def record_action(
        self, incident_id: int | None, hook: str, action: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        """Record a hook action; committed before returning (the hooks' ActionRecorder).

        An action naming an incident id that does not exist is still recorded (and logged):
        losing the record of something a hook did is worse than an orphan row.
        """
        at = self.clock()

        def insert(db: sqlite3.Connection) -> int:
            if (
                incident_id is not None
                and db.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone()
                is None
            ):
                _log.warning(
                    "action_for_unknown_incident", incident_id=incident_id, hook=hook, action=action
                )
            cursor = db.execute(
                "INSERT INTO actions (incident_id, at, hook, action, outcome, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (incident_id, at, hook, action, outcome, _dumps(detail)),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        self._write(insert)

    def prune_resolved(self, ended_before: float) -> IncidentPruning:
        """Deletes incidents resolved before `ended_before`, their actions and plot files.

        Open incidents are never touched, whatever their age. A plot file already gone is
        fine; one that cannot be removed keeps its incident for the next pruning, so no plot
        is left behind with nothing pointing at it. Actions that name no incident stay.

        Freed pages stay in the file and are reused by later incidents: `incremental_vacuum`
        does nothing on a file created without `auto_vacuum=INCREMENTAL`, and a full VACUUM
        would rewrite the whole file while holding the lock new incidents need.
        """
        incidents = actions = plots = 0
        after = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, plot_path FROM incidents WHERE ended_at IS NOT NULL"
                    " AND ended_at < ? AND id > ? ORDER BY id LIMIT ?",
                    (float(ended_before), after, PRUNE_BATCH),
                ).fetchall()
            if not rows:
                break
            after = int(rows[-1][0])
            # Files first, outside the database lock: a failed unlink keeps the row instead.
            removable: list[int] = []
            for incident_id, plot_path in rows:
                removed = _remove_plots(int(incident_id), plot_path)
                if removed is None:
                    continue
                plots += removed
                removable.append(int(incident_id))
            if removable:
                actions += self._write(partial(_delete_incidents, removable))
                incidents += len(removable)
            if len(rows) < PRUNE_BATCH:
                break
        return IncidentPruning(incidents=incidents, actions=actions, plots=plots)

    def list_incidents(
        self, status: IncidentStatus | None = None, limit: int = 50
    ) -> list[Incident]:
        """Incidents newest first, optionally only open or only resolved ones, with actions."""
        if status is not None and status not in INCIDENT_STATUSES:
            raise ValueError(f"status must be one of {INCIDENT_STATUSES} or None, got {status!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        where = {
            None: "",
            "open": "WHERE ended_at IS NULL",
            "resolved": "WHERE ended_at IS NOT NULL",
        }[status]
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_INCIDENT_COLUMNS} FROM incidents {where} "
                "ORDER BY started_at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            actions = self._actions_of([int(row[0]) for row in rows])
        return [_incident(row, actions.get(int(row[0]), ())) for row in rows]

    def count_open(self) -> int:
        """How many incidents are open now (for the `outrider_incidents_open` gauge)."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM incidents WHERE ended_at IS NULL"
            ).fetchone()
        return int(count)

    def get_incident(self, incident_id: int) -> Incident:
        """One incident with its actions. Raises UnknownIncidentError."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
            if row is None:
                raise UnknownIncidentError(incident_id)
            actions = self._actions_of([incident_id])
        return _incident(row, actions.get(incident_id, ()))

    def _actions_of(self, incident_ids: Sequence[int]) -> dict[int, tuple[ActionRecord, ...]]:
        if not incident_ids:
            return {}
        marks = ",".join("?" * len(incident_ids))
        rows = self._db.execute(
            "SELECT id, incident_id, at, hook, action, outcome, detail FROM actions "
            f"WHERE incident_id IN ({marks}) ORDER BY at, id",
            tuple(incident_ids),
        ).fetchall()
        grouped: dict[int, list[ActionRecord]] = {}
        for row in rows:
            grouped.setdefault(int(row[1]), []).append(_action(row))
        return {key: tuple(value) for key, value in grouped.items()}


def _delete_incidents(incident_ids: Sequence[int], db: sqlite3.Connection) -> int:
    """Deletes incidents and their actions (one transaction); returns the actions removed."""
    marks = ",".join("?" * len(incident_ids))
    actions = db.execute(
        f"DELETE FROM actions WHERE incident_id IN ({marks})", tuple(incident_ids)
    ).rowcount
    # Resolved incidents never reopen, so the ids selected for pruning are still prunable.
    db.execute(f"DELETE FROM incidents WHERE id IN ({marks})", tuple(incident_ids))
    return int(actions)


_INCIDENT_COLUMNS = (
    "id, alert, severity, model, version, labels, annotations, started_at, ended_at, "
    "evidence, plot_path"
)


def _incident(row: Sequence[Any], actions: Iterable[ActionRecord]) -> Incident:
    return Incident(
        id=int(row[0]),
        alert=row[1],
        severity=row[2],
        model=row[3],
        version=row[4],
        labels=json.loads(row[5]),
        annotations=json.loads(row[6]),
        started_at=float(row[7]),
        ended_at=None if row[8] is None else float(row[8]),
        evidence=json.loads(row[9]),
        plot_path=row[10],
        actions=tuple(actions),
    )


def _action(row: Sequence[Any]) -> ActionRecord:
    return ActionRecord(
        id=int(row[0]),
        incident_id=None if row[1] is None else int(row[1]),
        at=float(row[2]),
        hook=row[3],
        action=row[4],
        outcome=row[5],
        detail=json.loads(row[6]),
    )


def _plot_candidates(incident_id: int, plot_path: str) -> list[Path]:
    """The recorded plot and its siblings for the other alert states, firing first."""
    recorded = Path(plot_path)
    siblings = [recorded.parent / plot_file_name(incident_id, s) for s in PLOT_STATES]
    return siblings + ([recorded] if recorded not in siblings else [])


def _remove_plots(incident_id: int, plot_path: str | None) -> int | None:
    """Deletes an incident's plot files; how many, or None when one could not be removed."""
    if plot_path is None:
        return 0
    removed = 0
    for path in _plot_candidates(incident_id, plot_path):
        try:
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as error:
            _log.warning(
                "incident_plot_not_removed", incident_id=incident_id, path=str(path),
                error=str(error),
            )
            return None
    return removed
