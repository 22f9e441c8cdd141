"""The Dockerfile: lint-clean, shaped as documented, and its pip steps actually install.

There is no Docker engine on the development machines, so the slow test replays the
Dockerfile's own pip steps (parsed from the file, not copied) in fresh virtualenvs.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
from deploy_contract import REPO_ROOT, outrider_config_check, run_tool, tool_path

DOCKERFILE = REPO_ROOT / "Dockerfile"
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc ")


@dataclass
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    arguments: str


@dataclass
class Stage:
    """One FROM ... block of a multi-stage Dockerfile."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # Docker drops comment lines, also inside continuations
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Split a Dockerfile into its global ARG defaults and its stages."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        arguments = arguments.strip()
        if keyword == "FROM":
            parts = arguments.split()
            base = _VARIABLE.sub(lambda m: global_args[m[1] or m[2]], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, found {keyword}"
            arg_name, _, default = arguments.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return global_args, stages


def _dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _pip_steps(stage: Stage) -> list[str]:
    return [run for run in stage.all("RUN") if re.search(r"(^|\s)pip\s", run)]


def test_hadolint_is_clean() -> None:
    hadolint = tool_path("hadolint")
    result = run_tool([hadolint, str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_two_stages_builder_then_slim_runtime() -> None:
    _, stages = _dockerfile()
    assert [stage.name for stage in stages] == ["builder", None]
    for stage in stages:
        assert stage.base.startswith("python:3.11-slim"), stage.base
    builder, final = stages
    (wheel_step,) = _pip_steps(builder)
    assert "pip wheel" in wheel_step and "--only-binary=:all:" in wheel_step
    (install_step,) = _pip_steps(final)
    assert "--no-index" in install_step and "from=builder" in install_step


def test_runtime_stage_has_no_compiler_and_copies_nothing_from_the_builder() -> None:
    _, (_, final) = _dockerfile()
    for run in final.all("RUN"):
        if "apt-get install" in run or "apk add" in run:
            for compiler in _COMPILERS:
                assert compiler not in run, f"compiler {compiler!r} in the runtime stage"
    # The wheels come in through a build-time bind mount and never land in a layer.
    assert final.all("COPY") == ["deploy/docker/config.yaml /etc/outrider/config.yaml"]


def test_default_config_in_the_image_passes_config_check() -> None:
    code, output = outrider_config_check([REPO_ROOT / "deploy/docker/config.yaml"])
    assert code == 0, output


def test_runtime_stage_is_documented_and_runs_outrider_serve_as_non_root() -> None:
    _, (_, final) = _dockerfile()
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "numeric non-root uid, for runAsNonRoot"
    assert final.all("EXPOSE") == ["8001 8081"]
    assert final.all("VOLUME") == ['["/var/lib/outrider"]']
    assert json.loads(final.all("ENTRYPOINT")[0]) == ["outrider"]
    assert json.loads(final.all("CMD")[0]) == ["serve", "--config", "/etc/outrider/config.yaml"]
    (healthcheck,) = final.all("HEALTHCHECK")
    exec_form = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert exec_form[:2] == ["python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8081/healthz'" in exec_form[2]
    compile(exec_form[2], "<healthcheck>", "exec")


def test_image_version_matches_the_package_version() -> None:
    global_args, _ = _dockerfile()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert global_args["OUTRIDER_VERSION"] == pyproject["project"]["version"]


def _dockerignored(path: str) -> bool:
    """Docker's rule: the last matching line wins; `!` re-includes; a directory covers its tree."""
    ignored = False
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_rule_reading() -> None:
    assert _dockerignored("tests/deploy/test_dockerfile.py")
    assert _dockerignored("deploy/grafana/outrider-overview.json")
    assert not _dockerignored("deploy/docker/config.yaml")
    assert not _dockerignored("service/cli.py")


def test_everything_the_dockerfile_copies_exists_and_is_not_dockerignored() -> None:
    _, stages = _dockerfile()
    for stage in stages:
        for copy in stage.all("COPY"):
            *sources, _ = copy.split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"Dockerfile copies missing {source}"
                assert not _dockerignored(source), f"{source} is excluded by .dockerignore"


def _replay(step: str, python: Path, wheels: Path, version: str) -> str:
    """Turn one RUN pip step into the same command for a local virtualenv."""
    words = [w for w in shlex.split(step) if not w.startswith("--mount=")]
    assert words[0] == "pip", f"expected a plain pip step, got {step!r}"
    replaced = [
        w.replace("/wheels", str(wheels)).replace("${OUTRIDER_VERSION}", version)
        for w in words[1:]
    ]
    return shlex.join([str(python), "-m", "pip", *replaced])


@pytest.mark.slow
def test_pip_steps_install_a_working_outrider_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    global_args, (builder, final) = _dockerfile()
    version = global_args["OUTRIDER_VERSION"]
    source = tmp_path / "src"
    source.mkdir()
    for copy in builder.all("COPY"):
        *sources, _ = copy.split()
        for name in sources:
            origin = REPO_ROOT / name
            if origin.is_dir():
                shutil.copytree(
                    origin, source / name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(origin, source / name)
    wheels = tmp_path / "wheels"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    for stage, workdir in ((builder, source), (final, tmp_path)):
        venv = tmp_path / f"venv-{stage.name or 'final'}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        for step in _pip_steps(stage):
            command = _replay(step, venv / "bin" / "python", wheels, version)
            result = subprocess.run(
                command, shell=True, cwd=workdir, env=env, capture_output=True, text=True,
                timeout=1500, check=False,
            )
            assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}{result.stderr}"
    runtime = tmp_path / "venv-final" / "bin"
    check = subprocess.run(
        [str(runtime / "python"), "-m", "pip", "check"], capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    imports = subprocess.run(
        [str(runtime / "python"), "-c", "import service, detectors, kubernetes"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert imports.returncode == 0, imports.stderr
    cli = subprocess.run(
        [str(runtime / "outrider"), "--help"], capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "serve" in cli.stdout
