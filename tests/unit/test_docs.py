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


def documented_commands() -> set[str]:
    block = README.split("## Commands", 1)[1].split("```", 2)[1]
    names: set[str] = set()
    for line in block.splitlines():
        if line.startswith("corral "):
            names.update(line.split()[1].split("|"))
    return names


def test_the_readme_lists_exactly_the_commands_there_are() -> None:
    from corral.cli import parser

    sub = next(a for a in parser()._actions if a.dest == "command")
    assert documented_commands() == set(sub.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", sorted(documented_commands()))
def test_every_command_has_help_and_all_but_serve_offer_json(command: str) -> None:
    proc = subprocess.run(corral_cmd(command, "--help"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    if command not in ("serve", "token"):
        assert "--json" in proc.stdout, command


@pytest.mark.parametrize("name", ["claude_desktop_config.json", "mcp.stdio.json", "mcp.http.json"])
def test_example_configs_are_valid(name: str) -> None:
    config = json.loads((REPO / "examples" / name).read_text())
    server = config["mcpServers"]["corral"]
    assert server.get("command", "").endswith("corral") or server.get("url", "").endswith("/mcp")


def test_stdio_examples_name_their_data_dir() -> None:
    """Stdio clients pass the server only HOME, PATH and a few more: a data dir that depends on
    anything else (XDG_DATA_HOME) would differ between the client's server and the user's shell."""
    for path in (REPO / "examples").glob("*.json"):
        server = json.loads(path.read_text())["mcpServers"]["corral"]
        if "command" in server:
            assert "CORRAL_HOME" in server.get("env", {}) or "--home" in server.get("args", []), path.name
    assert "claude mcp add corral -e CORRAL_HOME=" in README


def readme_table(title: str) -> list[list[str]]:
    section = README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_the_readme_tool_table_lists_exactly_the_registered_tools() -> None:
    from corral.tools import GROUPS

    documented = {
        row[0]: sorted(re.findall(r"`([a-z_]+)`", row[1].split("(")[0] + " " + row[1])) for row in readme_table("Tools")
    }
    registered = {group: sorted(spec.fn.__name__ for spec in specs) for group, specs in GROUPS.items()}
    assert {g: sorted(set(t) & set(registered.get(g, []))) for g, t in documented.items()} == registered


def test_every_setting_the_code_reads_is_documented() -> None:
    read = set()
    for path in (REPO / "corral").rglob("*.py"):
        if "agent" in path.relative_to(REPO / "corral").parts[:1]:
            continue  # the in-sandbox agent's test hooks are documented in docs/agent-protocol.md
        read |= set(re.findall(r"CORRAL_[A-Z_]+", path.read_text()))
    documented = {row[0].strip("`") for row in readme_table("Settings")}
    assert read - documented == set()


def test_the_agent_protocol_doc_names_every_op_and_no_other() -> None:
    import importlib

    from corral.agent import rpc

    importlib.import_module("corral.agent.daemon")  # importing the daemon registers every op
    doc = (REPO / "docs" / "agent-protocol.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)(?:`| \{)", doc))
    assert set(rpc.OPS) - documented == set()


def test_the_architecture_doc_names_modules_that_exist() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text()
    for path in re.findall(r"`((?:corral/)?[a-z_/]+\.py)`", doc):
        candidates = [REPO / path, REPO / "corral" / path, *(REPO / "corral").rglob(path)]
        assert any(c.exists() for c in candidates), path
