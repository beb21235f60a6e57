"""Tenants on a real `corral serve` (Streamable HTTP, real Docker + gVisor): two tokens, two
clients. Every tool answers one tenant's use of another's sandbox or process exactly like a missing
one; listings are disjoint; a revoked token fails inside its open session; quotas hold under
concurrency; the operator CLI works against the live server's data dir; the MCP Inspector CLI
connects with a tenant token."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Tool

from tests.helpers import REPO, call_error, call_ok, corral_env, http_server, run_cli, wait_until
from tests.integration.cleanup import reap_containers

INSPECTOR = REPO / "build" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
# Take no sandbox: checked by the listing test (names of volumes are per tenant: create_volume too).
LIST_TOOLS = {"create_sandbox", "list_sandboxes", "list_snapshots", "create_volume", "list_volumes"}
NAME_SCOPED = {"delete_snapshot": "snapshot", "delete_volume": "volume"}  # scoped by a snapshot's / volume's name
REFUSALS = (
    "no sandbox with id or name",
    "no process with id",
    "no snapshot named",
    "no volume named",
    "upload and download are off for tenant",  # host directories are not shared between tenants
)
# Beyond the required arguments, what makes a call valid enough to reach its sandbox.
VALID_EXTRAS: dict[str, dict[str, Any]] = {
    "edit_file": {"old_text": "x"},
    "move_path": {"destination": "y"},
    "update_network": {"network": "none"},
}
SECRET_CONTENT = "TOPSECRET-CONTENT-a91f"


@dataclass
class Server:
    home: Path
    url: str
    tokens: dict[str, str]


def token(home: Path, name: str, *flags: str) -> str:
    proc = run_cli(home, "token", "create", name, *flags)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("tenants-home")
    try:
        tokens = {
            "alice": token(home, "alice"),
            "bob": token(home, "bob"),
            "carol": token(home, "carol"),
            "quota": token(home, "quota", "--max-sandboxes", "3", "--max-executions", "1"),
        }
        with http_server(home) as url:
            yield Server(home, url, tokens)
    finally:
        reap_containers(home)


@asynccontextmanager
async def connect(server: Server, tenant: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {server.tokens[tenant]}"}
    async with httpx2.AsyncClient(headers=headers, timeout=180) as http, Client(
        streamable_http_client(f"{server.url}/mcp", http_client=http), raise_exceptions=False
    ) as client:
        yield client


@dataclass
class Owned:
    sandbox: str
    name: str
    process: str
    port: int
    snapshot: str
    volume: str


@pytest.fixture(scope="module")
async def alices(server: Server) -> AsyncIterator[Owned]:
    """Alice's sandbox with a file, a background process and an exposed port."""
    async with connect(server, "alice") as alice:
        sandbox = (await call_ok(alice, "create_sandbox", name="a-box"))["id"]
        await call_ok(alice, "write_file", sandbox="a-box", path="secret.txt", content=SECRET_CONTENT)
        process = (await call_ok(alice, "start_process", sandbox=sandbox,
                                 command="echo hello-from-proc; exec sleep 600"))["id"]
        await call_ok(alice, "expose_port", sandbox=sandbox, port=8000)
        await call_ok(alice, "process_output", process=process, wait=10)
        await call_ok(alice, "snapshot_sandbox", sandbox=sandbox, name="a-snap")
        await call_ok(alice, "create_volume", name="a-vol", size_mb=64)
    yield Owned(sandbox, "a-box", process, 8000, "a-snap", "a-vol")


def arguments(tool: Tool, sandbox: str, process: str) -> dict[str, Any]:
    """Minimal valid arguments for a tool, aimed at `sandbox` / `process`."""
    schema = tool.input_schema
    args: dict[str, Any] = {}
    for name in schema.get("required", []):
        kind = schema["properties"][name].get("type")
        if name == "sandbox":
            args[name] = sandbox
        elif name == "process":
            args[name] = process
        elif name == "url":
            args[name] = "http://127.0.0.1:9/repo.git"  # loopback: nothing is ever sent elsewhere
        elif name == "port":
            args[name] = 8000
        elif kind == "integer":
            args[name] = 1
        elif kind == "boolean":
            args[name] = False
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = "true" if name in ("command", "code") else "x"
    if "sandbox" in schema.get("properties", {}) and "sandbox" not in args:
        args["sandbox"] = sandbox  # list_ports: the optional filter
    return {**args, **VALID_EXTRAS.get(tool.name, {})}


