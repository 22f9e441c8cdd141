"""Poisoned rows by their spectral signature in a model's representation space.

Tran, Li and Madry (2018): when some rows of a class carry a backdoor (a trigger and a
flipped label) that the model learned, their representations differ from the clean rows
of the class in one direction, so the top singular vector of the class's centred
representations points along it and the poisoned rows project far out on it. The paper
scores each row by its squared projection and removes the top 1.5 x epsilon of each class;
here the projection is scaled to a robust z within its class (median, MAD: the clean
majority sets the yardstick), so one threshold serves every class and a row's score says
how far out it lies. The representations must come from a model trained on the rows being
checked: a model that never saw the backdoor has no signature to find.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray
from detectors.reference_checks.findings import SPECTRAL_SIGNATURE, CheckResult, build_result
from detectors.reference_checks.neighbours import fit_projection
from detectors.reference_checks.robust_statistics import robust_z

CHECK = "spectral_signatures"
#: Classes with fewer rows are not examined (a top singular vector of a handful of rows
#: says nothing about a subpopulation).
MIN_CLASS_ROWS = 20


def spectral_signatures(
    x: FloatArray,
    groups: NDArray[np.int64],
    *,
    z_max: float = 6.0,
    class_warn_share: float = 0.01,
    seed: int = 0,
) -> CheckResult:
    """Per class, rows whose projection on the top singular vector is a robust outlier.

    `groups` is each row's class (given labels, or the model's predicted class). A row is
    flagged when |robust z| of its projection exceeds `z_max`; score = that |z| for every
    row. Status "flagged" when some class has more than `class_warn_share` of its rows
    flagged. The summary lists, per class, its rows, flagged rows, the share of variance on
    the top singular vector and the largest |z|.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 8))
    >>> x[:10] += 8.0 * np.eye(8)[3]          # ten rows share a shifted direction
    >>> result = spectral_signatures(x, np.zeros(200, dtype=np.int64))
    >>> result.rows.tolist() == list(range(10))
    True
    """
    n = x.shape[0]
    rng = np.random.default_rng([seed, 7])
    score = np.zeros(n)
    per_class: dict[str, object] = {}
    flagged_classes = []
    for c in np.unique(groups):
        members = np.flatnonzero(groups == c)
        if len(members) < MIN_CLASS_ROWS:
            per_class[str(int(c))] = {"rows": len(members), "examined": False}
            continue
        rows = x[members]
        axis = fit_projection(rows, 1, rng)
        projection = axis.coordinates(rows)[:, 0]
        z = np.abs(robust_z(projection))
        score[members] = z
        centred = rows - rows.mean(axis=0)
        total = float(np.einsum("ij,ij->", centred, centred))
        n_flagged = int((z > z_max).sum())
        per_class[str(int(c))] = {
            "rows": len(members),
            "examined": True,
            "flagged": n_flagged,
            "top_direction_variance_share": float(projection @ projection) / total
            if total > 0
            else 0.0,
            "max_z": float(z.max()),
        }
        if n_flagged > class_warn_share * len(members):
            flagged_classes.append(int(c))
    flagged = score > z_max
    share = float(flagged.mean())
    return build_result(
        CHECK,
        n_rows=n,
        flagged=flagged,
        reasons=SPECTRAL_SIGNATURE,
        scores=score,
        row_scores=score,
        above_warn=bool(flagged_classes),
        summary={
            "flagged_share": share,
            "flagged_classes": flagged_classes,
            "z_max": z_max,
            "class_warn_share": class_warn_share,
            "classes": per_class,
        },
        message=(
            f"{int(flagged.sum())} rows ({share:.2%}) stand out on their class's top singular "
            f"vector; classes over {class_warn_share:.0%}: {flagged_classes or 'none'}"
        ),
    )
