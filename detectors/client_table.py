"""Per-client state in fixed-shape numpy slots, bounded in clients and evicting the idlest.

A guard keeps a little state for every client it has seen recently (a ring of recent
queries, counters). Holding it as rows of a few arrays rather than one object per client
keeps the memory per client exact and small, makes a checkpoint a handful of arrays, and
lets a flood of distinct clients cost at most `max_clients` rows: when the table is full,
the client seen least recently is evicted to make room.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import DTypeLike, NDArray

from detectors.base import check_positive_int

_INITIAL_CAPACITY = 16
#: Least recently seen clients examined for one eviction before protection is overridden.
_PROTECT_SCAN = 16
_R = TypeVar("_R")


@dataclass(frozen=True)
class Field:
    """One per-client array: its shape per client, dtype and value for an empty slot."""

    shape: tuple[int, ...]
    dtype: DTypeLike
    fill: Any


class ClientTable(Generic[_R]):
    """Slots of per-client arrays for up to `max_clients` clients, least recently seen evicted.

    `admit(client)` returns the client's slot, taking a free one (or the least recently
    seen client's) for a new client; the table grows by doubling up to `max_clients` slots,
    so memory follows the number of clients actually seen. Each admitted client gets a
    serial number never reused, so a record that names a serial cannot be confused with
    a later client in the same slot. Scalars that the hot path reads and writes per query
    live in a small Python record per client (`record(slot)`, made by `new_record`):
    attribute access is several times cheaper than numpy scalar access.

    `protect(record)` marks clients to keep when the table is full: the least recently
    seen client that is not protected is evicted (among the `_PROTECT_SCAN` least recent;
    protected ones passed over move to the back of the queue), so a flood of fresh
    identities cannot push out a client under suspicion. If all of them are protected, the
    least recent goes anyway.

    Example
    -------
    >>> table = ClientTable(2, {"hits": Field((), np.int64, 0)}, new_record=dict)
    >>> a = table.admit("a"); table["hits"][a] += 1; table.record(a)["seen"] = 1
    >>> b = table.admit("b"); _ = table.admit("a")  # "b" is now the least recently seen
    >>> c = table.admit("c")                        # evicts "b"
    >>> table.clients(), int(table["hits"][table.slot("a")]), table.evicted
    (['a', 'c'], 1, 1)
    >>> table.record(table.slot("a")), table.record(c)
    ({'seen': 1}, {})
    """

    def __init__(
        self,
        max_clients: int,
        fields: dict[str, Field],
        new_record: Callable[[], _R],
        protect: Callable[[_R], bool] | None = None,
    ) -> None:
        self.max_clients = check_positive_int("max_clients", max_clients)
        self.fields = dict(fields)
        self.new_record = new_record
        self.protect = protect
        self._records: list[_R | None] = []
        self._capacity = 0
        self._arrays: dict[str, NDArray[Any]] = {}
        self._serials = np.zeros(0, dtype=np.int64)
        # least to most recently seen; an OrderedDict so moving a client to the end and
        # reading the front stay O(1) however many clients came and went
        self._slot_of: OrderedDict[str, int] = OrderedDict()
        self._free: list[int] = []
        self._next_serial = 0
        self.evicted = 0
        self._grow(min(_INITIAL_CAPACITY, self.max_clients))

    def __len__(self) -> int:
        return len(self._slot_of)

    def __getitem__(self, name: str) -> NDArray[Any]:
        """The array of field `name`, one row per slot (rows of free slots hold the fill)."""
        return self._arrays[name]

    def __contains__(self, client: object) -> bool:
        return client in self._slot_of

    @property
    def capacity(self) -> int:
        """Slots allocated now (grows by doubling up to `max_clients`)."""
        return self._capacity

    def slot(self, client: str) -> int | None:
        """The client's slot, or None if it is not in the table (does not touch recency)."""
        return self._slot_of.get(client)

    def record(self, slot: int) -> _R:
        """The Python record of the client in `slot`."""
        rec = self._records[slot]
        assert rec is not None, "no client in this slot"
        return rec

    def serial(self, slot: int) -> int:
        """The serial number of the client now in `slot`."""
        return int(self._serials[slot])

    def clients(self) -> list[str]:
        """Clients in the table, least recently seen first."""
        return list(self._slot_of)

    def admit(self, client: str) -> int:
        """The client's slot, marked most recently seen; a new client may evict the idlest."""
        slot = self._slot_of.get(client)
        if slot is not None:
            self._slot_of.move_to_end(client)
            return slot
        if not self._free:
            if self._capacity < self.max_clients:
                self._grow(min(2 * self._capacity, self.max_clients))
            else:
                self.evict(self._eviction_candidate())
                self.evicted += 1
        slot = self._free.pop()
        self._serials[slot] = self._next_serial
        self._next_serial += 1
        self._records[slot] = self.new_record()
        self._slot_of[client] = slot
        return slot

    def _eviction_candidate(self) -> str:
        order = self._slot_of
        if self.protect is not None:
            for _ in range(min(_PROTECT_SCAN, len(order))):
                client, slot = next(iter(order.items()))
                if not self.protect(self.record(slot)):
                    return client
                order.move_to_end(client)
        return next(iter(order))

    def least_recent(self) -> str | None:
        """The client seen least recently, or None when the table is empty."""
        return next(iter(self._slot_of), None)

    def evict(self, client: str) -> bool:
        """Removes a client and clears its slot; False if it was not in the table."""
        slot = self._slot_of.pop(client, None)
        if slot is None:
            return False
        for name, spec in self.fields.items():
            self._arrays[name][slot] = spec.fill
        self._serials[slot] = -1
        self._records[slot] = None
        self._free.append(slot)
        return True

    def clear(self) -> None:
        """Removes every client and restarts the serial numbers and the eviction count."""
        for client in list(self._slot_of):
            self.evict(client)
        self._next_serial = 0
        self.evicted = 0

    def nbytes_per_client(self) -> int:
        """Bytes of array storage one slot takes (the dict entry and id string come on top)."""
        total = self._serials.itemsize
        for spec in self.fields.values():
            total += int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
        return int(total)

    # -- checkpoint -------------------------------------------------------------------------

    def records(self) -> list[_R]:
        """Records of the clients, least recently seen first (the order `state` writes)."""
        return [self.record(slot) for slot in self._slot_of.values()]

    def state(self, prefix: str) -> dict[str, Any]:
        """The arrays of the used slots, clients from least to most recently seen (no records)."""
        order = np.array(list(self._slot_of.values()), dtype=np.int64)
        state: dict[str, Any] = {
            f"{prefix}clients": np.array(list(self._slot_of), dtype=np.str_),
            f"{prefix}serials": self._serials[order].copy(),
            f"{prefix}next_serial": self._next_serial,
            f"{prefix}evicted": self.evicted,
        }
        for name in self.fields:
            state[f"{prefix}{name}"] = self._arrays[name][order].copy()
        return state

    def state_keys(self, prefix: str) -> tuple[str, ...]:
        """The keys `state(prefix)` writes."""
        fixed = ("clients", "serials", "next_serial", "evicted")
        return tuple(f"{prefix}{k}" for k in (*fixed, *self.fields))

    def load_state(self, state: dict[str, Any], prefix: str) -> None:
        """Restores `state(prefix)` with fresh records; ValueError if shapes or types differ."""
        clients = np.asarray(state[f"{prefix}clients"])
        if clients.ndim != 1 or (clients.size and clients.dtype.kind != "U"):
            raise ValueError(f"state value {prefix}clients must be a 1-D array of strings")
        n = clients.shape[0]
        if n > self.max_clients or len(set(clients.tolist())) != n:
            raise ValueError(
                f"state holds {n} clients (or repeats one); max_clients is {self.max_clients}"
            )
        serials = np.asarray(state[f"{prefix}serials"])
        if serials.shape != (n,):
            raise ValueError(f"state value {prefix}serials must have shape ({n},)")
        arrays = {}
        for name, spec in self.fields.items():
            value = np.asarray(state[f"{prefix}{name}"])
            if value.shape != (n, *spec.shape):
                raise ValueError(
                    f"state value {prefix}{name} has shape {value.shape}, "
                    f"expected {(n, *spec.shape)}"
                )
            arrays[name] = value
        self._capacity = 0
        self._arrays = {}
        self._serials = np.zeros(0, dtype=np.int64)
        self._records = []
        self._free = []
        self._grow(max(min(_INITIAL_CAPACITY, self.max_clients), n))
        self._slot_of = OrderedDict()
        self._free = list(range(self._capacity - 1, n - 1, -1))
        for i, client in enumerate(clients.tolist()):
            self._slot_of[str(client)] = i
            self._records[i] = self.new_record()
        self._serials[:n] = serials
        for name, value in arrays.items():
            self._arrays[name][:n] = value.astype(np.dtype(self.fields[name].dtype), copy=False)
        self._next_serial = int(state[f"{prefix}next_serial"])
        self.evicted = int(state[f"{prefix}evicted"])

    def _grow(self, capacity: int) -> None:
        old = self._capacity
        for name, spec in self.fields.items():
            arr = np.full((capacity, *spec.shape), spec.fill, dtype=spec.dtype)
            if old:
                arr[:old] = self._arrays[name]
            self._arrays[name] = arr
        serials = np.full(capacity, -1, dtype=np.int64)
        serials[:old] = self._serials
        self._serials = serials
        self._records.extend([None] * (capacity - old))
        # Hand out low slots first (pop from the end).
        self._free.extend(range(capacity - 1, old - 1, -1))
        self._capacity = capacity
