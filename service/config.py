"""outrider's one typed settings model: YAML file, then `OUTRIDER_` environment overrides.

Built once in `main` and passed down; no other module reads the environment or the file.
Unknown keys are errors, and `outrider config check FILE` names every error by its path.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from service.alerting.settings import AlertRules
from service.dataplane.settings import DataplaneSettings
from service.hooks.settings import HooksSettings
from service.monitor.settings import ModelSettings, MonitorSettings
from service.probes.settings import ProbeSettings


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


class RetentionSettings(BaseModel):
    """How long the state directory keeps what it no longer needs, so the volume never fills.

    Pruned: resolved incidents (with their actions and plots), probe runs (except the
    known-good baseline each regression test compares with) and set-aside `*.corrupt-*`
    files. Open incidents and the known-good promotion state are never pruned.
    """

    model_config = ConfigDict(extra="forbid")

    days: int = Field(
        default=90,
        ge=0,
        le=36500,
        description="Keep resolved incidents (with their actions and plots), probe runs and "
        "set-aside `*.corrupt-*` files this many days. Open incidents and the runs the probe "
        "regression test compares with are kept whatever their age. 0: keep everything forever.",
    )
    interval_hours: float = Field(
        default=24.0,
        gt=0,
        le=8760,
        description="How often pruning runs (it runs once at start, then at this interval).",
    )

    @property
    def enabled(self) -> bool:
        return self.days > 0


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
