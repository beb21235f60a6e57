"""Issue 8, low findings about tool inputs: every bad argument is a clear error, never a crash, never
silently changed or dropped, and errors do not show the server's resolved host paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from corral.config import Settings
from corral.server import build_server
from tests.helpers import call_ok, text_of
from tests.integration.cleanup import reap_containers

WAIT = 120


async def error_of(client: Client, tool: str, args: dict[str, Any]) -> str:
    with anyio.fail_after(WAIT):
        result = await client.call_tool(tool, args)
    text = text_of(result)
    assert result.is_error, f"{tool}({args}) was accepted: {result.structured_content}"
    assert "unexpectedly" not in text, text
    return text


async def test_git_clone_of_a_broken_url_is_a_clear_error(client: Client, sandbox: str) -> None:
    for url in ("http://[::1", "http://[::1]:99999/x", "https://exa mple.com/r", "http://:80/r", "http://[zz]/r"):
        message = await error_of(client, "git_clone", {"sandbox": sandbox, "url": url})
        assert "URL" in message, message


async def test_booleans_and_numeric_strings_are_not_numbers(client: Client, sandbox: str) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("expose_port", {"sandbox": sandbox, "port": True}, "port"),
        ("expose_port", {"sandbox": sandbox, "port": "8080"}, "port"),
        ("create_sandbox", {"memory_mb": True}, "memory_mb"),
        ("create_sandbox", {"cpus": "1"}, "cpus"),
        ("run_command", {"sandbox": sandbox, "command": "true", "timeout": "5"}, "timeout"),
        ("run_command", {"sandbox": sandbox, "command": 5}, "command"),
        ("write_file", {"sandbox": sandbox, "path": "x.txt", "content": "x", "append": 1}, "append"),
        ("read_file", {"sandbox": sandbox, "path": "x.txt", "start_line": 1.0}, "start_line"),
        ("git_log", {"sandbox": sandbox, "repo": "/workspace", "max_count": False}, "max_count"),
        ("create_sandbox", {"labels": {"a": 1}}, "labels"),
        ("git_clone", {"sandbox": sandbox, "url": "http://127.0.0.1/r", "credentials": {"password": "p", "x": 1}},
         "credentials"),
    ]
    for tool, args, field in cases:
        message = await error_of(client, tool, args)
        assert field in message, f"{tool} {args}: {message}"
    # The valid forms still work.
    assert (await call_ok(client, "run_command", sandbox=sandbox, command="echo ok", timeout=5))["stdout"] == "ok\n"


async def test_unknown_arguments_are_rejected_naming_the_valid_ones(client: Client, sandbox: str) -> None:
    before = len((await call_ok(client, "list_sandboxes"))["sandboxes"])
    message = await error_of(client, "create_sandbox", {"environment": {"A": "1"}, "disk_gb": 5})
    assert "disk_gb" in message and "environment" in message, message
    assert all(name in message for name in ("name", "image", "memory_mb", "cpus", "labels", "env")), message
    assert len((await call_ok(client, "list_sandboxes"))["sandboxes"]) == before, "a sandbox was created anyway"
    message = await error_of(client, "run_command", {"sandbox": sandbox, "command": "true", "shell": "/bin/sh"})
    assert "shell" in message and "command" in message and "timeout" in message
    message = await error_of(client, "list_sandboxes", {"all": True})
    assert "all" in message and "valid arguments: labels" in message
    message = await error_of(client, "list_snapshots", {"all": True})
    assert "all" in message and "no arguments" in message


async def test_errors_do_not_reveal_resolved_host_paths(tmp_path: Path) -> None:
    allowed = tmp_path / "shared"
    allowed.mkdir()
    (allowed / "link").symlink_to("/etc")
    home = Path.home()
    settings = Settings(home=tmp_path / "home", host_dirs=(allowed,))
    try:
        async with Client(build_server(settings), raise_exceptions=False) as own:
            box = (await call_ok(own, "create_sandbox"))["id"]
            for host_path, resolved in (("~/secret.txt", f"{home}/secret.txt"), ("link/passwd", "/etc/passwd")):
                message = await error_of(own, "upload", {"sandbox": box, "host_path": host_path, "path": "x"})
                assert "outside" in message and host_path in message, message
                assert resolved not in message, message
            message = await error_of(own, "upload", {"sandbox": box, "host_path": "missing.txt", "path": "x"})
            assert "missing.txt" in message and str(allowed) not in message, message
            await call_ok(own, "delete_sandbox", sandbox=box)
    finally:
        reap_containers(tmp_path / "home")


async def test_text_arguments_that_look_like_json_stay_text(client: Client, sandbox: str) -> None:
    path = "json-edit.json"
    await call_ok(client, "write_file", sandbox=sandbox, path=path, content='{"a": 1}\n')
    await call_ok(client, "edit_file", sandbox=sandbox, path=path, old_text='{"a": 1}', new_text='["b"]')
    assert (await call_ok(client, "read_file", sandbox=sandbox, path=path, raw=True))["content"] == '["b"]\n'
    # Objects sent as JSON text are still accepted where an object is expected (some clients do that).
    out = await call_ok(client, "run_command", sandbox=sandbox, command="echo $GREETING", env='{"GREETING": "hi"}')
    assert out["stdout"] == "hi\n"
