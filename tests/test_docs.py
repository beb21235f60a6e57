"""The README's promises and the examples, checked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, corral_cmd, corral_env, reap_containers

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


def test_doctor_reports_a_ready_host() -> None:
    proc = subprocess.run(corral_cmd("doctor"), capture_output=True, text=True, timeout=60)
    report = json.loads(proc.stdout)
    assert report["gvisor_runtime"] is True and report["image_present"] is True, report


@pytest.mark.parametrize("name", ["claude_desktop_config.json", "mcp.stdio.json", "mcp.http.json"])
def test_example_configs_are_valid(name: str) -> None:
    config = json.loads((REPO / "examples" / name).read_text())
    server = config["mcpServers"]["corral"]
    assert server.get("command", "").endswith("corral") or server.get("url", "").endswith("/mcp")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    reap_containers(tmp_path)


def test_agent_loop_example_fixes_its_bug_and_succeeds(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "agent_loop.py")], env=corral_env(home),
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "attempt 1: error NameError" in proc.stdout
    assert "attempt 2: value 328" in proc.stdout