async def test_every_tool_answers_another_tenants_sandbox_exactly_like_a_missing_one(
    server: Server, alices: Owned
) -> None:
    async with connect(server, "bob") as bob, connect(server, "alice") as alice:
        await call_ok(bob, "create_sandbox", name="b-box")
        tools = (await bob.list_tools()).tools
        checked = []
        for tool in tools:
            properties = tool.input_schema.get("properties", {})
            if tool.name in LIST_TOOLS:
                continue
            if tool.name in NAME_SCOPED:
                theirs = getattr(alices, NAME_SCOPED[tool.name])
                error = await call_error(bob, tool.name, name=theirs)
                assert any(sign in error for sign in REFUSALS), f"{tool.name} refused for another reason: {error}"
                assert error == (await call_error(bob, tool.name, name="no-such-one")).replace("no-such-one", theirs)
                checked.append(tool.name)
                continue
            assert "sandbox" in properties or "process" in properties, f"{tool.name}: how is it scoped to a tenant?"
            for theirs, missing in ((alices.sandbox, "sb-00000000"), (alices.name, "no-such-box")):
                error = await call_error(bob, tool.name, **arguments(tool, theirs, alices.process))
                assert any(sign in error for sign in REFUSALS), f"{tool.name} refused for another reason: {error}"
                expected = await call_error(bob, tool.name, **arguments(tool, missing, "p-000000"))
                assert error.replace(theirs, "REF").replace(alices.process, "PROC") == (
                    expected.replace(missing, "REF").replace("p-000000", "PROC")
                ), tool.name
                assert alices.sandbox not in error.replace(theirs, "") and "a-box" not in error.replace(theirs, "")
            checked.append(tool.name)
        assert set(checked) == {t.name for t in tools} - LIST_TOOLS
        assert len(checked) >= 30

        # Alice's sandbox, file, process and port are untouched.
        got = await call_ok(alice, "get_sandbox", sandbox=alices.sandbox)
        assert got["status"] == "running"
        read = await call_ok(alice, "read_file", sandbox="a-box", path="secret.txt", raw=True)
        assert read["content"] == SECRET_CONTENT
        [proc] = (await call_ok(alice, "list_processes", sandbox="a-box"))["processes"]
        assert proc["id"] == alices.process and proc["running"]
        ports = (await call_ok(alice, "list_ports"))["ports"]
        assert [(p["sandbox"], p["port"], p["active"]) for p in ports] == [(alices.sandbox, 8000, True)]
        # Alice's snapshot is hers alone: Bob cannot create from it, and his listing lacks it.
        refused = await call_error(bob, "create_sandbox", from_snapshot=alices.snapshot)
        assert refused == (await call_error(bob, "create_sandbox", from_snapshot="no-such-snap")).replace(
            "no-such-snap", alices.snapshot
        )
        assert (await call_ok(bob, "list_snapshots"))["snapshots"] == []
        # So is her volume: Bob cannot mount it, list it, or delete it.
        refused = await call_error(bob, "create_sandbox", volumes={alices.volume: "/data"})
        assert refused == (await call_error(bob, "create_sandbox", volumes={"no-such-vol": "/data"})).replace(
            "no-such-vol", alices.volume
        )
        assert (await call_ok(bob, "list_volumes"))["volumes"] == []
        assert [v["name"] for v in (await call_ok(alice, "list_volumes"))["volumes"]] == [alices.volume]
        assert [s["name"] for s in (await call_ok(alice, "list_snapshots"))["snapshots"]] == [alices.snapshot]


