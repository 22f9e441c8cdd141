from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.probes.settings import ProbeSettings


def test_defaults_are_valid_and_documented() -> None:
    settings = ProbeSettings()
    assert settings.enabled is False and settings.max_probes_per_second == 200.0
    for name, field in ProbeSettings.model_fields.items():
        assert field.description, name


def test_unknown_keys_and_bad_schedules_are_named() -> None:
    with pytest.raises(ValidationError, match="max_rps\n  Extra inputs are not permitted"):
        ProbeSettings.model_validate({"max_rps": 3})
    with pytest.raises(ValidationError, match="set exactly one of 'cron' or 'interval_seconds'"):
        ProbeSettings.model_validate(
            {"suites": [{"name": "a", "path": "a.npz", "model": "m", "schedule": {}}]}
        )
    with pytest.raises(ValidationError, match="Wrong number of fields; got 1, expected 5"):
        ProbeSettings.model_validate(
            {
                "suites": [
                    {"name": "a", "path": "a.npz", "model": "m", "schedule": {"cron": "hourly"}}
                ]
            }
        )


def test_suite_names_are_unique_and_live_attack_source_exists() -> None:
    suite = {"name": "a", "path": "a.npz", "model": "m"}
    with pytest.raises(ValidationError, match=r"suite names must be unique, repeated: \['a'\]"):
        ProbeSettings.model_validate({"suites": [suite, suite]})
    with pytest.raises(ValidationError, match="live_attack.source_suite 'b' is not a configured"):
        ProbeSettings.model_validate(
            {"suites": [suite], "live_attack": {"enabled": True, "model": "m", "source_suite": "b"}}
        )
