"""The runbooks in docs/runbooks/: one shape for every alert, and every command and query in
them runs on this version (the `outrider` CLI's own parser, promtool)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml
from deploy_contract import DEPLOY_DIR, RUNBOOK_DIR, run_tool

from service.cli import build_parser

ALERTS = sorted({rule["alert"] for group in yaml.safe_load(
    (DEPLOY_DIR / "prometheus" / "alerts.yaml").read_text())["groups"]
    for rule in group["rules"] if "alert" in rule})
PAGES = sorted(RUNBOOK_DIR.glob("*.md"))
SECTIONS = ["Meaning", "Impact", "Diagnosis", "Mitigation", "Verify recovery", "Silence"]
# Alerts that come with an incident (model alerts, and the hooks' own outcomes).
INCIDENT_ALERTS = {"OutriderDriftDetected", "OutriderOODRatioHigh", "OutriderProbeRegression",
                   "OutriderHookActionFailed", "OutriderAutomaticRollback"}
# What a runbook's Mitigation must show.
ROLLBACK_TOOLS = ["kubectl -n \"$NS\" rollout undo", "kubectl argo rollouts", "canary",
                  "helm -n \"$NS\" rollback"]
_FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)
_INLINE = re.compile(r"(?<!`)`(outrider [^`]+)`(?!`)")
# Shell variables in commands stand for values from the page (an incident id, a pod).
_SHELL_VARIABLE = re.compile(r'"?\$\{?(\w+)\}?"?')
_SHELL_END = re.compile(r"\s(?:\||>|2>|&&|;|&)\s|\s&$")


def _blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(text) if lang == language]


def _sections(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, re.M)


def _outrider_commands(text: str) -> list[str]:
    """Every `outrider ...` invocation in the page's shell blocks, continuation lines joined."""
    commands = []
    for block in _blocks(text, "sh"):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0]
            match = re.search(r"(?:^\s*|\s--\s+)(outrider\s.*)$", line)
            if match and not match.group(1).startswith("outrider-"):
                commands.append(_SHELL_END.split(match.group(1))[0].strip())
    return commands


def _argv(command: str) -> list[str]:
    """The command's arguments as the shell would pass them, with variables filled in."""
    words = shlex.split(_SHELL_VARIABLE.sub("1", command))
    assert words[0] == "outrider", command
    return words[1:]


def _parse(argv: list[str]) -> tuple[int, str]:
    """Run the real CLI parser; (exit code, stderr) where 0 means it parsed."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit_:
            return int(exit_.code or 0), err.getvalue()
    return 0, ""


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    pages = {path.stem for path in PAGES} - {"README", "manual-rollback"}
    assert pages == set(ALERTS)
    index = (RUNBOOK_DIR / "README.md").read_text()
    for alert in ALERTS:
        assert f"[{alert}]({alert}.md)" in index


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_has_every_section_in_order(alert: str) -> None:
    text = (RUNBOOK_DIR / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n")
    assert _sections(text) == SECTIONS
    for section, body in zip(SECTIONS, re.split(r"^## .+$", text, flags=re.M)[1:], strict=True):
        assert len(body.strip()) > 40, f"{alert}: {section} is empty"


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_diagnoses_with_promql_and_the_cli_and_says_how_to_roll_back_and_silence(
    alert: str,
) -> None:
    text = (RUNBOOK_DIR / f"{alert}.md").read_text()
    diagnosis, mitigation, verify, silence = re.split(r"^## .+$", text, flags=re.M)[3:]
    assert _blocks(diagnosis, "promql"), f"{alert}: no PromQL to copy"
    assert _blocks(diagnosis, "sh"), f"{alert}: no commands to copy"
    if alert in INCIDENT_ALERTS:  # the evidence: the pod's incident and its plot
        assert "outrider incidents list" in diagnosis
        assert "kubectl -n \"$NS\" cp -c outrider" in diagnosis
    for tool in ROLLBACK_TOOLS:
        assert tool in mitigation, f"{alert}: Mitigation lacks {tool}"
    assert _blocks(verify, "promql") or _blocks(verify, "sh"), alert
    (add,) = [block for block in _blocks(silence, "sh") if "silence add" in block]
    assert f"alertname={alert}" in add and "--duration=" in add and "--comment=" in add


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_every_outrider_command_parses_with_this_versions_cli(page: Path) -> None:
    text = page.read_text()
    commands = _outrider_commands(text)
    if page.stem.startswith("Outrider"):
        assert commands, f"{page.name}: no outrider command"
    for command in commands:
        code, error = _parse(_argv(command))
        assert code == 0, f"{page.name}: {command!r} does not parse: {error}"


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_every_outrider_command_named_in_prose_exists(page: Path) -> None:
    """`outrider incidents show` in a sentence: its subcommands must exist (help exits 0)."""
    for span in _INLINE.findall(page.read_text().replace("\n", " ")):
        words = []
        for word in shlex.split(_SHELL_VARIABLE.sub("1", span))[1:]:
            if word.startswith("-"):
                break
            words.append(word)
        code, error = _parse([*words, "--help"])
        assert code == 0, f"{page.name}: `{span}` names no command of this version: {error}"


def test_the_command_check_catches_a_command_that_does_not_exist() -> None:
    assert _parse(["incidents", "plot", "1", "-o", "x.png"])[0] != 0
    assert _parse(["incidents", "plot", "--help"])[0] != 0
    assert _parse(_argv('outrider incidents show --config /etc/outrider/config.yaml "$ID"'))[0] == 0
    page = ('```sh\nkubectl exec "$POD" -c outrider -- \\\n'
            '  outrider incidents list --status open\n```\n')
    assert _outrider_commands(page) == ["outrider incidents list --status open"]


def _promql(text: str) -> list[str]:
    """The queries in the page's promql blocks: a line at column 0 starts a new one."""
    queries: list[str] = []
    for block in _blocks(text, "promql"):
        current: list[str] = []
        for line in block.splitlines() + [""]:
            if not line.strip() or line.startswith("#") or not line.startswith(" "):
                if current:
                    queries.append("\n".join(current))
                    current = []
                if line.strip() and not line.startswith("#"):
                    current = [line]
            else:
                current.append(line)
    return queries


def test_every_promql_query_parses(promtool: str, tmp_path: Path) -> None:
    queries = [query for page in PAGES for query in _promql(page.read_text())]
    assert len(queries) >= 40
    rules = {"groups": [{"name": "runbooks", "rules": [
        {"record": f"runbook:query_{index}:check", "expr": query}
        for index, query in enumerate(queries)]}]}
    rule_file = tmp_path / "runbooks.rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules))
    result = run_tool([promtool, "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_operations_guide_names_commands_and_settings_that_exist() -> None:
    guide = (RUNBOOK_DIR.parent / "operations.md").read_text()
    for command in _outrider_commands(guide):
        code, error = _parse(_argv(command))
        assert code == 0, f"operations.md: {command!r} does not parse: {error}"
    configuration = (RUNBOOK_DIR.parent / "configuration.md").read_text()
    assert "`monitor.log_payloads`" in configuration
    assert "monitor.log_payloads" in guide and "logging.log_payloads" not in guide
    for section in ("## Persistence", "## Upgrades and downgrades", "## Backup and restore"):
        assert section in guide
    backup = guide.split("## Backup and restore")[1]
    assert ".backup" in backup and "-wal" in backup  # not a plain copy of a WAL database
