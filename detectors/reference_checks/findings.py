"""What a reference check returns: the rows it flags, why, how strongly, and its summary.

Every check in this package returns one `CheckResult`. Row indices always refer to the
rows of the check's `subject` (the reference, unless the result says otherwise), in the
order they were given, so a caller can drop exactly the flagged rows and keep a record of
which and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Status = Literal["ok", "flagged", "skipped"]
STATUSES: tuple[Status, ...] = ("ok", "flagged", "skipped")

# Reason codes, one per way a row can be flagged (stable: reports and metrics use them).
NON_FINITE = "non_finite"
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"
OOD_VS_SEED = "ood_vs_seed"
ROBUST_MAHALANOBIS = "robust_mahalanobis"
KNN_DISTANCE = "knn_distance"
SPECTRAL_SIGNATURE = "spectral_signature"
ACTIVATION_CLUSTER = "activation_cluster"
LABEL_ERROR = "label_error"
PROBE_OVERLAP_EXACT = "probe_overlap_exact"
PROBE_OVERLAP_NEAR = "probe_overlap_near"
TRAINING_OVERLAP_EXACT = "training_overlap_exact"
TRAINING_OVERLAP_NEAR = "training_overlap_near"

REASONS: tuple[str, ...] = (
    NON_FINITE,
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    OOD_VS_SEED,
    ROBUST_MAHALANOBIS,
    KNN_DISTANCE,
    SPECTRAL_SIGNATURE,
    ACTIVATION_CLUSTER,
    LABEL_ERROR,
    PROBE_OVERLAP_EXACT,
    PROBE_OVERLAP_NEAR,
    TRAINING_OVERLAP_EXACT,
    TRAINING_OVERLAP_NEAR,
)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one set of rows.

    Attributes
    ----------
    check
        The check's name (stable; the `check` label of `outrider_reference_rows_flagged`).
    status
        "flagged" when the finding is above the check's warn threshold, "ok" when it is not
        (rows may still be listed), "skipped" when the check did not run (`message` says why).
    subject
        What `rows` index: "reference", or "probe_suites" for probe rows in the training set.
    n_rows
        Rows of the subject the check looked at.
    rows
        Indices of the flagged rows, ascending.
    reasons
        One reason code per flagged row (see `REASONS`).
    scores
        One score per flagged row; higher means more suspicious (each check documents its
        scale).
    related
        Per flagged row, what it was matched with: the kept twin of a duplicate, the probe
        or training row it overlaps, the class the model suggests for a label error; -1
        where there is none.
    row_scores
        The score of every row of the subject (for ranking, e.g. a removal budget), or None
        for checks that judge the set as a whole.
    summary
        Figures about the whole set (shares, p-values, per-class statistics).
    message
        One line for a person: what was found, or why the check was skipped.
    elapsed_s
        Wall time the check took.
    """

    check: str
    status: Status
    subject: str
    n_rows: int
    rows: NDArray[np.int64]
    reasons: tuple[str, ...]
    scores: NDArray[np.float64]
    related: NDArray[np.int64]
    row_scores: NDArray[np.float64] | None
    summary: Mapping[str, object] = field(default_factory=dict)
    message: str = ""
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}, got {self.status!r}")
        k = len(self.rows)
        if not (len(self.reasons) == len(self.scores) == len(self.related) == k):
            raise ValueError(
                f"rows ({k}), reasons ({len(self.reasons)}), scores ({len(self.scores)}) and "
                f"related ({len(self.related)}) must have one entry per flagged row"
            )
        unknown = sorted(set(self.reasons) - set(REASONS))
        if unknown:
            raise ValueError(f"unknown reason codes {unknown}; valid: {list(REASONS)}")
        if self.row_scores is not None and len(self.row_scores) != self.n_rows:
            raise ValueError(
                f"row_scores has {len(self.row_scores)} entries for {self.n_rows} rows"
            )

    @property
    def flagged(self) -> bool:
        """Whether the finding is above the check's warn threshold."""
        return self.status == "flagged"

    @property
    def flagged_share(self) -> float:
        """Flagged rows over the rows looked at (0 when there were none)."""
        return len(self.rows) / self.n_rows if self.n_rows else 0.0

    def top_rows(self, budget: int) -> NDArray[np.int64]:
        """The `budget` rows with the highest `row_scores` (ties by index): a removal budget."""
        if self.row_scores is None:
            raise ValueError(f"check {self.check!r} gives no per-row scores to rank by")
        if budget <= 0:
            return np.empty(0, dtype=np.int64)
        order = np.lexsort((np.arange(self.n_rows), -self.row_scores))
        return np.asarray(order[:budget], dtype=np.int64)

    def with_elapsed(self, elapsed_s: float) -> CheckResult:
        """A copy carrying the time the check took."""
        return replace(self, elapsed_s=float(elapsed_s))

    def remapped(
        self, index: NDArray[np.int64], n_rows: int, *, related_too: bool = False
    ) -> CheckResult:
        """The same result with rows renumbered through `index` (rows of a subset -> all rows).

        Used when a check ran on the finite rows only: `index[i]` is the original position of
        subset row i, and rows outside the subset get the row score NaN. `related_too`
        renumbers `related` as well (when it points at rows of the same subject).
        """
        row_scores = None
        if self.row_scores is not None:
            row_scores = np.full(n_rows, np.nan)
            row_scores[index] = self.row_scores
        related = self.related
        if related_too and len(related):
            related = np.where(related >= 0, index[np.maximum(related, 0)], -1)
        return replace(
            self,
            n_rows=n_rows,
            rows=np.asarray(index[self.rows], dtype=np.int64),
            related=related,
            row_scores=row_scores,
        )

    def to_dict(self, include_rows: bool = True) -> dict[str, object]:
        """Plain Python types only (for JSON); `include_rows=False` leaves the row list out."""
        out: dict[str, object] = {
            "check": self.check,
            "status": self.status,
            "subject": self.subject,
            "n_rows": self.n_rows,
            "flagged_rows": len(self.rows),
            "flagged_share": self.flagged_share,
            "summary": _plain(dict(self.summary)),
            "message": self.message,
            "elapsed_s": self.elapsed_s,
        }
        if include_rows:
            out["rows"] = [
                {
                    "index": int(i),
                    "reason": reason,
                    "score": _plain_float(float(score)),
                    "related": int(rel),
                }
                for i, reason, score, rel in zip(
                    self.rows, self.reasons, self.scores, self.related, strict=True
                )
            ]
        return out


