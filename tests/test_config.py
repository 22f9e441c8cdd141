"""The settings model: YAML, environment overrides, and errors named by their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ConfigError, error_path, load_settings

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def test_error_path_reads_like_the_config() -> None:
    assert error_path(("models", 0, "signals", 1, "tensor")) == "models[0].signals[1].tensor"
    assert error_path(()) == "(root)"


def test_every_error_is_named_by_its_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "admin:\n  port: -3\n  colour: blue\ndataplane:\n  upstream:\n    port: abc\nbogus: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.errors == [
        "admin.port: Input should be greater than or equal to 0",
        "admin.colour: unknown key",
        "dataplane.upstream.port: Input should be a valid integer, unable to parse string as an "
        "integer",
        "bogus: unknown key",
    ]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("admin:\n  port: 9000\n  host: 127.0.0.1\n")
    monkeypatch.setenv("OUTRIDER_ADMIN__PORT", "9100")
    settings = load_settings(config)
    assert settings.admin.port == 9100
    assert settings.admin.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- a list\n", "(root): the file must hold a mapping of settings"),
        ("admin: [unclosed\n", "(file): not valid YAML"),
        ("1: a\n", "(root): key 1 is not a setting name"),
    ],
)
def test_unusable_files_are_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.errors[0].startswith(message)


def test_an_environment_value_that_does_not_parse_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTRIDER_MODELS", "{bad")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert info.value.errors == [
        '(environment): error parsing value for field "models" from source "EnvSettingsSource"'
    ]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(example: Path) -> None:
    load_settings(example)


def test_there_are_examples() -> None:
    assert EXAMPLES


def test_retention_defaults_and_keep_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = load_settings(None).retention
    assert (defaults.days, defaults.interval_hours, defaults.enabled) == (90, 24.0, True)
    config = tmp_path / "c.yaml"
    config.write_text("retention:\n  days: 30\n  interval_hours: 6\n")
    assert load_settings(config).retention.model_dump() == {"days": 30, "interval_hours": 6.0}
    # 0 keeps everything; it can be set from the environment too (a null could not).
    monkeypatch.setenv("OUTRIDER_RETENTION__DAYS", "0")
    kept = load_settings(config).retention
    assert (kept.days, kept.interval_hours, kept.enabled) == (0, 6.0, False)


def test_retention_settings_are_validated(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("retention:\n  days: 1.5\n  interval_hours: 0\n  keep: all\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.errors == [
        "retention.days: Input should be a valid integer, got a number with a fractional part",
        "retention.interval_hours: Input should be greater than 0",
        "retention.keep: unknown key",
    ]
    config.write_text("retention:\n  days: -1\n  interval_hours: 9000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.errors == [
        "retention.days: Input should be greater than or equal to 0",
        "retention.interval_hours: Input should be less than or equal to 8760",
    ]


def test_default_ports_clash_with_no_model_server_default() -> None:
    """A sidecar shares the model server's network namespace: its defaults must not bind
    Triton's (HTTP 8000, gRPC 8001, metrics 8002), MLServer's and KServe's (HTTP 8080,
    gRPC 8081, metrics 8082) ports."""
    settings = load_settings(None)
    model_server_ports = {8000, 8001, 8002, 8080, 8081, 8082}
    ours = {settings.admin.port, settings.dataplane.listen_port}
    assert ours.isdisjoint(model_server_ports), ours
    assert settings.admin.port != settings.dataplane.listen_port
