"""Two-sample Kolmogorov-Smirnov statistics per column and their null p-values.

The statistic is kept as an integer `h = D * lcm(n1, n2)` so ties and rounding never
disturb it. P-values follow scipy.stats.ks_2samp's `method`: "auto" (its default) takes the
exact two-sided distribution when both samples have at most 10 000 rows, otherwise the
asymptotic one (`kstwo.sf(D, round(n1 n2 / (n1 + n2)))`); "exact" always the exact one
(unless lcm(n1, n2) does not fit scipy's int32 lattice, where scipy too falls back to the
asymptotic one); "asymp" always the asymptotic one.

The exact distribution is the probability that a uniformly random lattice path from (0, 0)
to (n1, n2) leaves the band |x/n1 - y/n2| < D. It is computed with the recursion for the
"outside" probability Q(x, y) = (x Q(x-1, y) + y Q(x, y-1)) / (x + y), Q = 1 outside the
band, which never overflows (Viehmann 2021), walking anti-diagonals so that many values of
D are evaluated at once with numpy.

References
----------
Hodges, J. L. (1958). The significance probability of the Smirnov two-sample test.
Arkiv för Matematik 3, 469-486.
Viehmann, T. (2021). Numerically more stable computation of the p-values for the
two-sample Kolmogorov-Smirnov test. arXiv:2102.08037.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from detectors.base import FloatArray

IntArray = NDArray[np.int64]

#: Largest sample size for which the exact distribution is used (scipy's "auto" rule).
MAX_EXACT_N = 10_000
#: P-value methods, as scipy.stats.ks_2samp names them.
METHODS = ("auto", "exact", "asymp")
_INT32_MAX = 2**31 - 1


def uses_exact(method: str, n1: int, n2: int) -> bool:
    """Whether scipy.stats.ks_2samp(method=`method`) takes the exact distribution for n1, n2."""
    if method == "asymp":
        return False
    if method == "auto":
        return max(n1, n2) <= MAX_EXACT_N
    g = math.gcd(n1, n2)
    # scipy's own guard: an lcm beyond int32 switches "exact" to the asymptotic formula
    return (n1 // g) < _INT32_MAX / (n2 // g)


def ks_statistics(reference_sorted: FloatArray, window: FloatArray) -> IntArray:
    """Per-column KS statistics h = D * lcm(n1, n2); `reference_sorted` is (n1, d), sorted.

    Detectors keep the transposed layout and call `ks_statistics_columns` directly.
    """
    return ks_statistics_columns(np.ascontiguousarray(reference_sorted.T), window)


def ks_statistics_columns(reference_sorted_t: FloatArray, window: FloatArray) -> IntArray:
    """Per-column KS statistics as integers h = D * lcm(n1, n2).

    `reference_sorted_t` is (d, n1), each row a sorted reference column (rows are
    contiguous, which keeps the binary searches fast); `window` is (n2, d).
    Only the window's points need checking: between two of them the window ECDF is flat
    and the reference ECDF is monotone, so the largest gap sits at a window point or just
    left of one.
    """
    d, n1 = reference_sorted_t.shape
    n2 = window.shape[0]
    g = math.gcd(n1, n2)
    unit_ref = n2 // g  # lcm / n1
    unit_win = n1 // g  # lcm / n2
    ws = np.ascontiguousarray(window.T)  # (d, n2), sorted in place: one copy, not two
    ws.sort(axis=1)
    ref_left = np.empty((d, n2), dtype=np.intp)  # reference values < each window value
    for j in range(d):
        ref_left[j] = reference_sorted_t[j].searchsorted(ws[j], side="left")
    # A window value equal to a reference value needs the "right" count too. The first
    # reference value >= it sits at ref_left (clipped to the row: past its end means none).
    first_not_below = np.minimum(ref_left, n1 - 1)
    first_not_below += np.arange(0, d * n1, n1)[:, None]
    tied = np.flatnonzero((reference_sorted_t.ravel().take(first_not_below) == ws).any(axis=1))
    window_ties = n2 > 1 and bool((ws[:, 1:] == ws[:, :-1]).any())
    if not tied.size and not window_ties:
        # The usual case (continuous values): with e = ref_left * unit_ref - i * unit_win at
        # the i-th window point, the gap is |e| just left of it and |e - unit_win| at it, so
        # the largest is max(max e, unit_win - min e).
        e = ref_left * unit_ref
        e -= np.arange(0, n2 * unit_win, unit_win)
        h: IntArray = np.maximum(e.max(axis=1), unit_win - e.min(axis=1)).astype(np.int64)
        return h
    pos = np.arange(n2, dtype=np.intp)[None, :]
    if window_ties:
        is_last = np.ones(ws.shape, dtype=bool)
        is_last[:, :-1] = ws[:, 1:] != ws[:, :-1]
        is_first = np.ones(ws.shape, dtype=bool)
        is_first[:, 1:] = ws[:, 1:] != ws[:, :-1]
        # count of window points <= / < each sorted window point
        win_right = np.minimum.accumulate(np.where(is_last, pos + 1, n2)[:, ::-1], axis=1)[:, ::-1]
        win_left = np.maximum.accumulate(np.where(is_first, pos, 0), axis=1)
    else:
        win_right = np.broadcast_to(pos + 1, ws.shape)
        win_left = np.broadcast_to(pos, ws.shape)
    ref_right = ref_left
    if tied.size:
        ref_right = ref_left.copy()
        for j in tied.tolist():
            ref_right[j] = reference_sorted_t[j].searchsorted(ws[j], side="right")
    gap_at = np.abs(ref_right * unit_ref - win_right * unit_win).max(axis=1)
    gap_before = np.abs(ref_left * unit_ref - win_left * unit_win).max(axis=1)
    h = np.maximum(gap_at, gap_before).astype(np.int64)
    return h


def ks_exact_sf(h: IntArray, n1: int, n2: int) -> FloatArray:
    """Exact P(D >= h / lcm(n1, n2)) under the null, for every entry of `h`.

    Cost O((n1 + n2) * min(n1, n2) * len(unique(h))) floating-point operations.
    """
    h = np.asarray(h, dtype=np.int64)
    out = np.ones(h.shape, dtype=np.float64)
    todo = np.unique(h[h > 0])
    if todo.size == 0:
        return out
    m, n = max(n1, n2), min(n1, n2)
    g = math.gcd(m, n)
    hg = (todo * g).astype(np.float64)[None, :]
    hg_max = float(todo.max() * g)
    y_all = np.arange(n + 1, dtype=np.float64)
    # Only cells within the widest band can differ from 1; the band's centre moves by
    # n / (m + n) < 1 per diagonal, so its edges never jump by more than one cell.
    q = np.ones((n + 1, todo.size))
    q[0] = 0.0
    for s in range(1, m + n + 1):
        lo = max(int(math.floor((n * s - hg_max) / (m + n))), 0)
        hi = min(int(math.ceil((n * s + hg_max) / (m + n))), n)
        y = y_all[lo : hi + 1]
        xc = np.maximum(s - y, 0.0)[:, None]
        denom = np.maximum(xc + y[:, None], 1.0)
        below = q[lo - 1 : hi] if lo > 0 else np.vstack([np.zeros((1, todo.size)), q[0:hi]])
        new = (xc * q[lo : hi + 1] + y[:, None] * below) / denom
        new[np.abs(n * s - (m + n) * y)[:, None] >= hg] = 1.0
        q[lo : hi + 1] = new
        if lo > 0:
            q[lo - 1] = 1.0
    values = np.clip(q[n], 0.0, 1.0)
    lookup = dict(zip(todo.tolist(), values.tolist(), strict=True))
    for i, hv in np.ndenumerate(h):
        if hv > 0:
            out[i] = lookup[int(hv)]
    return out


def ks_asymptotic_sf(h: IntArray, n1: int, n2: int) -> FloatArray:
    """scipy's large-sample p-value: kstwo.sf(D, round(n1 n2 / (n1 + n2)))."""
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    en = float(n1) * float(n2) / (n1 + n2)
    d = np.asarray(h, dtype=np.float64) / lcm
    return np.asarray(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0), dtype=np.float64)


