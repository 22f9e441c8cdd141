"""Stateful detection of query-based attacks and model extraction, per client, on every query.

A query-based black-box attack (Square Attack, HopSkipJump, NES, ...) sends long runs of
near-copies of one input; an extraction attack sends queries that sweep the input space.
`QueryGuard` sees every query row with the identity of the client that sent it and keeps,
per client, a bounded history of its recent distinct queries:

1. Exact repeats (retries, caches) are recognised by digest and counted apart; they are
   neither attack evidence nor extraction samples.
2. Near-copies: every other query is compared with the client's live history (the last
   `history_size` distinct queries younger than `max_age` seconds) in a random projection
   of the rows scaled to [0, 1]. Its neighbours are the history queries within `radius`.
   A query with at least `k_neighbours` neighbours is suspicious: a benign client that
   sends a few variants of one input (test-time augmentation, re-encoded uploads) makes
   one or two neighbours, an attack's queries all neighbour each other (the k-nearest-
   neighbour rule of Chen, Carlini and Wagner 2019, with k counted inside a radius).
   The client's `score` is the number of suspicious queries in its live history; it is
   flagged as an attack while `score >= min_suspicious`.
3. Extraction: the distance from each distinct query to its nearest live history query
   (once the history is full) goes into a window of `extraction_window` values, tested
   against the same distances measured on the benign reference with a two-sample KS test
   at `extraction_alpha` (`min_distance_test`, after PRADA).
4. Across clients (optional, `global_entries > 0`): content-hash bands of every query go
   into one bounded table (`content_index`, after Blacklight); a query whose band was sent
   by another client recently counts as a cross-client match (reported, not part of the
   verdict: distinct users sending near-copies of one popular input is ordinary).

Memory is bounded: at most `max_clients` clients (the least recently seen clean client is
evicted first), each with `history_size` entries; see `memory_per_client`. Nothing grows
with the stream.

Results come back per row (`Observation`) and per client (`ClientSuspicion`), so a caller
can name the first and latest suspicious requests. A guard is not thread-safe: feed it from
one thread or task. Which traffic it sees (probe calls excluded, which identity a request
belongs to) is the caller's business.

References
----------
Chen, S., Carlini, N. and Wagner, D. (2020). Stateful detection of black-box adversarial
attacks. ACM SPAI (arXiv 2019).
Li, H. et al. (2022). Blacklight: Scalable defense for neural networks against query-based
black-box attacks. USENIX Security.
Juuti, M. et al. (2019). PRADA: Protecting against DNN model stealing attacks. EuroS&P.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import (
    State,
    _StatefulEstimator,
    as_matrix,
    check_open_unit,
    check_positive_float,
    check_positive_int,
)
from detectors.client_table import ClientTable, Field
from detectors.content_index import ContentIndex
from detectors.min_distance_test import (
    critical_values,
    ks_p_value,
    ks_statistic,
    reference_min_distances,
)
from detectors.query_fingerprint import QueryFingerprinter

Verdict = Literal["clean", "attack", "extraction"]
_NONE = float("nan")


@dataclass(frozen=True)
class ClientSuspicion:
    """What the guard holds against one client (a snapshot; indices count the client's rows)."""

    client: str
    verdict: Verdict
    """"attack" while `attack`, else "extraction" while `extraction`, else "clean"."""
    attack: bool
    """Near-copy evidence: `score >= threshold`."""
    extraction: bool
    """The latest extraction test rejected the benign distance law."""
    score: int
    """Suspicious queries among the client's live history."""
    threshold: int
    """`min_suspicious`: the score at which the client is flagged."""
    queries: int
    """Rows accepted from the client (exact repeats included)."""
    exact_repeats: int
    matches: int
    """Near-copy pairs found: each query adds its neighbours in the history."""
    cross_client_matches: int
    """Queries sharing a content band with a recent query of another client."""
    suspicious_queries: int
    """Suspicious queries since the client was first seen (not only live ones)."""
    first_suspicious: int | None
    last_suspicious: int | None
    detection_index: int | None
    """Query index at which the client was first flagged as an attack."""
    extraction_score: float | None
    """KS D of the latest extraction test (None before the first)."""
    extraction_threshold: float | None
    extraction_samples: int
    """Minimum distances in the latest extraction test."""
    extraction_reference_size: int
    extraction_detection_index: int | None
    first_seen: float
    last_seen: float

    def extraction_p_value(self) -> float | None:
        """Asymptotic p-value of the latest extraction test (computed on demand, ~0.3 ms)."""
        if self.extraction_score is None:
            return None
        return ks_p_value(
            self.extraction_score, self.extraction_samples, self.extraction_reference_size
        )


class Observation(NamedTuple):
    """What `QueryGuard.observe` found for each row of one request, and the client after it.

    Deliberately small (a NamedTuple built on every request); `QueryGuard.suspicion(client)`
    gives the full `ClientSuspicion` when the caller needs it (e.g. when `flagged`).
    """

    client: str
    verdict: Verdict
    """The client's verdict after these rows."""
    score: int
    """The client's attack score after these rows (suspicious live queries)."""
    kept: NDArray[np.bool_]
    """(n,) rows accepted; rows with NaN/Inf are dropped and counted in `rejected`."""
    query_index: NDArray[np.int64]
    """(n,) the client's running 0-based index of each row (-1 for dropped rows)."""
    exact_repeat: NDArray[np.bool_]
    neighbours: NDArray[np.int64]
    """(n,) near-copies of the row in the client's live history (0 for exact repeats)."""
    suspicious: NDArray[np.bool_]
    cross_client: NDArray[np.int64]
    """(n,) other clients that sent a near-copy recently (0 with the global index off)."""

    @property
    def flagged(self) -> bool:
        """Whether the client is flagged (attack or extraction) after this request."""
        return self.verdict != "clean"


#: Per-client scalars and their values for a new client; ints unless the value is a float.
_COUNTERS: dict[str, int | float] = {
    "head": 0,  # distinct queries written to the ring so far
    "queries": 0,
    "repeats": 0,
    "matches": 0,
    "cross": 0,
    "suspicious": 0,
    "first_suspicious": -1,  # -1: none yet
    "last_suspicious": -1,
    "detection": -1,
    "first_seen": 0.0,
    "last_seen": 0.0,
    "dmin_count": 0,  # minimum distances pushed so far
    "tested_at": 0,  # dmin_count at the latest extraction test
    "ext_score": _NONE,  # D of the latest extraction test
    "ext_n": 0,  # its sample size
    "ext_detection": -1,
}


class _Client:
    """The scalars of one client that every query reads and writes (plain attributes)."""

    __slots__ = tuple(_COUNTERS)

    head: int
    queries: int
    repeats: int
    matches: int
    cross: int
    suspicious: int
    first_suspicious: int
    last_suspicious: int
    detection: int
    first_seen: float
    last_seen: float
    dmin_count: int
    tested_at: int
    ext_score: float
    ext_n: int
    ext_detection: int

    def __init__(self) -> None:
        for name, value in _COUNTERS.items():
            setattr(self, name, value)


class QueryGuard(_StatefulEstimator):
    """Per-client near-copy and extraction detection over every query (see the module doc).

    Parameters
    ----------
    n_features
        Values per query row (a flattened input tensor).
    value_range
        (low, high) of the inputs: distances are measured on rows scaled to [0, 1].
    history_size
        Distinct queries remembered per client (the near-copy and extraction window).
    max_clients
        Clients remembered; beyond it the least recently seen clean client is evicted.
    max_age
        Seconds after which a remembered query no longer counts (and an idle client may be
        dropped by `expire`).
    radius
        Near-copy radius (Euclidean, rows scaled to [0, 1]); None: `radius_scale` times
        the 1 % quantile of the reference's minimum distances, set by `fit`.
    radius_scale
        See `radius`.
    k_neighbours
        Neighbours that make a query suspicious; must exceed the variants of one input a
        benign client sends.
    min_suspicious
        Suspicious live queries that flag a client.
    extraction_window
        Minimum distances per client in the extraction test (the latest ones).
    extraction_min_samples
        Minimum distances needed before the first extraction test.
    extraction_test_every
        New minimum distances between two extraction tests of a client.
    extraction_alpha
        Level of each extraction test.
    projection_dim
        Columns of the random projection (distance error about 1/sqrt(2 projection_dim)).
    global_entries
        Keys in the cross-client content index; 0 turns it (and content hashing) off.
    levels, window, n_bins, band_size
        Content fingerprint settings for the cross-client index (`QueryFingerprinter`,
        `ContentIndex`).
    seed
        Seeds the projection, the hashes and the reference sampling.

    Memory per client: `memory_per_client` bytes of arrays (4.9 KiB at the defaults)
    plus about 150 bytes of dict entry and id; the cross-client index adds up to
    `global_entries` x ~200 bytes in total.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> reference = rng.uniform(size=(400, 64))
    >>> guard = QueryGuard(64, history_size=16, k_neighbours=3, seed=0).fit(reference)
    >>> for row in rng.uniform(size=(40, 64)):         # a benign client: distinct inputs
    ...     _ = guard.observe("alice", row, now=0.0)
    >>> x = rng.uniform(size=64)
    >>> for step in range(8):                          # an attack: near-copies of x
    ...     obs = guard.observe("mallory", x + 0.01 * rng.normal(size=64), now=1.0)
    >>> obs.verdict, obs.neighbours.tolist(), guard.suspicion("mallory").detection_index
    ('attack', [7], 3)
    >>> guard.suspicion("alice").verdict
    'clean'
    """

    _FITTED_KEYS = ("_radius", "_reference_dmin", "_critical")

    def __init__(
        self,
        n_features: int,
        value_range: tuple[float, float] = (0.0, 1.0),
        history_size: int = 32,
        max_clients: int = 10_000,
        max_age: float = 3600.0,
        radius: float | None = None,
        radius_scale: float = 0.5,
        k_neighbours: int = 4,
        min_suspicious: int = 1,
        extraction_window: int = 64,
        extraction_min_samples: int = 16,
        extraction_test_every: int = 8,
        extraction_alpha: float = 1e-6,
        projection_dim: int = 32,
        global_entries: int = 0,
        levels: int = 5,
        window: int = 20,
        n_bins: int = 32,
        band_size: int = 4,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.n_features = check_positive_int("n_features", n_features)
        self.history_size = check_positive_int("history_size", history_size, minimum=2)
        self.max_clients = check_positive_int("max_clients", max_clients)
        self.max_age = check_positive_float("max_age", max_age)
        self.radius = None if radius is None else check_positive_float("radius", radius)
        self.radius_scale = check_positive_float("radius_scale", radius_scale)
        self.k_neighbours = check_positive_int("k_neighbours", k_neighbours)
        if self.k_neighbours >= self.history_size:
            raise ValueError(
                f"k_neighbours must be < history_size={history_size}, got {k_neighbours!r}"
            )
        self.min_suspicious = check_positive_int("min_suspicious", min_suspicious)
        if self.min_suspicious > self.history_size:
            raise ValueError(
                f"min_suspicious must be <= history_size={history_size}, got {min_suspicious!r}"
            )
        self.extraction_window = check_positive_int(
            "extraction_window", extraction_window, minimum=2
        )
        self.extraction_min_samples = check_positive_int(
            "extraction_min_samples", extraction_min_samples
        )
        if self.extraction_min_samples > self.extraction_window:
            raise ValueError(
                f"extraction_min_samples must be <= extraction_window={extraction_window}, "
                f"got {extraction_min_samples!r}"
            )
        self.extraction_test_every = check_positive_int(
            "extraction_test_every", extraction_test_every
        )
        self.extraction_alpha = check_open_unit("extraction_alpha", extraction_alpha)
        self.global_entries = check_positive_int("global_entries", global_entries, minimum=0)
        self.fingerprinter = QueryFingerprinter(
            self.n_features,
            value_range=value_range,
            levels=levels,
            window=window,
            n_bins=n_bins,
            projection_dim=projection_dim,
            seed=self._entropy,
        )
        self.value_range = self.fingerprinter.value_range
        self.projection_dim = self.fingerprinter.projection_dim
        self.levels, self.window, self.n_bins = levels, window, n_bins
        self.band_size = check_positive_int("band_size", band_size)
        if n_bins % self.band_size:
            raise ValueError(f"band_size must divide n_bins={n_bins}, got {band_size!r}")
        self._content_index: ContentIndex | None = None
        if self.global_entries:
            self._content_index = ContentIndex(
                n_bins, band_size, self.global_entries, self.max_age, seed=self._entropy
            )
        m, k, w = self.history_size, self.projection_dim, self.extraction_window
        self._table: ClientTable[_Client] = ClientTable(
            self.max_clients,
            {
                # the ring of recent distinct queries, and of minimum distances
                "sketch": Field((m, k), np.float32, 0.0),
                "digest": Field((m,), np.uint64, 0),
                "time": Field((m,), np.float64, -np.inf),
                "flag": Field((m,), np.bool_, False),
                "dmin": Field((w,), np.float32, 0.0),
            },
            new_record=_Client,
            # a flood of fresh identities must not push out a client under suspicion
            protect=lambda c: c.suspicious > 0,
        )
        self._radius = _NONE if self.radius is None else float(self.radius)
        self._reference_dmin = np.zeros(0)
        self._critical = np.zeros(0)
        self._rejected = 0

    def _params(self) -> dict[str, object]:
        return {
            "n_features": self.n_features,
            "value_range": self.value_range,
            "history_size": self.history_size,
            "max_clients": self.max_clients,
            "max_age": self.max_age,
            "radius": self.radius,
            "radius_scale": self.radius_scale,
            "k_neighbours": self.k_neighbours,
            "min_suspicious": self.min_suspicious,
            "extraction_window": self.extraction_window,
            "extraction_min_samples": self.extraction_min_samples,
            "extraction_test_every": self.extraction_test_every,
            "extraction_alpha": self.extraction_alpha,
            "projection_dim": self.projection_dim,
            "global_entries": self.global_entries,
            "levels": self.levels,
            "window": self.window,
            "n_bins": self.n_bins,
            "band_size": self.band_size,
            "seed": self.seed,
        }

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, reference: ArrayLike) -> QueryGuard:
        """Measures the benign minimum distances (and the radius if not given); clears clients."""
        ref = as_matrix(reference, self.n_features, what="reference")
        ref = ref[np.isfinite(ref).all(axis=1)]
        if ref.shape[0] <= self.history_size:
            raise ValueError(
                f"reference needs more than history_size={self.history_size} finite rows, "
                f"got {ref.shape[0]}"
            )
        sketches = self.fingerprinter.fingerprint(ref).sketches
        rng = np.random.default_rng([self._entropy, 3])
        self._reference_dmin = reference_min_distances(sketches, self.history_size, rng)
        self._n_features = self.n_features
        if self.radius is None:
            self._radius = self.radius_scale * float(np.quantile(self._reference_dmin, 0.01))
        self._critical = critical_values(
            self.extraction_window, self._reference_dmin.shape[0], self.extraction_alpha
        )
        self._fitted = True
        self.reset()
        return self

    def reset(self) -> QueryGuard:
        """Forgets every client and the cross-client index (the fitted reference stays)."""
        self._require_fitted()
        self._table.clear()
        if self._content_index is not None:
            self._content_index.clear()
        self._rejected = 0
        return self

    # -- the hot path ---------------------------------------------------------------------------

    def observe(self, client: str, rows: ArrayLike, now: float | None = None) -> Observation:
        """Takes the rows of one request from `client` (in order) and returns what they showed.

        `now` is the request time in seconds (default: `time.time()`); it should not go
        backwards for a client. Rows with NaN/Inf are dropped and counted in `rejected`.
        """
        self._require_fitted()
        if not isinstance(client, str):
            raise ValueError(f"client must be a str, got {type(client).__name__}")
        t = time.time() if now is None else float(now)
        index = self._content_index
        fps = self.fingerprinter.fingerprint(rows, content=index is not None)
        n_in = fps.kept.shape[0]
        n = fps.n
        self._rejected += n_in - n
        table = self._table
        self._expire_front(t)
        slot = table.admit(client)
        c = table.record(slot)
        if c.queries == 0:
            c.first_seen = t
        c.last_seen = t
        sketch, digest, times, flag = (
            table["sketch"][slot],
            table["digest"][slot],
            table["time"][slot],
            table["flag"][slot],
        )
        m = self.history_size
        live = times >= t - self.max_age
        all_live = np.count_nonzero(live) == m
        score = int(np.count_nonzero(flag & live))
        r2 = self._radius * self._radius
        k_neighbours, min_suspicious = self.k_neighbours, self.min_suspicious
        first_index = c.queries
        head = c.head
        serial = table.serial(slot)

        repeat = [False] * n
        neighbours = [0] * n
        suspicious = [False] * n
        cross = [0] * n
        n_repeats = n_matches = n_suspicious = n_cross = 0
        for i in range(n):
            d = fps.digests[i]
            same = digest == d
            if np.count_nonzero(same if all_live else same & live):
                repeat[i] = True
                n_repeats += 1
                continue
            diff = sketch - fps.sketches[i]
            dist2 = np.einsum("ij,ij->i", diff, diff)
            if all_live:
                # a full history: the query's minimum distance is an extraction sample
                dmin = math.sqrt(max(float(dist2[dist2.argmin()]), 0.0))
                self._push_min_distance(slot, c, dmin, first_index + i)
            else:
                dist2[~live] = np.inf
            near = int(np.count_nonzero(dist2 <= r2))
            neighbours[i] = near
            n_matches += near
            pos = head % m
            if flag[pos] and live[pos]:
                score -= 1  # the entry this query overwrites leaves the window
            is_suspicious = near >= k_neighbours
            sketch[pos] = fps.sketches[i]
            digest[pos] = d
            times[pos] = t
            flag[pos] = is_suspicious
            head += 1
            if not all_live:
                live[pos] = True
                all_live = np.count_nonzero(live) == m
            if is_suspicious:
                suspicious[i] = True
                n_suspicious += 1
                score += 1
                q = first_index + i
                if c.first_suspicious < 0:
                    c.first_suspicious = q
                c.last_suspicious = q
                if c.detection < 0 and score >= min_suspicious:
                    c.detection = q
            if index is not None:
                cross[i] = hits = index.match_and_add(fps.bins[i], serial, int(d), t)
                n_cross += hits > 0

        c.head = head
        c.queries = first_index + n
        c.repeats += n_repeats
        c.matches += n_matches
        c.suspicious += n_suspicious
        c.cross += n_cross

        kept = fps.kept
        query_index = np.arange(first_index, first_index + n, dtype=np.int64)
        per_row: list[NDArray[Any]] = [
            np.array(repeat, dtype=bool),
            np.array(neighbours, dtype=np.int64),
            np.array(suspicious, dtype=bool),
            np.array(cross, dtype=np.int64),
        ]
        if n != n_in:
            query_index = self._spread(query_index, kept, -1)
            per_row = [self._spread(a, kept, a.dtype.type(0)) for a in per_row]
        return Observation(client, self._verdict(c, score), score, kept, query_index, *per_row)

    def _verdict(self, c: _Client, score: int) -> Verdict:
        if score >= self.min_suspicious:
            return "attack"
        if c.ext_score > self._critical[c.ext_n]:  # False while ext_score is NaN
            return "extraction"
        return "clean"

    def _push_min_distance(self, slot: int, c: _Client, value: float, index: int) -> None:
        w = self.extraction_window
        count = c.dmin_count
        self._table["dmin"][slot, count % w] = value
        count += 1
        c.dmin_count = count
        if count < self.extraction_min_samples or count - c.tested_at < self.extraction_test_every:
            return
        c.tested_at = count
        size = min(count, w)
        d = ks_statistic(self._table["dmin"][slot, :size], self._reference_dmin)
        c.ext_score, c.ext_n = d, size
        if d > self._critical[size] and c.ext_detection < 0:
            c.ext_detection = index

    @staticmethod
    def _spread(values: NDArray[Any], kept: NDArray[np.bool_], fill: Any) -> NDArray[Any]:
        out = np.full(kept.shape[0], fill, dtype=values.dtype)
        out[kept] = values
        return out

    def _expire_front(self, now: float) -> None:
        # Clients idle for longer than max_age hold nothing live: drop them from the front
        # of the recency order (O(1) amortised: each client is dropped once).
        table = self._table
        horizon = now - self.max_age
        while True:
            oldest = table.least_recent()
            if oldest is None:
                return
            slot = table.slot(oldest)
            assert slot is not None
            if table.record(slot).last_seen >= horizon:
                return
            table.evict(oldest)

    # -- reading ---------------------------------------------------------------------------------

    def suspicion(self, client: str, now: float | None = None) -> ClientSuspicion | None:
        """The client's current suspicion, or None if it is not remembered.

        The score counts the client's suspicious queries younger than `max_age` at `now`
        (default: the client's last query, so reading never changes the answer by itself).
        """
        self._require_fitted()
        slot = self._table.slot(client)
        if slot is None:
            return None
        c = self._table.record(slot)
        t = c.last_seen if now is None else float(now)
        live = self._table["time"][slot] >= t - self.max_age
        score = int(np.count_nonzero(self._table["flag"][slot] & live))
        has_test = not math.isnan(c.ext_score)
        verdict = self._verdict(c, score)

        def index(value: int) -> int | None:
            return None if value < 0 else value

        return ClientSuspicion(
            client=client,
            verdict=verdict,
            attack=score >= self.min_suspicious,
            extraction=bool(has_test and c.ext_score > self._critical[c.ext_n]),
            score=score,
            threshold=self.min_suspicious,
            queries=c.queries,
            exact_repeats=c.repeats,
            matches=c.matches,
            cross_client_matches=c.cross,
            suspicious_queries=c.suspicious,
            first_suspicious=index(c.first_suspicious),
            last_suspicious=index(c.last_suspicious),
            detection_index=index(c.detection),
            extraction_score=c.ext_score if has_test else None,
            extraction_threshold=float(self._critical[c.ext_n]) if has_test else None,
            extraction_samples=c.ext_n,
            extraction_reference_size=int(self._reference_dmin.shape[0]),
            extraction_detection_index=index(c.ext_detection),
            first_seen=c.first_seen,
            last_seen=c.last_seen,
        )

    def flagged(self, now: float | None = None) -> list[ClientSuspicion]:
        """Every remembered client whose verdict is not clean, highest score first."""
        out = []
        for client in self._table.clients():
            s = self.suspicion(client, now)
            if s is not None and s.verdict != "clean":
                out.append(s)
        return sorted(out, key=lambda s: (-s.score, -(s.extraction_score or 0.0), s.client))

    def clients(self) -> list[str]:
        """Remembered clients, least recently seen first."""
        return self._table.clients()

    def forget(self, client: str) -> bool:
        """Drops a client's state (e.g. after acting on it); False if it was not remembered."""
        return self._table.evict(client)

    def expire(self, now: float | None = None) -> None:
        """Drops clients idle for longer than `max_age` (observe does it too, as it goes)."""
        self._expire_front(time.time() if now is None else float(now))

    def min_distances(self, client: str) -> NDArray[np.float32]:
        """The client's recent minimum distances, oldest first (what the extraction test sees)."""
        slot = self._table.slot(client)
        if slot is None:
            return np.zeros(0, dtype=np.float32)
        count = self._table.record(slot).dmin_count
        ring: NDArray[np.float32] = self._table["dmin"][slot]
        w = self.extraction_window
        if count <= w:
            return ring[:count].copy()
        start = count % w
        return np.concatenate([ring[start:], ring[:start]])

    # -- properties ------------------------------------------------------------------------------

    @property
    def radius_(self) -> float | None:
        """The near-copy radius in use (given, or set by `fit`)."""
        return None if math.isnan(self._radius) else self._radius

    @property
    def threshold(self) -> int:
        """Suspicious live queries that flag a client (`min_suspicious`)."""
        return self.min_suspicious

    @property
    def rejected(self) -> int:
        """Rows dropped because they held NaN or Inf."""
        return self._rejected

    @property
    def n_clients(self) -> int:
        """Clients remembered now."""
        return len(self._table)

    @property
    def evicted_clients(self) -> int:
        """Clients evicted to make room for new ones since fitting or the last reset."""
        return self._table.evicted

    @property
    def memory_per_client(self) -> int:
        """Bytes of array state per remembered client (excluding the dict entry and id)."""
        return self._table.nbytes_per_client() + 8 * len(_COUNTERS)

    # -- checkpoint ------------------------------------------------------------------------------

    _CLIENTS = "clients."
    _INDEX = "index."
    _INDEX_KEYS = ("index.keys", "index.owners", "index.digests", "index.times")

    def _state_keys(self) -> tuple[str, ...]:
        return (*self._BASE_FITTED_KEYS, *self._FITTED_KEYS, "_rejected")

    def _extra_keys(self) -> set[str]:
        keys = set(self._table.state_keys(self._CLIENTS))
        keys |= {f"{self._CLIENTS}{name}" for name in _COUNTERS}
        if self._content_index is not None:
            keys |= set(self._INDEX_KEYS)
        return keys

    def state_dict(self) -> State:
        """Everything needed to resume: numpy arrays, numbers and strings only (no pickle)."""
        state = super().state_dict()
        state.update(self._table.state(self._CLIENTS))
        records = self._table.records()
        for name, default in _COUNTERS.items():
            dtype = np.float64 if isinstance(default, float) else np.int64
            state[f"{self._CLIENTS}{name}"] = np.array(
                [getattr(r, name) for r in records], dtype=dtype
            )
        if self._content_index is not None:
            for name, value in self._content_index.state().items():
                state[f"{self._INDEX}{name}"] = value
        return state

    def load_state_dict(self, state: State) -> QueryGuard:
        """Restores a `state_dict()`; a state from another class or settings -> ValueError."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict, got {type(state).__name__}")
        extra = self._extra_keys()
        if state.get("class") == type(self).__name__ and state.get("params") == self._params_text():
            missing = sorted(k for k in extra if k not in state)
            if missing:
                raise ValueError(f"state keys do not match: missing {missing}, unexpected []")
        super().load_state_dict({k: v for k, v in state.items() if k not in extra})
        try:
            self._table.load_state(state, self._CLIENTS)
            n = len(self._table)
            records = self._table.records()
            for name, default in _COUNTERS.items():
                values = np.asarray(state[f"{self._CLIENTS}{name}"])
                if values.shape != (n,) or values.dtype.kind not in "iuf":
                    raise ValueError(f"state value {self._CLIENTS}{name} must be {n} numbers")
                cast = float if isinstance(default, float) else int
                for record, value in zip(records, values.tolist(), strict=True):
                    setattr(record, name, cast(value))
            if self._content_index is not None:
                self._content_index.load_state(
                    {k[len(self._INDEX) :]: np.asarray(state[k]) for k in self._INDEX_KEYS}
                )
        except KeyError as exc:
            raise ValueError(f"state keys do not match: missing [{exc.args[0]!r}]") from None
        return self

    def _after_load(self) -> None:
        self._n_features = self.n_features
        if self._reference_dmin.ndim != 1 or self._critical.shape != (self.extraction_window + 1,):
            raise ValueError("state reference distances or critical values have the wrong shape")
