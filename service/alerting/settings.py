"""Alert rule settings: the `alerts:` section of the config, one entry per rule.

Example (YAML)::

    alerts:
      - name: EmbeddingDrift
        severity: critical
        selector: {model: "resnet*", signal: embedding}
        condition: drift_detected
        for: 2m
        keep_firing_for: 5m
        annotations:
          summary: "{model} {version}: {signal} drifted ({detector} score {score})"
          runbook_url: https://runbooks.example/outrider/drift
      - name: ManyOodInputs
        severity: warning
        condition: {ood_ratio_above: 0.2}
        for: 30s
      - name: AccuracyDropped            # any reading kind, any named value
        selector: {kind: performance}
        condition: {value: score, below: 0.9}

A condition looks at a reading's verdict or at one of its named values (score, threshold,
p_value, or an evidence value such as ood_ratio), whatever room published it; the
selector's `kind` says which kinds of reading a rule watches.
"""

from __future__ import annotations

import fnmatch
import re
import string
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from service.alerting.readings import SOURCE_KINDS

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")

TEMPLATE_FIELDS = frozenset(
    {"alert", "severity", "kind", "model", "version", "signal", "detector", "value", "score",
     "threshold", "p_value", "ood_ratio"}
)
"""Placeholders an annotation may use, e.g. ``"{model} drifted"``."""


def parse_duration(value: object) -> float:
    """Turn a Prometheus-style duration ("30s", "2m", "1h30m", "500ms") or seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '30s', '2m', '1h30m' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not text or "".join(number + unit for number, unit in parts) != text:
            raise ValueError(
                f"invalid duration {value!r}: use a number with a unit of ms, s, m, h, d, w "
                "(e.g. '30s', '2m', '1h30m')"
            )
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    else:
        raise ValueError("a duration is a string like '30s', '2m', '1h30m' or a number of seconds")
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"a duration must be zero or positive, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _check_template(template: str | None) -> str | None:
    if template is None:
        return None
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    except ValueError as error:
        raise ValueError(f"invalid template {template!r}: {error}") from None
    unknown = sorted(names - TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown placeholder(s) {unknown} in {template!r}; "
            f"valid placeholders: {sorted(TEMPLATE_FIELDS)}"
        )
    return template


Template = Annotated[str | None, AfterValidator(_check_template)]


class AlertSelector(BaseModel):
    """Which reading streams a rule watches; each field is an exact name or a glob."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = Field(
        default=None,
        description="Reading kind, exact or glob: "
        + ", ".join(SOURCE_KINDS)
        + ". Default: drift and ood, probe for probe_regression, every kind for verdict and "
        "{value: ...}.",
    )
    model: str = Field(
        default="*", description="Model name, exact or glob (fnmatch); '*' matches any."
    )
    signal: str = Field(
        default="*",
        description="Signal name (or probe suite name for probe_regression), exact or glob.",
    )
    detector: str = Field(
        default="*",
        description="Detector name, exact or glob; ignored for readings without a detector "
        "(probes).",
    )

    @field_validator("kind")
    @classmethod
    def _kind_matches_a_kind(cls, kind: str | None) -> str | None:
        if kind is not None and not any(fnmatch.fnmatchcase(k, kind) for k in SOURCE_KINDS):
            raise ValueError(f"kind {kind!r} matches no reading kind; kinds: {list(SOURCE_KINDS)}")
        return kind


class ScoreAbove(BaseModel):
    """Condition: the detector's score is strictly above a fixed value."""

    model_config = ConfigDict(extra="forbid")

    score_above: float = Field(description="Fires while score > this value.")


class PValueBelow(BaseModel):
    """Condition: the detector's p-value is strictly below alpha."""

    model_config = ConfigDict(extra="forbid")

    p_value_below: float = Field(gt=0.0, lt=1.0, description="Fires while p-value < alpha.")


class OodRatioAbove(BaseModel):
    """Condition: the fraction of out-of-distribution samples is strictly above a ratio."""

    model_config = ConfigDict(extra="forbid")

    ood_ratio_above: float = Field(
        ge=0.0, lt=1.0, description="Fires while the OOD ratio > this value."
    )