#: Below this p-value the asymptotic formula is used in exact mode too: both are then
#: within 1e-9 of 0, far inside the 1e-6 agreement with scipy this module promises.
TAIL_P = 1e-9
#: Largest DP work (about 2 g cap^2 cell updates) spent tabulating every p-value at once.
_TABULATE_WORK = 2e8
#: Most memoised p-values kept when the distribution is not tabulated.
_MAX_MEMO = 65_536


class KSPValueTable:
    """P-values for fixed sample sizes and `method`, memoised: p depends only on the integer h.

    When the exact distribution is cheap enough to tabulate (about 1 s for 2000 vs 500
    rows), every p-value above `TAIL_P` is computed in one pass at the first call; otherwise
    each new h costs one DP pass. Statistics whose asymptotic p-value is below `TAIL_P`
    take the asymptotic value. The asymptotic distribution (scipy's kstwo, about 0.3 ms per
    value for n near 400) is memoised per h as well.
    """

    def __init__(self, n1: int, n2: int, method: str = "auto") -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        self.n1 = n1
        self.n2 = n2
        self.method = method
        self._exact = uses_exact(method, n1, n2)
        g = math.gcd(n1, n2)
        self._lcm = (n1 // g) * n2
        self._known: dict[int, float] = {0: 1.0}
        self._table: FloatArray | None = None
        self._tabulate = False
        self._cap = self._lcm + 1
        if not self._exact:
            return
        self._cap = self._tail_start()
        if self._exact and self._cap <= self._lcm:
            # exact p decreases in h: if it is already < 1e-6 at the cap, every tail value
            # is within 1e-6 of the asymptotic one; tiny samples fail this and stay exact
            cap_p = ks_exact_sf(np.array([self._cap], dtype=np.int64), n1, n2)[0]
            if cap_p >= 1e-6:
                self._cap = self._lcm + 1
        self._tabulate = 2.0 * g * float(self._cap) ** 2 <= _TABULATE_WORK

    def _tail_start(self) -> int:
        """Smallest h whose asymptotic p-value is below TAIL_P (lcm + 1 if none)."""
        lo, hi = 1, self._lcm + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if ks_asymptotic_sf(np.array([mid]), self.n1, self.n2)[0] < TAIL_P:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def __call__(self, h: IntArray) -> FloatArray:
        """P-values for the statistics `h` (as scipy.stats.ks_2samp computes them, to 1e-6)."""
        h = np.asarray(h, dtype=np.int64)
        if not self._exact:
            return self._memoised(h, h > 0, ks_asymptotic_sf)
        out = np.ones(h.shape)
        tail = h >= self._cap
        if tail.any():
            out[tail] = ks_asymptotic_sf(h[tail], self.n1, self.n2)
        body = (h > 0) & ~tail
        if not body.any():
            return out
        if self._tabulate:
            if self._table is None:
                self._table = np.concatenate(
                    [[1.0], ks_exact_sf(np.arange(1, self._cap, dtype=np.int64), self.n1, self.n2)]
                )
            out[body] = self._table[h[body]]
            return out
        memo = self._memoised(h, body, ks_exact_sf)
        out[body] = memo[body]
        return out

    def _memoised(
        self, h: IntArray, which: NDArray[np.bool_], sf: Callable[[IntArray, int, int], FloatArray]
    ) -> FloatArray:
        """`sf` at h where `which` holds (1.0 elsewhere), each distinct h computed once."""
        out = np.ones(h.shape)
        if not which.any():
            return out
        missing = [v for v in np.unique(h[which]).tolist() if v not in self._known]
        if len(self._known) + len(missing) > _MAX_MEMO:
            self._known = {0: 1.0}  # a cache, not state: keep its memory bounded
        if missing:
            values = sf(np.array(missing, dtype=np.int64), self.n1, self.n2)
            self._known.update(zip(missing, values.tolist(), strict=True))
        out[which] = [self._known[v] for v in h[which].tolist()]
        return out
