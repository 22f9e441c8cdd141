"""The probe run history: one SQLite table of runs plus the versions seen and the known-good one.

Lives in `state_dir/probes/runs.sqlite` (WAL). Each run keeps its per-probe predictions so a
later version can be compared with the known-good one on exactly the same probes (paired).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

RunOutcome = Literal["ok", "failed", "refused"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS probe_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    suite TEXT NOT NULL,
    suite_digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    probes INTEGER NOT NULL,
    accuracy REAL,
    regression INTEGER,
    p_value REAL,
    baseline_version TEXT,
    error TEXT,
    predictions BLOB,
    results TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS probe_runs_lookup
    ON probe_runs (model, suite, version, outcome, id);
CREATE TABLE IF NOT EXISTS probe_versions (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    first_seen REAL NOT NULL,
    regressed_at REAL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS probe_known_good (
    model TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    promoted_at REAL NOT NULL
);
"""


# Runs deleted per transaction when pruning: the scheduler's writes wait (SQLite's busy
# timeout) only for one small batch, never for the whole backlog of a first pruning.
PRUNE_BATCH = 500


def run_store_path(state_dir: Path) -> Path:
    """Where a state directory keeps its probe run history."""
    return Path(state_dir) / "probes" / "runs.sqlite"


class RunStoreError(Exception):
    """The run history cannot be opened (a damaged or foreign file, a folder not writable)."""


@dataclass(frozen=True)
class RunRecord:
    """One probe run against one model version (failed runs have no predictions)."""

    model: str
    version: str
    suite: str
    suite_digest: str
    kind: str
    started_at: float
    finished_at: float
    outcome: RunOutcome
    probes: int
    accuracy: float | None = None
    regression: bool | None = None
    p_value: float | None = None
    baseline_version: str | None = None
    error: str | None = None
    predictions: np.ndarray | None = None
    results: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


