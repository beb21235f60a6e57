"""Small helpers shared by both tiers: tool calls and running the `corral` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, TextContent

REPO = Path(__file__).resolve().parent.parent


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


# What every result that touches a sandbox also carries (corral/tools/_notes.py): its lease, and
# notices such as "it was resumed". call_ok leaves them out, so a test of a tool compares the tool's
# own result; call_noted keeps them.
CALL_NOTES = ("lease", "leases", "notices")


async def call_noted(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool} failed: {text_of(result)}"
    assert result.structured_content is not None
    return result.structured_content


async def call_ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await call_noted(client, tool, **args)
    return {key: value for key, value in result.items() if key not in CALL_NOTES}


async def call_error(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    return text_of(result)


def corral_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CORRAL_HOME": str(home), **extra}
    env.pop("CORRAL_TOKEN", None)
    return env


def corral_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "corral", *args]


def run_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        corral_cmd(*args), env=env or corral_env(home), capture_output=True, text=True, timeout=120
    )
