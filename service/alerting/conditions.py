"""Alert conditions as checks on a reading's fields, whatever kind of source made it.

Every configured condition comes down to one `ConditionCheck`: the reading's verdict, or
one named value (score, threshold, p-value or an evidence value) strictly beyond a
limit. The kinds of reading a rule watches are its selector's `kind`, or the condition's
own default. A new kind of reading therefore needs no new condition: a rule names its
kind and a value.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from service.alerting.readings import SOURCE_KINDS, Reading, SourceKind
from service.alerting.settings import (
    AlertRuleSettings,
    OodRatioAbove,
    PValueBelow,
    ScoreAbove,
    ValueBeyond,
)

DETECTOR_KINDS: frozenset[SourceKind] = frozenset({"drift", "ood"})
ALL_KINDS: frozenset[SourceKind] = frozenset(SOURCE_KINDS)


@dataclass(frozen=True, slots=True)
class ConditionCheck:
    """What a condition looks at: `value` (reported as the instance's value) and the test.

    With `verdict` the reading's verdict decides; otherwise `value` must be a finite number
    strictly above `above` or below `below`. A missing or non-finite value never holds.
    """

    value: str
    verdict: bool = False
    above: float | None = None
    below: float | None = None
    kinds: frozenset[SourceKind] = DETECTOR_KINDS

    def test(self, reading: Reading) -> tuple[bool, float | None]:
        """Whether the condition holds on `reading`, and the value it looked at."""
        value = reading.value(self.value)
        if self.verdict:
            return reading.verdict, value
        if value is None:
            return False, None
        if self.above is not None:
            return value > self.above, value
        assert self.below is not None
        return value < self.below, value


def condition_check(rule: AlertRuleSettings) -> ConditionCheck:
    """The check of `rule`'s condition, with the kinds it watches by default."""
    condition = rule.condition
    if condition == "drift_detected":
        return ConditionCheck("score", verdict=True)
    if condition == "probe_regression":
        return ConditionCheck("score", verdict=True, kinds=frozenset({"probe"}))
    if condition == "verdict":
        return ConditionCheck("score", verdict=True, kinds=ALL_KINDS)
    if isinstance(condition, ScoreAbove):
        return ConditionCheck("score", above=condition.score_above)
    if isinstance(condition, PValueBelow):
        return ConditionCheck("p_value", below=condition.p_value_below)
    if isinstance(condition, OodRatioAbove):
        return ConditionCheck("ood_ratio", above=condition.ood_ratio_above)
    assert isinstance(condition, ValueBeyond)
    return ConditionCheck(
        condition.value, above=condition.above, below=condition.below, kinds=ALL_KINDS
    )


def watched_kinds(rule: AlertRuleSettings) -> frozenset[SourceKind]:
    """The reading kinds `rule` watches: its selector's, else its condition's default."""
    pattern = rule.selector.kind
    if pattern is None:
        return condition_check(rule).kinds
    return frozenset(kind for kind in SOURCE_KINDS if fnmatch.fnmatchcase(kind, pattern))


def selects(rule: AlertRuleSettings, kinds: frozenset[SourceKind], reading: Reading) -> bool:
    """Whether `rule` (watching `kinds`) watches the stream of `reading`."""
    selector = rule.selector
    return (
        reading.kind in kinds
        and fnmatch.fnmatchcase(reading.model, selector.model)
        and fnmatch.fnmatchcase(reading.signal, selector.signal)
        # Readings without a detector (probes) ignore the detector glob.
        and (not reading.detector or fnmatch.fnmatchcase(reading.detector, selector.detector))
    )


def condition_value(rule: AlertRuleSettings, reading: Reading) -> tuple[bool, float | None]:
    """Whether `rule`'s condition holds on `reading`, and the value it looked at.

    A reading of a kind the rule does not watch never satisfies it.
    """
    if reading.kind not in watched_kinds(rule):
        return False, None
    return condition_check(rule).test(reading)