def build_result(
    check: str,
    *,
    n_rows: int,
    flagged: NDArray[np.bool_] | NDArray[np.int64],
    reasons: Sequence[str] | str,
    scores: NDArray[np.float64],
    related: NDArray[np.int64] | None = None,
    row_scores: NDArray[np.float64] | None = None,
    above_warn: bool,
    summary: Mapping[str, object],
    message: str,
    subject: str = "reference",
) -> CheckResult:
    """A `CheckResult` from per-row arrays: `flagged` as a mask or as indices.

    `reasons`, `scores` and `related` are per row of the subject (length `n_rows`) or a
    single reason for all; only the flagged rows' entries are kept.
    """
    if flagged.dtype == np.bool_:
        rows = np.flatnonzero(flagged).astype(np.int64)
    else:
        rows = np.unique(np.asarray(flagged, dtype=np.int64))
    if isinstance(reasons, str):
        reason_rows = (reasons,) * len(rows)
    else:
        reason_rows = tuple(reasons[int(i)] for i in rows)
    rel = np.full(len(rows), -1, dtype=np.int64) if related is None else related[rows]
    return CheckResult(
        check=check,
        status="flagged" if above_warn else "ok",
        subject=subject,
        n_rows=n_rows,
        rows=rows,
        reasons=reason_rows,
        scores=np.asarray(scores[rows], dtype=np.float64),
        related=np.asarray(rel, dtype=np.int64),
        row_scores=row_scores,
        summary=summary,
        message=message,
    )


def skipped(check: str, why: str, *, n_rows: int = 0, subject: str = "reference") -> CheckResult:
    """A result for a check that did not run, saying why."""
    return CheckResult(
        check=check,
        status="skipped",
        subject=subject,
        n_rows=n_rows,
        rows=np.empty(0, dtype=np.int64),
        reasons=(),
        scores=np.empty(0),
        related=np.empty(0, dtype=np.int64),
        row_scores=None,
        summary={},
        message=why,
    )


def _plain_float(value: float) -> float | None:
    # JSON has no NaN or infinity: they become null.
    return value if np.isfinite(value) else None


def _plain(value: object) -> object:
    """numpy scalars and arrays inside a summary as plain Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _plain_float(float(value))
    return value
