"""Bounded Prometheus label values: past a limit, newcomers fold into `other`.

Label values come from traffic, so their count must not grow with it (DESIGN.md). One
`LabelPolicy` per process decides the model and version labels of every metric family and
reading (requests, drift, probes, alerting): a version is admitted the first time any room
sees it, up to `max_versions_per_model` per model; later ones are `other` everywhere, so a
PromQL join across families lines up. Models named in the configuration keep their names;
other model names (clients may send anything) are admitted up to `max_models`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

OTHER = "other"
CHECKPOINT_PART = "labels"


class LabelSettings(BaseModel):
    """How many distinct model and version label values metrics and alerts may carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_versions_per_model: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Distinct versions per model in every metric family and alert; later "
        "versions fold into 'other' (the same ones everywhere).",
    )
    max_models: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="Distinct model names seen in traffic but not configured; later ones fold "
        "into 'other'. Configured models always keep their names.",
    )


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

    def load_state_dict(self, state: Mapping[str, Iterable[str]]) -> None:
        self._seen = {str(m): [str(v) for v in vs][: self.limit] for m, vs in state.items()}


class _CheckpointRegistry(Protocol):
    def register(self, name: str, part: LabelPolicy) -> None: ...


class LabelPolicy:
    """The one model and version label rule of the process; see the module docstring.

    Thread-safe: the relay's loop, the monitor worker and the probe scheduler all ask it.
    Its admitted versions are checkpointed, so they keep their labels after a restart.
    """

    def __init__(
        self,
        settings: LabelSettings | None = None,
        *,
        known_models: Iterable[str] = (),
        checkpoints: _CheckpointRegistry | None = None,
    ) -> None:
        self.settings = settings if settings is not None else LabelSettings()
        self._known = frozenset(known_models)
        self._models = BoundedLabel(self.settings.max_models)
        self._versions = VersionLabels(self.settings.max_versions_per_model)
        self._lock = threading.Lock()
        if checkpoints is not None:
            checkpoints.register(CHECKPOINT_PART, self)

    def model(self, model: str) -> str:
        """The label of `model`: its name, or `other` past the limit of unconfigured models."""
        if model in self._known:
            return model
        with self._lock:
            return self._models(model)

    def version(self, model: str, version: str) -> str:
        """The label of `model`'s `version`: itself if admitted (now or before), else `other`."""
        label = self.model(model)
        if label == OTHER:
            return OTHER
        with self._lock:
            return self._versions.label(label, version)

    def state_dict(self) -> dict[str, Any]:
        """The versions admitted so far (a checkpoint): they keep their labels after a restart."""
        with self._lock:
            # JSON: model names may hold '/', which checkpoint keys may not.
            return {"format_version": 1, "versions": json.dumps(self._versions.state_dict())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Admit the versions saved by `state_dict` (raises ValueError if it is not one)."""
        if state.get("format_version") != 1:
            raise ValueError(f"label state format_version {state.get('format_version')!r} is not 1")
        try:
            versions = json.loads(str(state.get("versions")))
            if not isinstance(versions, dict) or not all(
                isinstance(v, list) for v in versions.values()
            ):
                raise ValueError("not a mapping of lists")
        except ValueError as error:
            raise ValueError(f"label state versions unreadable: {error}") from None
        self.admit(versions)

    def admit(self, versions: Mapping[str, Iterable[str]]) -> None:
        """Admit these versions per model (as an earlier run did), within the limit."""
        with self._lock:
            merged = self._versions.state_dict()
            for model, listed in versions.items():
                kept = merged.setdefault(str(model), [])
                for version in map(str, listed):
                    if version not in kept:
                        kept.append(version)
            self._versions.load_state_dict(merged)