async def test_listings_are_disjoint(server: Server, alices: Owned) -> None:
    async with connect(server, "bob") as bob, connect(server, "alice") as alice:
        mine = {s["id"] for s in (await call_ok(alice, "list_sandboxes"))["sandboxes"]}
        theirs = {s["id"] for s in (await call_ok(bob, "list_sandboxes"))["sandboxes"]}
        assert alices.sandbox in mine and mine.isdisjoint(theirs)
        assert (await call_ok(bob, "list_ports"))["ports"] == []
        assert [p["sandbox"] for p in (await call_ok(alice, "list_ports"))["ports"]] == [alices.sandbox]


async def test_the_sse_transport_scopes_by_tenant_too(server: Server, alices: Owned) -> None:
    headers = {"Authorization": f"Bearer {server.tokens['bob']}"}
    async with Client(sse_client(f"{server.url}/sse", headers=headers), raise_exceptions=False) as bob:
        listed = {s["id"] for s in (await call_ok(bob, "list_sandboxes"))["sandboxes"]}
        assert alices.sandbox not in listed
        error = await call_error(bob, "read_file", sandbox=alices.sandbox, path="secret.txt")
        assert f"no sandbox with id or name {alices.sandbox!r}" in error and SECRET_CONTENT not in error


async def test_a_revoked_token_is_refused_on_the_next_request_of_an_open_session(server: Server) -> None:
    async with connect(server, "carol") as carol:
        await call_ok(carol, "list_sandboxes")
        proc = await anyio.to_thread.run_sync(lambda: run_cli(server.home, "token", "revoke", "carol"))
        assert proc.returncode == 0, proc.stderr
        with pytest.raises(Exception, match="error"):
            await carol.call_tool("list_sandboxes", {})
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{server.url}/mcp", json={}, headers={"Authorization": f"Bearer {server.tokens['carol']}"}
        )
        assert response.status_code == 401


async def test_quotas_hold_under_concurrency(server: Server) -> None:
    async with connect(server, "quota") as client:
        results: list[Any] = []

        async def create() -> None:
            results.append(await client.call_tool("create_sandbox", {}))

        with anyio.fail_after(300):
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(create)
        made = [r.structured_content["id"] for r in results if not r.is_error]
        refusals = [r.content[0].text for r in results if r.is_error]  # type: ignore[union-attr]
        assert len(made) == 3 and len(refusals) == 7, refusals
        assert all("may keep 3 sandbox(es) (quota sandboxes=3) and has 3" in text for text in refusals)

        runs: list[Any] = []

        async def run() -> None:
            runs.append(await client.call_tool("run_command", {"sandbox": made[0], "command": "sleep 3"}))

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(run)
        errors = [r.content[0].text for r in runs if r.is_error]  # type: ignore[union-attr]
        assert len(errors) == 1 and "may run 1 execution(s) at once (quota executions=1)" in errors[0]
        for sandbox in made:
            await call_ok(client, "delete_sandbox", sandbox=sandbox)


