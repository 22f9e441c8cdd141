"""The ``probes:`` section of outrider's config: which suites run when, and how gently."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleSettings(_Strict):
    """When a job runs: a crontab expression or a fixed interval (exactly one)."""

    cron: str | None = Field(
        default=None,
        description="Five-field crontab expression (minute hour day month weekday), UTC.",
    )
    interval_seconds: float | None = Field(
        default=None, gt=0, description="Run every this many seconds."
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            CronTrigger.from_crontab(value, timezone="UTC")  # raises ValueError naming the field
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleSettings:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("set exactly one of 'cron' or 'interval_seconds'")
        return self


class SuiteSettings(_Strict):
    """One probe suite file replayed against one model on a schedule."""

    name: str = Field(
        description="Suite name used in metric labels and the run history.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    )
    path: Path = Field(description="The suite's npz file (from `outrider probes build`).")
    model: str = Field(description="Model name on the model server the suite is replayed against.")
    schedule: ScheduleSettings = Field(
        default_factory=lambda: ScheduleSettings(interval_seconds=3600.0),
        description="When the suite is replayed (default hourly).",
    )
    batch_size: int = Field(
        default=32, ge=1, le=4096, description="Probe rows per ModelInfer request."
    )


class LiveAttackSettings(_Strict):
    """An optional Square Attack run against the live model with a small query budget."""

    enabled: bool = Field(default=False, description="Run the live-attack job.")
    model: str = Field(default="", description="Model name to attack (required when enabled).")
    source_suite: str = Field(
        default="",
        description="Name of a configured suite whose clean rows are the starting samples "
        "(required when enabled).",
    )
    samples: int = Field(default=32, ge=1, le=1024, description="Clean samples attacked per run.")
    norm: Literal["linf", "l2"] = Field(default="linf", description="Attack norm.")
    eps: float = Field(gt=0, default=4.0, description="Norm bound in input units.")
    max_queries: int = Field(
        default=100, ge=2, le=10000, description="Query budget per sample, clean check included."
    )
    image_shape: tuple[int, ...] | None = Field(
        default=None,
        description="Image shape (H, W) or (H, W, C) of the flattened input for square "
        "updates; default: taken from the suite's metadata, else one row.",
    )
    seed: int = Field(default=0, description="Seed of the attack's random squares.")
    schedule: ScheduleSettings = Field(
        default_factory=lambda: ScheduleSettings(interval_seconds=86400.0),
        description="When the live attack runs (default daily).",
    )

    @model_validator(mode="after")
    def _named_when_enabled(self) -> LiveAttackSettings:
        if self.enabled and not (self.model and self.source_suite):
            raise ValueError("an enabled live attack needs 'model' and 'source_suite'")
        return self


class RegressionSettings(_Strict):
    """When a version counts as regressed against the last known-good one, and when it is good."""

    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Significance level of the one-sided paired McNemar exact test.",
    )
    min_accuracy_drop: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Smallest accuracy drop (0..1) on a suite that counts as a regression, "
        "however significant.",
    )
    clean_period_seconds: float = Field(
        default=86400.0,
        ge=0,
        description="A version with only clean probe runs for this long becomes the last "
        "known-good version.",
    )


class ProbeSettings(_Strict):
    """Robustness probes: suites replayed against the live model, rate-limited."""

    enabled: bool = Field(default=False, description="Run the probe scheduler.")
    target: str | None = Field(
        default=None,
        description="host:port of the model server's gRPC endpoint; default: the upstream "
        "outrider relays to.",
    )
    suites: list[SuiteSettings] = Field(
        default_factory=list, description="Suites to replay, each on its own schedule."
    )
    max_probes_per_second: float = Field(
        default=200.0,
        gt=0,
        description="Rate limit of probe rows sent to the model server, all suites together.",
    )
    max_concurrency: int = Field(
        default=2, ge=1, le=64, description="Most probe requests in flight at once."
    )
    request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Deadline of one probe request."
    )
    run_on_start: bool = Field(
        default=True, description="Run every suite once when the scheduler starts."
    )
    regression: RegressionSettings = Field(
        default_factory=RegressionSettings, description="Regression test and known-good promotion."
    )
    live_attack: LiveAttackSettings = Field(
        default_factory=LiveAttackSettings, description="Optional live Square Attack job."
    )

    @model_validator(mode="after")
    def _unique_suites(self) -> ProbeSettings:
        names = [s.name for s in self.suites]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"suite names must be unique, repeated: {duplicates}")
        if self.live_attack.enabled and self.live_attack.source_suite not in names:
            raise ValueError(
                f"live_attack.source_suite {self.live_attack.source_suite!r} is not a "
                f"configured suite (suites: {names})"
            )
        return self
