"""A global, bounded hash table of recent queries' content fingerprints (Blacklight-style).

Per-client histories miss an attacker who spreads one attack over many identities (Sybil
accounts, rotating addresses). Blacklight keeps one table of fingerprint hashes for all
traffic and looks every query up in it. Here a query's MinHash bins (see
`query_fingerprint`) are cut into bands of `band_size` bins; each band with no empty bin
is one key. Two near-copies share a band with probability about J^band_size for Jaccard
similarity J of their window sets (LSH banding), two unrelated inputs almost never. The
table maps each key to the client serial, exact digest and time of the last query that had
it, so a lookup costs one dict access per band whatever the size of the table. An exact copy
of another client's query (a shared cached input) is not counted: only near-copies are.

Bounded by `max_entries` keys (oldest dropped first) and by `max_age` seconds (older keys
are ignored and dropped as they reach the front).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.base import check_positive_float, check_positive_int
from detectors.query_fingerprint import EMPTY_BIN

_MASK64 = (1 << 64) - 1


class ContentIndex:
    """Which other clients sent a query with the same content-hash band recently.

    Parameters
    ----------
    n_bins
        MinHash bins per fingerprint (a multiple of `band_size`).
    band_size
        Bins per band: larger is stricter (fewer chance matches, fewer near-copy matches).
    max_entries
        Keys kept (each query adds up to n_bins / band_size).
    max_age
        Seconds after which a key no longer matches.
    seed
        Seeds the band-key multipliers.

    Memory: about 200 bytes per key in CPython (dict entry, int key, tuple value).
    Cost: one dict lookup and one insert per band.

    Example
    -------
    >>> import numpy as np
    >>> index = ContentIndex(n_bins=8, band_size=4, max_entries=100, max_age=60.0, seed=0)
    >>> a = np.arange(8, dtype=np.uint32)
    >>> index.match_and_add(a, owner=1, digest=10, now=0.0)
    0
    >>> b = a.copy(); b[0] = 99             # first band differs, second band shared
    >>> index.match_and_add(b, owner=2, digest=20, now=1.0)
    1
    >>> index.match_and_add(b, owner=2, digest=21, now=2.0)  # its own earlier query
    0
    >>> index.match_and_add(b, owner=3, digest=21, now=3.0)  # an exact copy of owner 2's
    0
    >>> index.match_and_add(a, owner=4, digest=40, now=100.0)  # keys older than max_age
    0
    """

    def __init__(
        self,
        n_bins: int,
        band_size: int = 4,
        max_entries: int = 100_000,
        max_age: float = 3600.0,
        seed: int = 0,
    ) -> None:
        self.n_bins = check_positive_int("n_bins", n_bins)
        self.band_size = check_positive_int("band_size", band_size)
        if self.n_bins % self.band_size:
            raise ValueError(f"band_size must divide n_bins={n_bins}, got {band_size!r}")
        self.max_entries = check_positive_int("max_entries", max_entries)
        self.max_age = check_positive_float("max_age", max_age)
        self.n_bands = self.n_bins // self.band_size
        rng = np.random.default_rng([int(seed), 2])
        self._multipliers = (
            rng.integers(0, 2**63, size=self.band_size, dtype=np.uint64) << np.uint64(1)
        ) | np.uint64(1)
        self._band_salt = rng.integers(0, 2**63, size=self.n_bands, dtype=np.uint64)
        # An OrderedDict, not a dict: dropping from the front of a plain dict leaves
        # holes that make every later next(iter(d)) walk past them.
        self._table: OrderedDict[int, tuple[int, int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def clear(self) -> None:
        self._table.clear()

    def keys_of(self, bins: NDArray[np.uint32]) -> list[int]:
        """The band keys of one fingerprint (bands holding an empty bin give none)."""
        bands = bins.reshape(self.n_bands, self.band_size)
        keys = (bands.astype(np.uint64) * self._multipliers).sum(axis=1, dtype=np.uint64)
        keys ^= self._band_salt
        full = (bands != EMPTY_BIN).all(axis=1)
        return [int(k) for k, ok in zip(keys.tolist(), full.tolist(), strict=True) if ok]

    def match_and_add(self, bins: NDArray[np.uint32], owner: int, digest: int, now: float) -> int:
        """Distinct other owners that recently sent a near-copy (a shared band, another
        digest); then records the query under its keys."""
        table = self._table
        horizon = now - self.max_age
        # Drop expired keys from the front (the dict's order is insertion time).
        while table:
            first = next(iter(table.values()))
            if first[2] >= horizon:
                break
            table.popitem(last=False)
        others: set[int] = set()
        mine = (owner, digest, now)
        for key in self.keys_of(bins):
            hit = table.pop(key, None)
            if hit is not None and hit[0] != owner and hit[1] != digest and hit[2] >= horizon:
                others.add(hit[0])
            table[key] = mine
        while len(table) > self.max_entries:
            table.popitem(last=False)
        return len(others)

    # -- checkpoint -------------------------------------------------------------------------

    def state(self) -> dict[str, NDArray[Any]]:
        """Keys, owners, digests and times, oldest first."""
        n = len(self._table)
        values = list(self._table.values())
        return {
            "keys": np.fromiter(self._table.keys(), dtype=np.uint64, count=n),
            "owners": np.fromiter((v[0] for v in values), dtype=np.int64, count=n),
            "digests": np.fromiter((v[1] for v in values), dtype=np.uint64, count=n),
            "times": np.fromiter((v[2] for v in values), dtype=np.float64, count=n),
        }

    def load_state(self, state: dict[str, NDArray[Any]]) -> None:
        """Restores `state()`; raises ValueError when the arrays do not line up."""
        arrays = [np.asarray(state[k]) for k in ("keys", "owners", "digests", "times")]
        n = arrays[0].shape[0] if arrays[0].ndim == 1 else -1
        if n < 0 or any(a.shape != (n,) or a.dtype.kind not in "iuf" for a in arrays):
            raise ValueError(
                "content index state: keys, owners, digests and times must be 1-D numbers "
                "of one length"
            )
        if n > self.max_entries:
            raise ValueError(f"content index state holds {n} keys > max_entries={self.max_entries}")
        keys, owners, digests, times = (a.tolist() for a in arrays)
        self._table = OrderedDict(
            (int(k), (int(o), int(d), float(t)))
            for k, o, d, t in zip(keys, owners, digests, times, strict=True)
        )
