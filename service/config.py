"""outrider's one typed settings model: YAML file, then `OUTRIDER_` environment overrides.

Built once in `main` and passed down; no other module reads the environment or the file.
Unknown keys are errors, and `outrider config check FILE` names every error by its path.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from service.alerting.settings import AlertRules
from service.dataplane.settings import DataplaneSettings
from service.hooks.settings import HooksSettings
from service.label_bounds import LabelSettings
from service.monitor.settings import ModelSettings, MonitorSettings
from service.probes.settings import ProbeSettings
from service.store.retention import RetentionSettings


class AdminSettings(BaseModel):
    """The admin HTTP server: /metrics, /healthz, /readyz, incidents and inbound webhooks."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        default="127.0.0.1",
        description="Bind address. Anything but loopback makes mutating endpoints need a token.",
    )
    port: int = Field(
        default=8102,
        ge=0,
        le=65535,
        description="Bind port (0 picks one). The default clashes with no model server's "
        "default port (Triton 8000-8002, MLServer and KServe 8080-8082), since a sidecar "
        "shares the model server's network namespace.",
    )
    # The bearer token of mutating endpoints is `hooks.inbound.token`: those endpoints are
    # the hooks' inbound side.

    @property
    def loopback_only(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class LoggingSettings(BaseModel):
    """Structured logs: JSON lines for machines, a readable console for people."""

    model_config = ConfigDict(extra="forbid")

    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level written."
    )
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a TTY, JSON lines otherwise."
    )


class CheckpointSettings(BaseModel):
    """How often detector and alert state is written to the state directory."""

    model_config = ConfigDict(extra="forbid")

    interval_seconds: float = Field(
        default=30.0, gt=0, description="A kill -9 loses at most this much detector state."
    )


RENAMED_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("dataplane", "max_model_labels"): ("labels", "max_models"),
    ("monitor", "version_label_limit"): ("labels", "max_versions_per_model"),
    ("probes", "max_versions_per_model"): ("labels", "max_versions_per_model"),
}
"""Keys of earlier releases, still accepted (with a warning) under their new names."""


def _move_renamed_keys(data: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """`data` with the keys of `RENAMED_KEYS` moved to their new place; `notes` say which.

    A new key set explicitly wins over old ones; two old keys for one new key give the
    smaller value (no family gets more series than either old setting allowed).
    """
    data = dict(data)
    explicit = dict(data.get("labels") or {}) if isinstance(data.get("labels"), dict) else {}
    moved: dict[str, Any] = {}
    for (section, old), (new_section, new) in RENAMED_KEYS.items():
        part = data.get(section)
        if not isinstance(part, dict) or old not in part:
            continue
        part = dict(part)
        value = part.pop(old)
        data[section] = part
        if new in explicit:
            notes.append(f"{section}.{old} is deprecated and ignored: {new_section}.{new} is set")
            continue
        notes.append(f"{section}.{old} is deprecated: use {new_section}.{new}")
        if new in moved:
            # A value that is no number is left for the validation of the new key to name.
            with contextlib.suppress(TypeError, ValueError):
                value = min(int(moved[new]), int(value))
        moved[new] = value
    if moved:
        data["labels"] = {**explicit, **moved}
    return data


class OutriderSettings(BaseSettings):
    """The whole configuration of one outrider sidecar."""

    model_config = SettingsConfigDict(
        env_prefix="OUTRIDER_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    state_dir: Path = Field(
        default=Path("./outrider-state"),
        description="Incidents (SQLite), references, checkpoints, probe results and plots.",
    )
    admin: AdminSettings = Field(default_factory=AdminSettings, description="Admin HTTP server.")
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    dataplane: DataplaneSettings = Field(
        default_factory=DataplaneSettings, description="The relay and its passive tap."
    )
    checkpoints: CheckpointSettings = Field(
        default_factory=CheckpointSettings, description="Detector state checkpoints."
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="Pruning of old state-directory files."
    )
    labels: LabelSettings = Field(
        default_factory=LabelSettings,
        description="Model and version label limits, the same for every metric and alert.",
    )
    models: dict[str, ModelSettings] = Field(
        default_factory=dict,
        description="Monitored models by name: their signals, references and detectors.",
    )
    monitor: MonitorSettings = Field(
        default_factory=MonitorSettings, description="The monitor worker: queue, batches, limits."
    )
    alerts: AlertRules = Field(
        default_factory=list, description="In-process alert rules over detector and probe readings."
    )
    alert_evaluation_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often alert rules are evaluated."
    )
    alert_stale_after_seconds: float | None = Field(
        default=600.0,
        gt=0,
        description="A detector stream with no new reading for this long counts as not "
        "drifting, so an alert on a version that stopped getting traffic (say, after a "
        "rollback) resolves. None: never.",
    )
    probes: ProbeSettings = Field(
        default_factory=ProbeSettings, description="Scheduled robustness probes."
    )
    hooks: HooksSettings = Field(
        default_factory=HooksSettings, description="Rollback hooks and inbound endpoints."
    )

    _deprecations: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _accept_renamed_keys(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> OutriderSettings:
        notes: list[str] = []
        if isinstance(data, dict):
            data = _move_renamed_keys(data, notes)
        settings: OutriderSettings = handler(data)
        settings._deprecations = tuple(notes)
        return settings

    @property
    def deprecations(self) -> tuple[str, ...]:
        """One line per deprecated key the configuration used, naming its replacement."""
        return self._deprecations

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init arguments).
        return (env_settings, init_settings)


class ConfigError(Exception):
    """An unreadable or invalid configuration; `errors` lists `path: message` lines."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(errors))
        self.source = source
        self.errors = errors


def error_path(location: tuple[int | str, ...]) -> str:
    """Pydantic's error location as a path a person can follow: `models[0].signals[1].tensor`."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(root)"


def _describe(error: Any) -> str:
    message = str(error["msg"])
    if error["type"] == "missing":
        message = "field required"
    elif error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{error_path(tuple(error['loc']))}: {message}"


def load_settings(path: Path | None) -> OutriderSettings:
    """Reads YAML (or only defaults and environment when `path` is None) and validates it."""
    data: Any = {}
    source = str(path) if path else "defaults"
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(source, [f"(file): cannot read: {exc.strerror or exc}"]) from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"(file): not valid YAML: {exc}"]) from None
        if not isinstance(data, dict):
            raise ConfigError(source, ["(root): the file must hold a mapping of settings"])
        odd_keys = [key for key in data if not isinstance(key, str)]
        if odd_keys:
            raise ConfigError(
                source, [f"(root): key {key!r} is not a setting name" for key in odd_keys]
            )
    try:
        return OutriderSettings(**data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from None
    except SettingsError as exc:  # an OUTRIDER_* variable that does not parse
        raise ConfigError(source, [f"(environment): {exc}"]) from None


def settings_summary(settings: OutriderSettings) -> str:
    """The normalised settings, as YAML, with every default filled in."""
    dumped = settings.model_dump(mode="json", by_alias=True)
    return yaml.safe_dump(dumped, sort_keys=False)