def cli_json(server: Server, *args: str) -> Any:
    proc = run_cli(server.home, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def cli_text(server: Server, *args: str) -> str:
    proc = run_cli(server.home, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def test_the_operator_cli_works_against_the_live_servers_data_dir(server: Server, alices: Owned) -> None:
    rows = await anyio.to_thread.run_sync(cli_json, server, "ls")
    mine = next(r for r in rows if r["id"] == alices.sandbox)
    assert (mine["tenant"], mine["status"], mine["name"]) == ("alice", "running", "a-box")
    assert mine["memory_used_mb"] is not None and mine["memory_limit_mb"] == 1024
    assert mine["disk_limit_mb"] == 10240
    assert set(mine["lease"]) == {"stops_at"}  # the default idle rule (30 min), no absolute lifetime
    assert {"alice", "bob"} <= {r["tenant"] for r in rows}
    human = await anyio.to_thread.run_sync(cli_text, server, "ls")
    assert alices.sandbox in human and "tenant" in human and "alice" in human and "stops" in human

    audit = await anyio.to_thread.run_sync(cli_json, server, "audit", "--tenant", "alice")
    wrote = next(e for e in audit if e["tool"] == "write_file")
    assert wrote["sandbox"] == alices.sandbox  # resolved from the name the call used
    assert "path=secret.txt" in wrote["summary"] and f"content=<{len(SECRET_CONTENT)} chars>" in wrote["summary"]
    assert all(e["tenant"] == "alice" for e in audit)
    everything = await anyio.to_thread.run_sync(cli_text, server, "audit", "--since", "1h")
    assert SECRET_CONTENT not in everything and "bob" in everything
    for secret in server.tokens.values():
        assert secret not in everything

    logs = await anyio.to_thread.run_sync(cli_json, server, "logs", "a-box")
    assert logs["sandbox"] == alices.sandbox
    assert any(e["tool"] == "start_process" for e in logs["audit"])
    [proc] = logs["processes"]
    assert proc["id"] == alices.process and "hello-from-proc" in proc["output_tail"]
    assert "hello-from-proc" in await anyio.to_thread.run_sync(cli_text, server, "logs", alices.sandbox)

    tokens = await anyio.to_thread.run_sync(cli_json, server, "token", "list")
    assert next(t for t in tokens if t["name"] == "alice")["last_used_at"] is not None
    listing = await anyio.to_thread.run_sync(cli_text, server, "token", "list")
    assert "alice" in listing and not any(secret in listing for secret in server.tokens.values())

    top = await anyio.to_thread.run_sync(cli_json, server, "top")
    assert alices.sandbox in {r["id"] for r in top}
    assert alices.sandbox in await anyio.to_thread.run_sync(cli_text, server, "top", "--iterations", "1")


async def test_operator_stop_start_and_rm_reach_the_live_server(server: Server) -> None:
    async with connect(server, "bob") as bob:
        sandbox = (await call_ok(bob, "create_sandbox", name="doomed"))["id"]
        exposed = await call_ok(bob, "expose_port", sandbox=sandbox, port=9000)
        stopped = await anyio.to_thread.run_sync(cli_json, server, "stop", sandbox)
        # The lifecycle's stop: its memory is kept (the exposed port's relay does not prevent it).
        expected = {"id": sandbox, "name": "doomed", "tenant": "bob", "status": "stopped", "memory_kept": True}
        assert stopped == [expected]
        assert (await call_ok(bob, "get_sandbox", sandbox=sandbox))["status"] == "stopped"
        started = await anyio.to_thread.run_sync(cli_json, server, "start", "doomed")
        assert started[0]["status"] == "running"
        out = await call_ok(bob, "run_command", sandbox=sandbox, command="echo alive")
        assert out["stdout"] == "alive\n"

        removed = await anyio.to_thread.run_sync(cli_json, server, "rm", sandbox)
        assert removed[0]["status"] == "deleted"
        assert "no sandbox with id or name" in await call_error(bob, "get_sandbox", sandbox=sandbox)
        # The live server closes the port it forwarded for it.
        await wait_until(lambda: not _accepts(exposed["host_port"]), 30, "the exposed port is closed")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_doctor_reports_a_healthy_machine(server: Server) -> None:
    report = cli_json(server, "doctor")
    assert report["ok"] is True, report
    names = {c["name"] for c in report["checks"] if c["ok"]}
    assert {"docker", "image", "gvisor corral-runsc", "gvisor corral-runsc-net"} <= names


@pytest.mark.skipif(not INSPECTOR.exists(), reason="run `make test` to install the Inspector CLI")
def test_the_inspector_cli_connects_with_a_tenant_token(server: Server, alices: Owned) -> None:
    proc = subprocess.run(
        [str(INSPECTOR), "--cli", f"{server.url}/mcp", "--transport", "http",
         "--header", f"Authorization: Bearer {server.tokens['alice']}",
         "--method", "tools/call", "--tool-name", "list_sandboxes"],
        env=corral_env(server.home, MCP_CATALOG_PATH=str(server.home / "catalog.json")),
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    listed = json.loads(proc.stdout)["structuredContent"]["sandboxes"]
    assert [s["id"] for s in listed] == [alices.sandbox]
    refused = subprocess.run(
        [str(INSPECTOR), "--cli", f"{server.url}/mcp", "--transport", "http",
         "--header", "Authorization: Bearer crl_not-a-token", "--method", "tools/list"],
        env=corral_env(server.home, MCP_CATALOG_PATH=str(server.home / "catalog.json")),
        capture_output=True, text=True, timeout=180,
    )
    assert refused.returncode != 0
