"""Bounded Prometheus label values: past a limit, newcomers fold into `other`.

One place for the rule DESIGN.md sets for every room (relay, monitor, probes): label
values come from traffic, so their count must not grow with it.
"""

from __future__ import annotations

OTHER = "other"


class BoundedLabel:
    """Keeps one label's distinct values under `limit`; later newcomers become `other`."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value


class VersionLabels:
    """Keeps each model's version labels under `limit`; later versions become `other`."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._seen: dict[str, list[str]] = {}

    def label(self, model: str, version: str) -> str:
        seen = self._seen.setdefault(model, [])
        if version in seen:
            return version
        if len(seen) < self.limit:
            seen.append(version)
            return version
        return OTHER

    def state_dict(self) -> dict[str, list[str]]:
        return {model: list(versions) for model, versions in self._seen.items()}

    def load_state_dict(self, state: dict[str, list[str]]) -> None:
        self._seen = {str(m): [str(v) for v in vs][: self.limit] for m, vs in state.items()}
