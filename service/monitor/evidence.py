"""Evidence a stream's readings carry: its latest rows and example request ids.

`StreamEvidence` keeps the latest rows of one (model, version, signal) and the ids of the
requests they came from; `mean_shift.MeanShifts` says how far the mean of those rows moved
from the reference's, per dimension (the readings' `top_mean_shifts`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

TOP_MEAN_SHIFTS = 3
RECENT_ROWS = 512  # rows per stream kept to name the dimensions whose mean moved most


class StreamEvidence:
    """The latest `RECENT_ROWS` rows of a stream and the last `example_ids` request ids."""

    def __init__(self, dims: int, example_ids: int) -> None:
        self.recent = np.zeros((RECENT_ROWS, dims))
        self.recent_pos = 0
        self.recent_count = 0
        self.example_ids: deque[str] = deque(maxlen=max(1, example_ids))

    def rows(self) -> np.ndarray:
        """The rows kept (in ring order; the mean does not care)."""
        return self.recent[: self.recent_count]

    def remember(self, rows: np.ndarray, ids: list[str]) -> None:
        """Keep `rows` (the latest ones if more than fit) and the non-empty `ids`."""
        capacity = self.recent.shape[0]
        rows = rows[-capacity:]
        idx = (self.recent_pos + np.arange(rows.shape[0])) % capacity
        self.recent[idx] = rows
        self.recent_pos = int((self.recent_pos + rows.shape[0]) % capacity)
        self.recent_count = min(capacity, self.recent_count + rows.shape[0])
        self.example_ids.extend(i for i in ids if i)

    def state_dict(self) -> dict[str, Any]:
        """Rows (oldest first) and ids, for a checkpoint."""
        return {
            "recent": self.recent[: self.recent_count].copy()
            if self.recent_count < self.recent.shape[0]
            else np.roll(self.recent, -self.recent_pos, axis=0),
            "example_ids": json.dumps(list(self.example_ids)),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict()`; raises ValueError when it does not fit this stream."""
        recent = np.asarray(state["recent"], dtype=np.float64)
        ids = json.loads(str(state["example_ids"]))
        if recent.ndim != 2 or recent.shape[1] != self.recent.shape[1]:
            raise ValueError(f"recent rows have shape {recent.shape}")
        if not isinstance(ids, list):
            raise ValueError("example_ids is not a list")
        self.recent[:] = 0.0
        self.recent_pos = self.recent_count = 0
        self.remember(recent, [str(i) for i in ids])
