"""A third-party MCP client, the MCP Inspector CLI (npm), drives the stdio server.

Every Inspector call starts a fresh `corral serve` process, so this also shows that sandboxes
persist across server processes through SQLite.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, corral_cmd, corral_env

INSPECTOR = REPO / "build" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"

pytestmark = pytest.mark.skipif(not INSPECTOR.exists(), reason="run `make test` to install the Inspector CLI")


def inspector(home: Path, *args: str) -> Any:
    cmd = corral_cmd("serve")
    proc = subprocess.run(
        [str(INSPECTOR), "--cli", "-e", f"CORRAL_HOME={home}", *cmd, *args],
        env=corral_env(home, MCP_CATALOG_PATH=str(home / "catalog.json")),
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


def test_inspector_lists_tools_creates_a_sandbox_runs_code_and_reads_a_file(home: Path) -> None:
    listed = inspector(home, "--method", "tools/list")
    names = {tool["name"] for tool in listed["tools"]}
    assert {"create_sandbox", "run_code", "read_file"} <= names

    created = inspector(home, "--method", "tools/call", "--tool-name", "create_sandbox", "--tool-arg", "name=insp")
    assert created["structuredContent"]["name"] == "insp"

    ran = inspector(home, "--method", "tools/call", "--tool-name", "run_code", "--tool-arg", "sandbox=insp",
                    "--tool-arg", "code=open('out.txt','w').write(str(6*7))\nprint('written')")
    assert ran["structuredContent"]["stdout"] == "written\n"

    read = inspector(home, "--method", "tools/call", "--tool-name", "read_file", "--tool-arg", "sandbox=insp",
                     "--tool-arg", "path=out.txt")
    assert read["structuredContent"]["content"] == "     1\t42\n"
    # Optional integer and boolean arguments, typed from the trimmed schema by the Inspector itself.
    ranged = inspector(home, "--method", "tools/call", "--tool-name", "read_file", "--tool-arg", "sandbox=insp",
                       "--tool-arg", "path=out.txt", "--tool-arg", "start_line=-1", "--tool-arg", "raw=true")
    assert ranged["structuredContent"]["content"] == "42" and ranged["structuredContent"]["start_line"] == 1
    assert ranged["content"][0]["text"] == "/workspace/out.txt: lines 1-1 of 1\n42"

    inspector(home, "--method", "tools/call", "--tool-name", "delete_sandbox", "--tool-arg", "sandbox=insp")
