"""Poisoned classes by activation clustering: a class that splits into a big and a small part.

Chen et al. (2018): the penultimate-layer activations of a class that holds backdoored
rows form two clusters, the clean rows and the poisoned ones (which the model files under
the class only because of the trigger). Reduce each class to a few dimensions, split it
with 2-means, and call the class poisoned when the smaller cluster is small and the split
is clean (high silhouette). The paper reduces with ICA to 10 dimensions; here PCA to 10
(deterministic, no extra dependency), and the silhouette is the simplified one (distances
to the two centroids instead of mean distances to all rows: O(n) instead of O(n^2)).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray
from detectors.reference_checks.findings import ACTIVATION_CLUSTER, CheckResult, build_result
from detectors.reference_checks.neighbours import fit_projection
from detectors.reference_checks.robust_statistics import robust_whitened

CHECK = "activation_clustering"
MIN_CLASS_ROWS = 20


def activation_clustering(
    x: FloatArray,
    groups: NDArray[np.int64],
    *,
    n_components: int = 10,
    whiten: bool = True,
    max_relative_size: float = 0.35,
    min_silhouette: float = 0.8,
    min_cluster_rows: int = 3,
    seed: int = 0,
) -> CheckResult:
    """Per class, 2-means in a PCA projection; flags the small cluster of a clean split.

    The class is projected on its leading `n_components` principal components (Chen et
    al. reduce to 10 with ICA), or with `whiten` also whitened by a robust covariance
    (`robust_whitened`).

    A class is flagged when its smaller cluster holds at most `max_relative_size` of its
    rows (and at least `min_cluster_rows`) and the mean simplified silhouette is at least
    `min_silhouette`; the rows of that cluster are flagged. A row in the smaller cluster of
    its class scores the class's mean silhouette (0 when that cluster is too large to be a
    poisoned one) plus a thousandth of its own simplified silhouette (b - a) / max(a, b),
    which orders rows within a class; the other rows score 0. Status "flagged" when any
    class is.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(300, 6))
    >>> x[:30] += 6.0                         # a tenth of the class sits apart
    >>> result = activation_clustering(x, np.zeros(300, dtype=np.int64))
    >>> result.status, result.rows.tolist() == list(range(30))
    ('flagged', True)
    """
    n = x.shape[0]
    rng = np.random.default_rng([seed, 8])
    score = np.zeros(n)
    flagged = np.zeros(n, dtype=bool)
    per_class: dict[str, object] = {}
    flagged_classes = []
    for c in np.unique(groups):
        members = np.flatnonzero(groups == c)
        if len(members) < MIN_CLASS_ROWS:
            per_class[str(int(c))] = {"rows": len(members), "examined": False}
            continue
        rows = x[members]
        if whiten:
            coords = robust_whitened(rows, n_components, rng, seed)
        else:
            coords = fit_projection(rows, n_components, rng).coordinates(rows)
        assignment, centroids = two_means(coords, rng)
        sizes = np.bincount(assignment, minlength=2)
        small = int(np.argmin(sizes))
        own = np.linalg.norm(coords - centroids[assignment], axis=1)
        other = np.linalg.norm(coords - centroids[1 - assignment], axis=1)
        widest = np.maximum(own, other)
        silhouette = np.where(widest > 0, (other - own) / np.where(widest > 0, widest, 1.0), 0.0)
        in_small = assignment == small
        relative_size = float(sizes[small]) / len(members)
        mean_silhouette = float(silhouette.mean())
        small_enough = relative_size <= max_relative_size and sizes[small] >= min_cluster_rows
        poisoned = small_enough and mean_silhouette >= min_silhouette
        # The evidence is the class's split; the row's own silhouette orders rows within it.
        class_score = mean_silhouette if small_enough else 0.0
        score[members] = np.where(in_small, class_score + 1e-3 * silhouette, 0.0)
        if poisoned:
            flagged[members[in_small]] = True
            flagged_classes.append(int(c))
        per_class[str(int(c))] = {
            "rows": len(members),
            "examined": True,
            "relative_size": relative_size,
            "silhouette": mean_silhouette,
            "poisoned": poisoned,
        }
    share = float(flagged.mean())
    return build_result(
        CHECK,
        n_rows=n,
        flagged=flagged,
        reasons=ACTIVATION_CLUSTER,
        scores=score,
        row_scores=score,
        above_warn=bool(flagged_classes),
        summary={
            "flagged_share": share,
            "flagged_classes": flagged_classes,
            "max_relative_size": max_relative_size,
            "min_silhouette": min_silhouette,
            "whiten": whiten,
            "classes": per_class,
        },
        message=(
            f"classes that split into a small, well-separated cluster: "
            f"{flagged_classes or 'none'} ({int(flagged.sum())} rows, {share:.2%})"
        ),
    )


def two_means(
    x: FloatArray, rng: np.random.Generator, n_init: int = 4, max_iter: int = 100
) -> tuple[NDArray[np.int64], FloatArray]:
    """k-means with k = 2 (k-means++ seeding, Lloyd iterations), best of `n_init` runs.

    Returns each row's cluster (0 or 1) and the two centroids. Ties in the distance go to
    cluster 0; an emptied cluster keeps its previous centroid.
    """
    best: tuple[float, NDArray[np.int64], FloatArray] | None = None
    sq = np.einsum("ij,ij->i", x, x)
    for _ in range(n_init):
        first = x[rng.integers(x.shape[0])]
        d2 = np.maximum(sq - 2.0 * (x @ first) + first @ first, 0.0)
        total = d2.sum()
        second = x[rng.choice(x.shape[0], p=d2 / total)] if total > 0 else first
        centroids = np.stack([first, second])
        assignment = np.zeros(x.shape[0], dtype=np.int64)
        for step in range(max_iter):
            dist = (
                sq[:, None] - 2.0 * (x @ centroids.T) + np.einsum("ij,ij->i", centroids, centroids)
            )
            new = np.argmin(dist, axis=1).astype(np.int64)
            if step > 0 and np.array_equal(new, assignment):
                break
            assignment = new
            for j in (0, 1):
                if np.any(assignment == j):
                    centroids[j] = x[assignment == j].mean(axis=0)
        inertia = float(((x - centroids[assignment]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, assignment.copy(), centroids.copy())
    assert best is not None
    return best[1], best[2]
