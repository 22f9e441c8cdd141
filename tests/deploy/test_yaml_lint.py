"""yamllint over every YAML file in deploy/ and helm/ (Helm's Go templates excluded)."""

from __future__ import annotations

from pathlib import Path

from deploy_contract import DEPLOY_DIR, REPO_ROOT, run_tool, tool_path


def test_yamllint_is_clean() -> None:
    yamllint = tool_path("yamllint")
    result = run_tool(
        [yamllint, "--strict", "-c", str(DEPLOY_DIR / "yamllint.yaml"), "deploy", "helm"],
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_catches_a_duplicate_key(tmp_path: Path) -> None:
    yamllint = tool_path("yamllint")
    broken = tmp_path / "broken.yaml"
    broken.write_text("groups:\n  - name: a\n    name: b\n")
    result = run_tool([yamllint, "--strict", "-c", str(DEPLOY_DIR / "yamllint.yaml"), str(broken)])
    assert result.returncode == 1
    assert "duplication of key" in result.stdout
