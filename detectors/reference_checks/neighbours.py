"""The geometry the reference checks share: row hashing, projections and neighbour searches.

Everything here is sized for references of 100,000 rows and hundreds of dimensions on one
core: exact duplicates by a 64-bit hash of each row's bytes (verified byte by byte), near
pairs by random-projection locality-sensitive hashing (Datar et al. 2004) verified with
exact distances, and k-th neighbour distances in a PCA projection against a bounded bank
of rows, by blocked matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detectors.base import FloatArray

IntArray = NDArray[np.int64]

#: Query rows per block of a distance matrix (bounds memory to block x bank floats).
_BLOCK_ROWS = 1024
#: Buckets up to this size are expanded pair by pair; larger ones by a blocked Gram matrix.
_SMALL_BUCKET = 64
#: Candidate pairs verified at once (bounds the (pairs, d) difference array).
_VERIFY_CHUNK = 8192


# --- exact duplicates -------------------------------------------------------------------------


def row_hashes(x: FloatArray, seed: int) -> NDArray[np.uint64]:
    """A 64-bit hash of each row's float64 bytes (-0.0 hashed as 0.0).

    Multiply-and-add with random odd 64-bit multipliers (wrapping); equal rows always get
    equal hashes, different rows collide with probability about 2^-64 per pair, and callers
    verify bytes anyway.
    """
    words = np.ascontiguousarray(x + 0.0, dtype=np.float64).view(np.uint64)
    rng = np.random.default_rng([seed, 1])
    odd = rng.integers(0, 2**63, size=words.shape[1], dtype=np.uint64)
    multipliers = np.asarray(odd * np.uint64(2) + np.uint64(1), dtype=np.uint64)
    hashes = np.zeros(words.shape[0], dtype=np.uint64)
    # Column by column keeps the temporaries at one column (n values), not the whole matrix.
    for j in range(words.shape[1]):
        hashes += words[:, j] * multipliers[j : j + 1]
        hashes ^= hashes >> np.uint64(29)
    return hashes


def exact_representatives(x: FloatArray, seed: int = 0) -> IntArray:
    """For each row, the smallest index of a row with exactly the same values (itself if none)."""
    n = x.shape[0]
    hashes = row_hashes(x, seed)
    order = np.argsort(hashes, kind="stable")  # stable: ascending index within a hash run
    sorted_hashes = hashes[order]
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rep = np.arange(n, dtype=np.int64)
    canonical = x + 0.0
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        members = order[start : start + size]
        # Verify: a hash collision between different rows must not merge them.
        block = canonical[members]
        _, first, inverse = np.unique(block, axis=0, return_index=True, return_inverse=True)
        rep[members] = members[first[inverse.ravel()]]
    return rep


def exact_matches(x: FloatArray, other: FloatArray, seed: int = 0) -> IntArray:
    """For each row of `x`, the smallest index of an identical row of `other`, else -1."""
    both = np.concatenate([x, other], axis=0)
    n = x.shape[0]
    rep = exact_representatives(both, seed)
    # Per group (named by its representative), the smallest index among its `other` rows.
    none = np.iinfo(np.int64).max
    first_other = np.full(both.shape[0], none, dtype=np.int64)
    other_idx = np.arange(n, both.shape[0], dtype=np.int64)
    np.minimum.at(first_other, rep[other_idx], other_idx - n)
    found = first_other[rep[:n]]
    return np.where(found == none, -1, found).astype(np.int64)


# --- projections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """A PCA basis, and a random sketch of what the basis leaves out.

    `coordinates` are the leading principal components; `sketch` appends a Gaussian random
    projection (Johnson-Lindenstrauss) of the residual, so that distances between rows
    that leave the subspace in different directions (noise, another data set) stay about
    as large as they are, while a kNN search works on q + s columns instead of d.
    """

    mean: FloatArray
    components: FloatArray  # (d, q), orthonormal columns
    residual_directions: FloatArray  # (d, s), N(0, 1/s) entries

    @property
    def n_components(self) -> int:
        return int(self.components.shape[1])

    def coordinates(self, x: FloatArray) -> FloatArray:
        """(n, q) coordinates in the basis."""
        out: FloatArray = (x - self.mean) @ self.components
        return out

    def sketch(self, x: FloatArray) -> NDArray[np.float32]:
        """(n, q + s) float32: the coordinates, then the sketch of the residual."""
        q = self.n_components
        s = self.residual_directions.shape[1]
        # residual @ G = xc @ G - coords @ (components^T G): no (n, d) residual needed.
        through_basis = self.components.T @ self.residual_directions
        out = np.empty((x.shape[0], q + s), dtype=np.float32)
        for start in range(0, x.shape[0], 8192):
            xc = x[start : start + 8192] - self.mean
            coords = xc @ self.components
            out[start : start + 8192, :q] = coords
            out[start : start + 8192, q:] = xc @ self.residual_directions - coords @ through_basis
        return out


def fit_projection(
    x: FloatArray,
    n_components: int,
    rng: np.random.Generator,
    max_rows: int = 20_000,
    sketch_columns: int = 32,
) -> Projection:
    """PCA of (a sample of at most `max_rows` of) `x` by a randomized range finder.

    Halko, Martinsson and Tropp (2011), Algorithm 4.4 with two power iterations: O(n d q)
    instead of the O(d^3) of a full eigendecomposition, so wide rows stay cheap. When the
    basis does not span every column, `sketch_columns` random directions sketch the rest.
    """
    sample = x if x.shape[0] <= max_rows else x[rng.choice(x.shape[0], max_rows, replace=False)]
    mean = sample.mean(axis=0)
    xc = sample - mean
    d = xc.shape[1]
    q = min(n_components, xc.shape[0], d)
    if q == d:
        # As many components as columns: the basis is a rotation, take it exactly.
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        components = np.ascontiguousarray(vt[:q].T)
        return Projection(mean, components, np.zeros((d, 0)))
    width = min(q + 10, d)
    basis = xc @ rng.normal(size=(d, width))
    for _ in range(2):
        basis, _ = np.linalg.qr(basis)
        basis, _ = np.linalg.qr(xc.T @ basis)
        basis = xc @ basis
    basis, _ = np.linalg.qr(basis)
    _, _, vt = np.linalg.svd(basis.T @ xc, full_matrices=False)
    components = np.ascontiguousarray(vt[:q].T)
    s = min(sketch_columns, d - q)
    directions = rng.normal(scale=1.0 / np.sqrt(max(s, 1)), size=(d, s))
    return Projection(mean, components, directions)


# --- neighbour distances ----------------------------------------------------------------------


def kth_neighbour_distance(
    query: NDArray[np.float32],
    bank: NDArray[np.float32],
    k: int,
    query_in_bank: IntArray | None = None,
) -> FloatArray:
    """Distance from each query row to its k-th nearest bank row (Euclidean, brute force).

    `query_in_bank[i]` is the bank position of query row i when it is in the bank (its
    distance to itself is then ignored), else -1.
    """
    k = min(k, bank.shape[0] - (1 if query_in_bank is not None else 0))
    if k < 1:
        raise ValueError(f"the bank has {bank.shape[0]} rows: too few for a k-th neighbour")
    bank_sq = np.einsum("ij,ij->i", bank, bank)
    out = np.empty(query.shape[0])
    for start in range(0, query.shape[0], _BLOCK_ROWS):
        block = query[start : start + _BLOCK_ROWS]
        d2 = block @ bank.T
        d2 *= -2.0
        d2 += bank_sq
        d2 += np.einsum("ij,ij->i", block, block)[:, None]
        if query_in_bank is not None:
            own = query_in_bank[start : start + _BLOCK_ROWS]
            rows = np.flatnonzero(own >= 0)
            d2[rows, own[rows]] = np.inf
        kth = np.partition(d2, k - 1, axis=1)[:, k - 1]
        out[start : start + _BLOCK_ROWS] = np.sqrt(np.maximum(kth, 0.0))
    return out


def nearest_neighbour_distances(
    x: FloatArray, rows: IntArray, exclude_equal: bool = True
) -> FloatArray:
    """Exact distance from each of `rows` to its nearest other row of `x`.

    The candidate is found with a float32 matrix product and its distance recomputed in
    float64, so tiny distances are exact. With `exclude_equal`, identical rows do not count
    as neighbours (callers pass rows without exact duplicates).
    """
    centre = x.mean(axis=0)
    data = np.asarray(x - centre, dtype=np.float32)
    data_sq = np.einsum("ij,ij->i", data, data)
    out = np.empty(len(rows))
    for start in range(0, len(rows), _BLOCK_ROWS):
        chunk = rows[start : start + _BLOCK_ROWS]
        block = data[chunk]
        d2 = block @ data.T
        d2 *= -2.0
        d2 += data_sq
        d2 += data_sq[chunk][:, None]
        d2[np.arange(len(chunk)), chunk] = np.inf
        nearest = np.argmin(d2, axis=1)
        diff = x[chunk] - x[nearest]
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        if exclude_equal and np.any(dist == 0.0):
            # Only when the caller left duplicates in: fall back to the first positive one.
            for i in np.flatnonzero(dist == 0.0):
                full = np.sqrt(((x - x[chunk[i]]) ** 2).sum(axis=1))
                positive = full[full > 0.0]
                dist[i] = positive.min() if positive.size else 0.0
        out[start : start + len(chunk)] = dist
    return out


# --- near pairs by locality-sensitive hashing ------------------------------------------------


@dataclass(frozen=True)
class NearPairs:
    """Pairs of rows closer than a radius: `left[i]` and `right[i]` at `distance[i]`."""

    left: IntArray
    right: IntArray
    distance: FloatArray

    def __len__(self) -> int:
        return len(self.left)


def near_pairs(
    x: FloatArray,
    radius: float,
    seed: int,
    other: FloatArray | None = None,
    n_tables: int = 16,
    n_hashes: int = 6,
    width_ratio: float = 4.0,
) -> NearPairs:
    """Pairs within `radius` (Euclidean): inside `x`, or between `x` and `other` if given.

    p-stable LSH (Datar, Immorlica, Indyk and Mirrokni 2004): each table concatenates
    `n_hashes` hashes floor((a.x + b) / w) with Gaussian a and bucket width w =
    `width_ratio` x radius; rows sharing a bucket in any of `n_tables` tables are
    candidates, verified with exact float64 distances. One hash keeps a pair at the radius
    together with probability 0.80 (0.90 at half the radius), so a table does with 0.80^6 =
    0.26 (0.53) and at least one of 16 tables with 0.992 (0.99999). Returned pairs are
    exact (no false positives); a pair close to the radius may be missed with the small
    probability above. In cross mode `left` indexes `x` and `right` indexes `other`;
    otherwise left < right.
    """
    empty = NearPairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    if radius <= 0.0:
        return empty
    data = x if other is None else np.concatenate([x, other], axis=0)
    n_x = x.shape[0]
    n = data.shape[0]
    if n < 2:
        return empty
    rng = np.random.default_rng([seed, 2])
    width = width_ratio * radius
    centre = data.mean(axis=0)
    directions = rng.normal(size=(data.shape[1], n_tables * n_hashes)).astype(np.float32)
    offsets = rng.uniform(0.0, width, size=n_tables * n_hashes)
    cells = np.empty((n, n_tables * n_hashes), dtype=np.int64)
    for start in range(0, n, 8192):
        proj = np.asarray(data[start : start + 8192] - centre, dtype=np.float32) @ directions
        cells[start : start + 8192] = np.floor((proj + offsets) / width)
    multipliers = rng.integers(1, 2**62, size=n_hashes, dtype=np.int64) | 1
    codes: list[IntArray] = []
    for t in range(n_tables):
        keys = (cells[:, t * n_hashes : (t + 1) * n_hashes] * multipliers).sum(axis=1)
        codes.append(_bucket_pairs(keys, data, centre, radius, n_x if other is not None else 0))
    if not codes:
        return empty
    pair_codes = np.unique(np.concatenate(codes))
    left, right = np.divmod(pair_codes, n)
    if other is not None:
        keep = (left < n_x) & (right >= n_x)
        left, right = left[keep], right[keep]
    dist = _pair_distances(data, left, right)
    within = dist <= radius
    left, right, dist = left[within], right[within], dist[within]
    if other is not None:
        right = right - n_x
    return NearPairs(left.astype(np.int64), right.astype(np.int64), dist)


def _bucket_pairs(
    keys: IntArray, data: FloatArray, centre: FloatArray, radius: float, n_x: int
) -> IntArray:
    """Candidate pairs (coded left * n + right, left < right) of rows sharing a bucket."""
    n = keys.shape[0]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group_size = np.repeat(sizes, sizes)
    position = np.arange(n) - np.repeat(starts, sizes)
    out: list[IntArray] = []
    small = group_size <= _SMALL_BUCKET
    max_small = int(sizes[sizes <= _SMALL_BUCKET].max(initial=1))
    for offset in range(1, max_small):
        p = np.flatnonzero(small & (position + offset < group_size))
        if p.size == 0:
            break
        a, b = order[p], order[p + offset]
        out.append(np.minimum(a, b) * n + np.maximum(a, b))
    for start, size in zip(
        starts[sizes > _SMALL_BUCKET], sizes[sizes > _SMALL_BUCKET], strict=True
    ):
        members = order[start : start + size]
        out.append(_close_pairs_in_group(members, data, centre, radius, n_x))
    if not out:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(out)


def _close_pairs_in_group(
    members: IntArray, data: FloatArray, centre: FloatArray, radius: float, n_x: int
) -> IntArray:
    """Pairs of a large bucket within (slightly more than) the radius, by a blocked Gram."""
    n = data.shape[0]
    members = np.sort(members)
    rows = np.asarray(data[members] - centre, dtype=np.float64)
    sq = np.einsum("ij,ij->i", rows, rows)
    limit = radius * radius * 1.01 + 1e-9 * float(sq.max(initial=0.0))
    out: list[IntArray] = []
    for start in range(0, len(members), _BLOCK_ROWS):
        block = rows[start : start + _BLOCK_ROWS]
        d2 = sq[start : start + _BLOCK_ROWS, None] + sq[None, :] - 2.0 * (block @ rows.T)
        i, j = np.nonzero(d2 <= limit)
        i = i + start
        keep = i < j
        if n_x:
            keep &= (members[i] < n_x) != (members[j] < n_x)
        out.append(members[i[keep]] * n + members[j[keep]])
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def _pair_distances(data: FloatArray, left: IntArray, right: IntArray) -> FloatArray:
    out = np.empty(len(left))
    for start in range(0, len(left), _VERIFY_CHUNK):
        diff = (
            data[left[start : start + _VERIFY_CHUNK]] - data[right[start : start + _VERIFY_CHUNK]]
        )
        out[start : start + _VERIFY_CHUNK] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out
