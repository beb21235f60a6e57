"""The README's promises and the examples, checked."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.helpers import REPO, corral_cmd

README = (REPO / "README.md").read_text()


def test_readme_opens_with_the_serve_and_test_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make serve", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^serve: setup", makefile, re.M) and re.search(r"^test: setup", makefile, re.M)


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("args", [["serve", "--help"], ["image", "--help"], ["gc", "--help"], ["doctor", "--help"]])
def test_documented_commands_exist(args: list[str]) -> None:
    proc = subprocess.run(corral_cmd(*args), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["claude_desktop_config.json", "mcp.stdio.json", "mcp.http.json"])
def test_example_configs_are_valid(name: str) -> None:
    config = json.loads((REPO / "examples" / name).read_text())
    server = config["mcpServers"]["corral"]
    assert server.get("command", "").endswith("corral") or server.get("url", "").endswith("/mcp")