class RunStore:
    """SQLite access for probe runs; safe to share between the scheduler's tasks."""

    def __init__(self, path: Path) -> None:
        """Opens (or creates) the history; raises `RunStoreError` naming the file if it cannot.

        The file is left as it is: it holds the known-good versions, which only its owner
        should decide to throw away.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            # SQLite reads the file only now: a damaged one fails here, not at connect.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            if db is not None:
                db.close()
            raise RunStoreError(
                f"probe run history {self.path} is unusable ({exc}); it is kept as it is: "
                "move it away to start with an empty one"
            ) from exc
        self._db = db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record_run(self, run: RunRecord) -> int:
        """Stores a run and returns its id."""
        blob = None
        if run.predictions is not None:
            blob = np.ascontiguousarray(run.predictions, dtype="<i4").tobytes()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO probe_runs (model, version, suite, suite_digest, kind, started_at,"
                " finished_at, outcome, probes, accuracy, regression, p_value, baseline_version,"
                " error, predictions, results) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.model,
                    run.version,
                    run.suite,
                    run.suite_digest,
                    run.kind,
                    run.started_at,
                    run.finished_at,
                    run.outcome,
                    run.probes,
                    run.accuracy,
                    None if run.regression is None else int(run.regression),
                    run.p_value,
                    run.baseline_version,
                    run.error,
                    blob,
                    json.dumps(run.results, sort_keys=True, default=float),
                ),
            )
            return int(cursor.lastrowid or 0)

    def runs(
        self, *, model: str | None = None, suite: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """The most recent runs first, optionally for one model and suite."""
        clauses, params = [], []
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        if suite is not None:
            clauses.append("suite = ?")
            params.append(suite)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM probe_runs {where} ORDER BY id DESC LIMIT ?", (*params, limit)
            ).fetchall()
            names = [d[0] for d in self._db.execute("SELECT * FROM probe_runs LIMIT 0").description]
        return [self._record(dict(zip(names, row, strict=True))) for row in rows]

    def last_ok_run(self, model: str, suite: str, version: str, digest: str) -> RunRecord | None:
        """The latest successful run of exactly these probes against `version`."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT * FROM probe_runs WHERE model = ? AND suite = ? AND version = ?"
                " AND suite_digest = ? AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
                (model, suite, version, digest),
            )
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        return None if row is None else self._record(dict(zip(names, row, strict=True)))

    def prune_runs(self, started_before: float) -> int:
        """Deletes runs started before `started_before`; returns how many went.

        Kept whatever their age: the latest ok run of each model's known-good version, per
        suite and suite digest, since that is the baseline `last_ok_run` hands the next
        version's regression test (a suite changed and changed back finds its old baseline
        again). The version and known-good tables are promotion state and are not touched.

        Freed pages stay in the file and are reused by later runs: `incremental_vacuum` does
        nothing on a file created without `auto_vacuum=INCREMENTAL`, and a full VACUUM would
        rewrite the whole file while holding the write lock the scheduler needs.
        """
        deleted = 0
        while True:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    cursor = self._db.execute(
                        "DELETE FROM probe_runs WHERE id IN ("
                        " SELECT id FROM probe_runs WHERE started_at < ? AND id NOT IN ("
                        "  SELECT MAX(r.id) FROM probe_runs r JOIN probe_known_good k"
                        "   ON r.model = k.model AND r.version = k.version"
                        "  WHERE r.outcome = 'ok' GROUP BY r.model, r.suite, r.suite_digest)"
                        " LIMIT ?)",
                        (started_before, PRUNE_BATCH),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            deleted += cursor.rowcount
            if cursor.rowcount < PRUNE_BATCH:
                return deleted

    @staticmethod
    def _record(row: dict[str, Any]) -> RunRecord:
        blob = row["predictions"]
        return RunRecord(
            id=int(row["id"]),
            model=row["model"],
            version=row["version"],
            suite=row["suite"],
            suite_digest=row["suite_digest"],
            kind=row["kind"],
            started_at=float(row["started_at"]),
            finished_at=float(row["finished_at"]),
            outcome=row["outcome"],
            probes=int(row["probes"]),
            accuracy=row["accuracy"],
            regression=None if row["regression"] is None else bool(row["regression"]),
            p_value=row["p_value"],
            baseline_version=row["baseline_version"],
            error=row["error"],
            predictions=None if blob is None else np.frombuffer(blob, dtype="<i4").astype(np.int64),
            results=json.loads(row["results"]),
        )

    def note_version(self, model: str, version: str, at: float) -> bool:
        """Records that `version` was seen; True the first time."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO probe_versions (model, version, first_seen) VALUES (?,?,?)",
                (model, version, at),
            )
            return cursor.rowcount == 1

    def mark_regressed(self, model: str, version: str, at: float) -> None:
        """A version with a regression is never promoted to known-good."""
        with self._lock:
            self._db.execute(
                "UPDATE probe_versions SET regressed_at = COALESCE(regressed_at, ?)"
                " WHERE model = ? AND version = ?",
                (at, model, version),
            )

    def version_state(self, model: str, version: str) -> tuple[float, float | None] | None:
        """(first_seen, regressed_at) of a version, None if never seen."""
        with self._lock:
            row = self._db.execute(
                "SELECT first_seen, regressed_at FROM probe_versions"
                " WHERE model = ? AND version = ?",
                (model, version),
            ).fetchone()
        return None if row is None else (float(row[0]), row[1])

    def ok_runs_since(self, model: str, version: str, since: float) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM probe_runs WHERE model = ? AND version = ? AND outcome = 'ok'"
                " AND started_at >= ?",
                (model, version, since),
            ).fetchone()
        return int(count)

    def known_good(self, model: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version FROM probe_known_good WHERE model = ?", (model,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_known_good(self, model: str, version: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO probe_known_good (model, version, promoted_at) VALUES (?,?,?)"
                " ON CONFLICT(model) DO UPDATE SET version = excluded.version,"
                " promoted_at = excluded.promoted_at",
                (model, version, at),
            )


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
