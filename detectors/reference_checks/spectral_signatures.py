"""Poisoned rows by their spectral signature in a model's representation space.

Tran, Li and Madry (2018): when some rows of a class carry a backdoor (a trigger and a
flipped label) that the model learned, their representations differ from the clean rows
of the class along one direction, so the top singular vector of the class's centred
representations points along it and the poisoned rows project far out on it. The paper
scores each row by its squared projection and removes the top 1.5 x epsilon of each class.

That works when the poisons' offset outweighs the clean rows' own largest variance. In a
small model's embedding it often does not: the clean class varies more along its first
principal direction than the poisons stand apart. Hayase et al. (2021, SPECTRE) fix this
by whitening each class with a robust covariance first (one the poisons did not help
estimate), after which clean variation is the same in every direction and the poisons'
offset is the largest; that is the default here (`whiten=True`; `whiten=False` is Tran et
al.'s method as published). Projections are scaled to robust z-scores within their class,
so one threshold serves every class. The representations must come from a model trained
on the rows being checked: a model that never saw the backdoor has no signature.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray
from detectors.reference_checks.findings import SPECTRAL_SIGNATURE, CheckResult, build_result
from detectors.reference_checks.robust_statistics import robust_whitened, robust_z

CHECK = "spectral_signatures"
#: Classes with fewer rows are not examined (a top singular vector of a handful of rows
#: says nothing about a subpopulation).
MIN_CLASS_ROWS = 20


def spectral_signatures(
    x: FloatArray,
    groups: NDArray[np.int64],
    *,
    whiten: bool = True,
    n_components: int = 32,
    n_directions: int = 1,
    z_max: float = 60.0,
    class_warn_share: float = 0.04,
    seed: int = 0,
) -> CheckResult:
    """Per class, rows that stand out along the top singular direction(s).

    `groups` is each row's class (given labels, or the model's predicted class). With
    `whiten`, each class is projected on its leading `n_components` principal components
    (at most a fifth of its rows), whitened with an MCD covariance and centred on the MCD
    location; without, it is centred on its mean (Tran et al.). The rows are projected on
    the top `n_directions` right singular vectors; each projection is scaled to a robust z
    and a row's score is the root of the sum of their squares. Rows scoring above `z_max`
    are flagged; status "flagged" when some class has more than `class_warn_share` of its
    rows flagged. The summary lists, per class, its rows, flagged rows and largest score.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.maximum(rng.normal(size=(400, 8)), 0.0)
    >>> x[:, 7] = 0.0
    >>> x[:20, 7] = 5.0                      # a unit that fires for twenty rows only
    >>> result = spectral_signatures(x, np.zeros(400, dtype=np.int64))
    >>> result.rows.tolist() == list(range(20))
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
        rows = (
            robust_whitened(x[members], n_components, rng, seed) if whiten else _centred(x[members])
        )
        _, _, vt = np.linalg.svd(rows, full_matrices=False)
        projections = rows @ vt[: min(n_directions, vt.shape[0])].T
        z = np.sqrt(sum(robust_z(projections[:, j]) ** 2 for j in range(projections.shape[1])))
        score[members] = z
        n_flagged = int((z > z_max).sum())
        per_class[str(int(c))] = {
            "rows": len(members),
            "examined": True,
            "flagged": n_flagged,
            "max_score": float(z.max()),
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
            "whiten": whiten,
            "n_directions": n_directions,
            "z_max": z_max,
            "class_warn_share": class_warn_share,
            "classes": per_class,
        },
        message=(
            f"{int(flagged.sum())} rows ({share:.2%}) stand out on their class's top singular "
            f"direction; classes over {class_warn_share:.0%}: {flagged_classes or 'none'}"
        ),
    )


def _centred(rows: FloatArray) -> FloatArray:
    out: FloatArray = rows - rows.mean(axis=0)
    return out
