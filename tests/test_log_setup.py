"""Every log line is rendered the same way, whether it comes from structlog or the stdlib."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from service.log_setup import configure_logging


@pytest.fixture
def json_logging() -> Iterator[None]:
    """Removes our handler afterwards (the tests configure inside their body: the captured
    stderr of a test's call phase is not the one its fixtures see)."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_outrider_handler", False)]:
        root.removeHandler(handler)
    structlog.reset_defaults()  # its logger writes to this test's (closed) captured stderr


def test_stdlib_and_structlog_lines_are_both_json(
    json_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    configure_logging("info", "json")  # twice: must not add a second handler
    logging.getLogger("service.dataplane.relay").warning("upstream %s unreachable", "primary")
    structlog.get_logger("outrider").info("hello", answer=42)
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        logging.getLogger("service.hooks.dispatcher").exception("hook failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == [
        "upstream primary unreachable",
        "hello",
        "hook failed",
    ]
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "service.dataplane.relay"
    assert lines[1]["answer"] == 42
    assert "ZeroDivisionError" in lines[2]["exception"]
    assert all("timestamp" in line for line in lines)


def test_levels_below_the_configured_one_are_dropped(
    json_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    logging.getLogger("aiohttp.access").debug("not shown")
    assert capsys.readouterr().err == ""
