"""Sandbox lifecycle and isolation defaults, through an in-process MCP client session."""

from __future__ import annotations

import anyio
from mcp import Client

from tests.helpers import call_error, call_ok


async def test_tools_are_listed_with_schemas_and_annotations(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ["create_sandbox", "list_sandboxes", "get_sandbox", "delete_sandbox", "run_code",
                 "run_command", "read_file", "write_file", "list_files"]:
        assert name in tools, name
        assert tools[name].description and tools[name].input_schema["type"] == "object", name
        assert tools[name].output_schema is None, name  # published only with CORRAL_OUTPUT_SCHEMAS
        assert tools[name].annotations is not None, name
    read, delete = tools["read_file"].annotations, tools["delete_sandbox"].annotations
    assert read is not None and read.read_only_hint is True
    assert delete is not None and delete.destructive_hint is True
    assert "sandbox" in tools["run_code"].input_schema["properties"]


async def test_a_sandbox_runs_under_gvisor(client: Client, sandbox: str) -> None:
    out = await call_ok(client, "run_command", sandbox=sandbox, command="uname -r")
    assert out["stdout"].strip() == "4.4.0"
    info = await call_ok(client, "get_sandbox", sandbox=sandbox)
    assert info["runtime"] == "corral-runsc" and info["isolation"] == "gvisor"


async def test_isolation_defaults(client: Client, sandbox: str) -> None:
    script = (
        "id -u; pwd; cat /proc/self/status | grep -E '^(NoNewPrivs|CapEff)'; "
        "ls /var/run/docker.sock 2>&1 || true; "
        "python3 -c 'import socket; print(sorted(i[1] for i in socket.if_nameindex()))'"
    )
    out = await call_ok(client, "run_command", sandbox=sandbox, command=script)
    lines = out["stdout"].splitlines()
    assert lines[0] == "1000"
    assert lines[1] == "/workspace"
    assert "No such file" in out["stdout"]  # no Docker socket
    assert "'lo'" in lines[-1] and "eth0" not in lines[-1]  # no network interface but loopback
    info = await call_ok(client, "get_sandbox", sandbox=sandbox)
    assert info["network"] == "none"
    assert info["memory_mb"] == 1024 and info["pids_limit"] == 2048


async def test_create_list_get_delete_by_id_and_name(client: Client) -> None:
    created = await call_ok(client, "create_sandbox", name="lifecycle", labels={"team": "qa"})
    try:
        assert created["id"].startswith("sb-") and created["status"] == "running"
        listed = await call_ok(client, "list_sandboxes")
        assert created["id"] in [s["id"] for s in listed["sandboxes"]]
        by_name = await call_ok(client, "get_sandbox", sandbox="lifecycle")
        assert by_name["id"] == created["id"] and by_name["labels"] == {"team": "qa"}
        duplicate = await call_error(client, "create_sandbox", name="lifecycle")
        assert "already exists" in duplicate
    finally:
        deleted = await call_ok(client, "delete_sandbox", sandbox="lifecycle")
    assert deleted["deleted"] is True
    missing = await call_error(client, "get_sandbox", sandbox=created["id"])
    assert "no sandbox with id or name" in missing


async def test_unknown_sandbox_error_lists_known_ids(client: Client, sandbox: str) -> None:
    message = await call_error(client, "run_command", sandbox="nope", command="true")
    assert "'nope'" in message and sandbox in message


async def test_bad_inputs_get_clear_errors(client: Client, sandbox: str) -> None:
    language = await call_error(client, "run_code", sandbox=sandbox, code="1", language="cobol")
    assert "cobol" in language or "language" in language
    assert "'python'" in language and "'javascript'" in language and "'bash'" in language
    assert "invalid sandbox name" in await call_error(client, "create_sandbox", name="Bad Name")
    assert "memory_mb must be a positive number" in await call_error(client, "create_sandbox", memory_mb=-1)
    assert "timeout must be between" in await call_error(
        client, "run_command", sandbox=sandbox, command="true", timeout=100000
    )
    assert "invalid path" in await call_error(client, "read_file", sandbox=sandbox, path="")


async def test_missing_image_is_explained(client: Client) -> None:
    # An image the operator did not allow is refused before Docker hears its name (the pull
    # cases are in tests/security/test_images.py).
    message = await call_error(client, "create_sandbox", image="127.0.0.1:1/corral-test/missing:1")
    assert "is not allowed on this server" in message and "CORRAL_IMAGES" in message


async def test_concurrent_creates_get_distinct_sandboxes(client: Client) -> None:
    ids: list[str] = []

    async def create() -> None:
        ids.append((await call_ok(client, "create_sandbox"))["id"])

    try:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(create)
        assert len(set(ids)) == 3
    finally:
        for sandbox_id in ids:
            await call_ok(client, "delete_sandbox", sandbox=sandbox_id)
