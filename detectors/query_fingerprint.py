"""Per-query fingerprints for stateful attack detection: exact digest, content hashes, sketch.

A query-based black-box attack sends long runs of near-copies of one input; a benign client
sends different inputs. Three views of a query, computed for every row, let the guard tell
those apart cheaply:

- an exact digest (keyed SHA-256 of the float32 bytes), so exact repeats (client retries, caches)
  are recognised and kept apart from near-copies;
- content-hash bins after Blacklight (Li et al. 2022): the row is quantised, every window of
  `window` consecutive values is hashed, and a one-permutation MinHash (Li, Owen and Zhang
  2012) keeps the smallest window hash in each of `n_bins` hash-range bins. Two rows share a
  bin value with probability close to the Jaccard similarity of their window sets, so a
  small perturbation that leaves most windows intact keeps most bins, while two different
  inputs share few. Blacklight keeps the top-N window hashes as a set; bins compare
  position by position, so one query is matched against a whole history in one vectorised
  equality;
- a Gaussian random projection (Johnson-Lindenstrauss) of the row scaled to [0, 1], whose
  Euclidean distances approximate those of the rows: the space for radius matches and for
  the extraction test's minimum distances.

Windows slide over the flattened row, so window hashes ignore where a window sits: content
that moves keeps its hashes. Polynomial window hashes come from one prefix sum (a random
odd base, arithmetic modulo 2^64); bins and values are taken from their high bits.

References
----------
Li, H., Shan, S., Wenger, E., Zhang, J., Zheng, H. and Zhao, B. Y. (2022). Blacklight:
Scalable defense for neural networks against query-based black-box attacks. USENIX Security.
Li, P., Owen, A. B. and Zhang, C.-H. (2012). One permutation hashing. NeurIPS.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import (
    as_matrix,
    check_positive_int,
    entropy_from_seed,
)

#: Value of a MinHash bin no window fell into (never counted as shared).
EMPTY_BIN = np.uint32(0xFFFFFFFF)
_MASK64 = (1 << 64) - 1
#: OpenBLAS runs a product on one thread while m n k stays below this (4 x 65,536).
_BLAS_ONE_THREAD = 262_144
_NO_WINDOW = np.uint64(_MASK64)


class Fingerprints(NamedTuple):
    """Fingerprints of n query rows (rows with NaN/Inf are left out; see `kept`).

    A NamedTuple: built for every request, and cheaper to build than a dataclass.
    """

    digests: NDArray[np.uint64]
    """(n,) exact digests: equal exactly when the float32 rows are byte-identical."""
    bins: NDArray[np.uint32]
    """(n, n_bins) content MinHash bins (`EMPTY_BIN` where no window fell)."""
    sketches: NDArray[np.float32]
    """(n, projection_dim) random projections of the rows scaled to [0, 1]."""
    kept: NDArray[np.bool_]
    """Mask over the input rows: True for the rows fingerprinted (finite values)."""

    @property
    def n(self) -> int:
        """Rows fingerprinted."""
        return int(self.digests.shape[0])


class QueryFingerprinter:
    """Computes `Fingerprints` for query rows: what a query guard stores and compares.

    Parameters
    ----------
    n_features
        Values per query row (a flattened input tensor).
    value_range
        (low, high) of the input values; quantisation and the projection scale by it.
        Values outside are clipped for the content hashes only.
    levels
        Quantisation levels for the content hashes (Blacklight: step 50 on 0-255, about 5).
    window
        Values per hashed window (capped at `n_features`).
    n_bins
        MinHash bins, a power of two from 4 to 256.
    projection_dim
        Columns of the random projection.
    seed
        Seeds the hash base and the projection (the same seed gives the same fingerprints,
        so a saved history stays comparable after a restart).

    Memory: O(n_features (projection_dim + 2)). Cost per row: one SHA-256 of the row, one
    (n_features x projection_dim) product and, with content bins, about twenty numpy
    operations on the n_features - window + 1 window hashes.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fp = QueryFingerprinter(64, value_range=(0.0, 1.0), window=8, n_bins=16, seed=0)
    >>> x = rng.uniform(size=64)
    >>> near = x.copy(); near[:3] += 0.01
    >>> other = rng.uniform(size=64)
    >>> f = fp.fingerprint(np.stack([x, near, other, x]))
    >>> bool(f.digests[0] == f.digests[3]), bool(f.digests[0] == f.digests[1])
    (True, False)
    >>> int(shared_bins(f.bins[1:3], f.bins[0]).tolist()[0]) >= 12
    True
    >>> int(shared_bins(f.bins[2:3], f.bins[0])[0]) <= 2
    True
    """

    def __init__(
        self,
        n_features: int,
        value_range: tuple[float, float] = (0.0, 1.0),
        levels: int = 5,
        window: int = 20,
        n_bins: int = 32,
        projection_dim: int = 32,
        seed: int | None = None,
    ) -> None:
        self.n_features = check_positive_int("n_features", n_features)
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            raise ValueError(f"value_range must be (low, high), got {value_range!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(
                f"value_range must be finite (low, high) with low < high, got {value_range!r}"
            )
        self.value_range = (lo, hi)
        self.levels = check_positive_int("levels", levels, minimum=2)
        self.window = check_positive_int("window", window)
        self.n_bins = check_positive_int("n_bins", n_bins, minimum=4)
        if self.n_bins & (self.n_bins - 1) or self.n_bins > 256:
            raise ValueError(f"n_bins must be a power of two from 4 to 256, got {n_bins!r}")
        self.projection_dim = check_positive_int("projection_dim", projection_dim)
        self.seed = seed
        entropy = entropy_from_seed(seed)
        rng = np.random.default_rng([entropy, 1])
        self._span = min(self.window, self.n_features)
        base = int(rng.integers(1, 2**62)) * 2 + 1  # odd: invertible modulo 2^64
        inverse = pow(base, -1, 1 << 64)
        powers = np.empty(self.n_features + 1, dtype=np.uint64)
        inverses = np.empty(self.n_features + 1, dtype=np.uint64)
        p, q = 1, 1
        for i in range(self.n_features + 1):
            powers[i], inverses[i] = p, q
            p, q = (p * base) & _MASK64, (q * inverse) & _MASK64
        self._powers = powers[: self.n_features]
        self._inverses = inverses[: self.n_features - self._span + 1]
        self._bin_shift = np.uint64(64 - (self.n_bins.bit_length() - 1))
        self._value_shift = np.uint64(max(int(self._bin_shift) - 32, 0))
        scale = 1.0 / (hi - lo)
        projection = rng.normal(size=(self.n_features, self.projection_dim))
        # Scaling the rows to [0, 1] is folded into the matrix; the offset into a bias.
        self._projection = (projection * (scale / np.sqrt(self.projection_dim))).astype(np.float32)
        self._projection_bias = (-lo * self._projection.sum(axis=0)).astype(np.float32)
        self._quant_scale = self.levels * scale
        width = self.n_features * self.projection_dim
        self._rows_per_product = max(1, (_BLAS_ONE_THREAD - 1) // width)
        # Keyed (a secret prefix), so a client cannot craft a near-copy that passes for an
        # exact repeat; SHA-256 because CPUs accelerate it (about 2x BLAKE2b here).
        self._digest_state = hashlib.sha256(rng.bytes(32))

    def __repr__(self) -> str:
        return (
            f"QueryFingerprinter(n_features={self.n_features}, value_range={self.value_range}, "
            f"levels={self.levels}, window={self.window}, n_bins={self.n_bins}, "
            f"projection_dim={self.projection_dim}, seed={self.seed!r})"
        )

    def fingerprint(self, rows: ArrayLike, content: bool = True) -> Fingerprints:
        """Fingerprints of (n, n_features) rows (or one 1-D row); NaN/Inf rows are left out.

        With `content=False` the content bins are skipped (an (n, 0) array): they cost most
        of the time and only the cross-client index needs them.
        """
        arr = self._as_rows(rows)
        finite = np.isfinite(arr)
        if np.count_nonzero(finite) == finite.size:
            kept: NDArray[np.bool_] = np.full(arr.shape[0], True)
        else:
            kept = np.asarray(finite.all(axis=1))
            arr = arr[kept]
        arr = np.ascontiguousarray(arr)
        keyed = self._digest_state
        digests = np.empty(arr.shape[0], dtype=np.uint64)
        for i, row in enumerate(arr):
            h = keyed.copy()
            h.update(row)
            digests[i] = int.from_bytes(h.digest()[:8], "little")
        sketches = self._project(arr)
        bins = self._content_bins(arr) if content else np.zeros((arr.shape[0], 0), np.uint32)
        return Fingerprints(digests, bins, sketches, kept)

    def _project(self, arr: NDArray[np.float32]) -> NDArray[np.float32]:
        # A few rows per product: OpenBLAS runs larger products on several threads, which
        # then spin-wait for more work and burn cores the relay needs (measured: twice the
        # CPU time per query). Inputs so wide that one row crosses the limit still thread.
        n, step = arr.shape[0], self._rows_per_product
        if n <= step:
            out: NDArray[np.float32] = arr @ self._projection
        else:
            out = np.empty((n, self.projection_dim), dtype=np.float32)
            for start in range(0, n, step):
                stop = start + step
                np.matmul(arr[start:stop], self._projection, out=out[start:stop])
        out += self._projection_bias
        return out

    def _as_rows(self, rows: ArrayLike) -> NDArray[np.float32]:
        d = self.n_features
        if isinstance(rows, np.ndarray) and rows.dtype.kind in "fiu":
            # the common case, a numeric array of the right width: no float64 detour
            if rows.ndim == 2 and rows.shape[1] == d and rows.shape[0] > 0:
                return rows.astype(np.float32, copy=False)
            if rows.ndim == 1 and rows.shape[0] == d:
                return rows.astype(np.float32, copy=False).reshape(1, d)
        return as_matrix(rows, d, what="query rows").astype(np.float32)

    def _content_bins(self, arr: NDArray[np.float32]) -> NDArray[np.uint32]:
        n = arr.shape[0]
        if n == 0:
            return np.full((0, self.n_bins), EMPTY_BIN, dtype=np.uint32)
        lo = self.value_range[0]
        level = np.floor((arr - lo) * self._quant_scale)
        np.clip(level, 0, self.levels - 1, out=level)
        # Polynomial hash of every window from one prefix sum: sum_j (q[i+j] + 1) B^(i+j),
        # then times B^-i, so a window's hash depends on its content only.
        terms = (level.astype(np.uint64) + np.uint64(1)) * self._powers
        prefix = np.zeros((n, self.n_features + 1), dtype=np.uint64)
        np.cumsum(terms, axis=1, out=prefix[:, 1:])
        # Every value is multiplied by a random 64-bit power, so the high bits (bin, then
        # value) depend on the whole window; they are what the bins use.
        h = (prefix[:, self._span :] - prefix[:, : -self._span]) * self._inverses
        slot = (h >> self._bin_shift).astype(np.intp)
        if n > 1:
            slot += (np.arange(n, dtype=np.intp) * self.n_bins)[:, None]
        lowest = np.full(n * self.n_bins, _NO_WINDOW, dtype=np.uint64)
        np.minimum.at(lowest, slot.ravel(), h.ravel())
        values = (lowest >> self._value_shift).astype(np.uint32)
        values[values == EMPTY_BIN] -= np.uint32(1)  # keep the sentinel unambiguous
        values[lowest == _NO_WINDOW] = EMPTY_BIN
        out = values.reshape(n, self.n_bins)
        return out


def shared_bins(history: NDArray[np.uint32], bins: NDArray[np.uint32]) -> NDArray[np.int64]:
    """How many non-empty bins each history row (m, n_bins) shares with `bins` (n_bins,)."""
    same = (history == bins) & (bins != EMPTY_BIN)
    return np.asarray(same.sum(axis=-1), dtype=np.int64)
