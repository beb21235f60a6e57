"""Small helpers shared by both tiers: tool calls and running the `corral` command."""

from __future__ import annotations

import contextlib
import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)  # polling a condition (the port) with a deadline
    raise AssertionError("server did not start listening in time")


@contextlib.contextmanager
def http_server(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real `corral serve --transport sse,http` process on a free loopback port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        corral_cmd("serve", "--transport", "sse,http", "--port", str(port), "--log-level", "WARNING", *args),
        env=env or corral_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


async def wait_until(check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait for a condition with a deadline (polled: it comes from outside this process)."""
    with anyio.fail_after(timeout, reason=f"timed out waiting until {what}"):
        while True:
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await anyio.sleep(0.05)