class ValueBeyond(BaseModel):
    """Condition: one named value of the reading strictly above, or below, a limit."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="score, threshold, p_value, or the name of an evidence value (ood_ratio, "
        "window_fill, ...).",
    )
    above: float | None = Field(default=None, description="Fires while the value > this.")
    below: float | None = Field(default=None, description="Fires while the value < this.")

    @model_validator(mode="after")
    def _one_limit(self) -> ValueBeyond:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        return self


_CONDITION_KEYS = ("score_above", "p_value_below", "ood_ratio_above", "value")
_CONDITION_HELP = (
    "a condition is one of: drift_detected | probe_regression | verdict | {score_above: x} "
    "| {p_value_below: alpha} | {ood_ratio_above: y} | {value: name, above: x} "
    "| {value: name, below: x}"
)


def _condition_tag(value: object) -> str | None:
    """Pick the condition's variant so an error names the one that was meant, not all four."""
    if isinstance(value, str):
        return "flag"
    if isinstance(value, dict):
        keys = [key for key in _CONDITION_KEYS if key in value]
        return keys[0] if len(keys) == 1 else None
    for model, tag in ((ScoreAbove, "score_above"), (PValueBelow, "p_value_below"),
                       (OodRatioAbove, "ood_ratio_above"), (ValueBeyond, "value")):
        if isinstance(value, model):
            return tag
    return None


Condition = Annotated[
    Annotated[Literal["drift_detected", "probe_regression", "verdict"], Tag("flag")]
    | Annotated[ScoreAbove, Tag("score_above")]
    | Annotated[PValueBelow, Tag("p_value_below")]
    | Annotated[OodRatioAbove, Tag("ood_ratio_above")]
    | Annotated[ValueBeyond, Tag("value")],
    Discriminator(
        _condition_tag, custom_error_type="invalid_condition", custom_error_message=_CONDITION_HELP
    ),
]


class AlertAnnotations(BaseModel):
    """Human text attached to an alert; `{model}`-style placeholders are filled per instance."""

    model_config = ConfigDict(extra="forbid")

    summary: Template = Field(default=None, description="One line saying what is wrong.")
    description: Template = Field(default=None, description="Longer explanation for the on-call.")
    runbook_url: Template = Field(default=None, description="Where the on-call finds what to do.")


class AlertRuleSettings(BaseModel):
    """One alert rule: a condition over readings, held for a duration."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(
        description="Alert name (the `alert` label); letters, digits, _ : . - only.",
        min_length=1,
        max_length=128,
    )
    severity: Literal["critical", "warning", "info"] = Field(
        default="warning", description="Severity label passed to metrics, incidents and hooks."
    )
    selector: AlertSelector = Field(
        default_factory=AlertSelector, description="Which streams the rule watches."
    )
    condition: Condition = Field(
        description=(
            "drift_detected | probe_regression | verdict | {score_above: x} "
            "| {p_value_below: alpha} | {ood_ratio_above: y} | {value: name, above: x} "
            "| {value: name, below: x}"
        )
    )
    for_: Duration = Field(
        default=0.0,
        alias="for",
        description="How long the condition must hold before pending turns firing ('30s', '2m').",
    )
    keep_firing_for: Duration = Field(
        default=0.0, description="How long a firing alert stays firing after its condition clears."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels attached to every instance of the alert."
    )
    annotations: AlertAnnotations = Field(
        default_factory=AlertAnnotations, description="Summary, description and runbook URL."
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_label_value(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(
                f"invalid alert name {name!r}: start with a letter or _, "
                "then letters, digits, _ : . -"
            )
        return name

    @field_validator("labels")
    @classmethod
    def _labels_are_prometheus_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key) or key.startswith("__"):
                raise ValueError(f"invalid label name {key!r}: use [A-Za-z_][A-Za-z0-9_]*")
        return labels


def _unique_names(rules: list[AlertRuleSettings]) -> list[AlertRuleSettings]:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"alert rule name {rule.name!r} is used more than once")
        seen.add(rule.name)
    return rules


AlertRules = Annotated[list[AlertRuleSettings], AfterValidator(_unique_names)]
"""The type of the `alerts:` config section: a list of rules with unique names."""
