"""State across server restarts, reconciliation with Docker, and failure reporting."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest
from mcp import Client, StdioServerParameters

from corral.config import DEFAULT_IMAGE, LABEL_NAMESPACE, Settings
from corral.server import build_server
from corral.service.containers import home_label
from tests.helpers import call_error, call_ok, corral_cmd, corral_env, run_cli


def stdio_server(home: Path) -> StdioServerParameters:
    cmd = corral_cmd("serve")
    return StdioServerParameters(command=cmd[0], args=cmd[1:], env=corral_env(home))


async def test_sandbox_and_its_files_survive_a_server_restart(home: Path) -> None:
    with anyio.fail_after(180):
        async with Client(stdio_server(home)) as first:
            sandbox = (await call_ok(first, "create_sandbox", name="keeper"))["id"]
            await call_ok(first, "write_file", sandbox=sandbox, path="state.txt", content="still here")
            await call_ok(first, "run_code", sandbox=sandbox, code="counter = 41")
        # The first server process has exited; a new one on the same data dir takes over.
        async with Client(stdio_server(home)) as second:
            read = await call_ok(second, "read_file", sandbox=sandbox, path="state.txt")
            assert read["content"] == "     1\tstill here\n"
            by_name = await call_ok(second, "get_sandbox", sandbox="keeper")
            assert by_name["id"] == sandbox and by_name["status"] == "running"
            value = await call_ok(second, "run_code", sandbox=sandbox, code="counter + 1")
            assert value["value"] == "42" and value["state_lost"] is False
            await call_ok(second, "delete_sandbox", sandbox=sandbox)


def test_stdio_mode_writes_only_protocol_to_stdout(home: Path) -> None:
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "get_sandbox", "arguments": {"sandbox": "nope"}},
        },
    ]
    proc = subprocess.Popen(
        corral_cmd("serve", "--log-level", "DEBUG"),
        env=corral_env(home),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    watchdog = threading.Timer(120, proc.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    # Drained as it comes: DEBUG logs (the warm pool's work among them) would fill the pipe and
    # block the server at its next log line.
    logged: list[str] = []
    drain = threading.Thread(target=lambda: logged.extend(proc.stderr or ()), daemon=True)
    drain.start()
    try:
        proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
        proc.stdin.flush()
        messages: list[dict[str, Any]] = []
        while {1, 2, 3} - {m.get("id") for m in messages}:
            line = proc.stdout.readline()
            assert line, "server closed stdout before answering"
            if line.strip():
                messages.append(json.loads(line))  # every stdout line must be a JSON-RPC message
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        rest = proc.stdout.read()
        drain.join(timeout=60)
        stderr = "".join(logged)
    finally:
        watchdog.cancel()
        proc.kill()
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    for line in rest.splitlines():
        assert not line.strip() or json.loads(line)["jsonrpc"] == "2.0"
    by_id = {m.get("id"): m for m in messages}
    assert by_id[3]["result"]["isError"] is True
    assert "DEBUG" in stderr or "INFO" in stderr  # the logs went to stderr


async def test_vanished_container_is_reported_as_lost(home: Path) -> None:
    async with Client(build_server(Settings(home=home))) as client:
        created = await call_ok(client, "create_sandbox")
        docker_client = docker.from_env()
        try:
            docker_client.containers.get(f"corral-{created['id']}").remove(force=True)
        finally:
            docker_client.close()
        info = await call_ok(client, "get_sandbox", sandbox=created["id"])
        assert info["status"] == "lost"
        message = await call_error(client, "run_command", sandbox=created["id"], command="true")
        assert "was lost" in message and "no sandbox with" not in message
        await call_ok(client, "delete_sandbox", sandbox=created["id"])


async def test_stopped_sandbox_restarts_on_use_with_its_files(home: Path) -> None:
    async with Client(build_server(Settings(home=home))) as client:
        sandbox = (await call_ok(client, "create_sandbox"))["id"]
        await call_ok(client, "write_file", sandbox=sandbox, path="kept.txt", content="kept")
        docker_client = docker.from_env()
        try:
            docker_client.containers.get(f"corral-{sandbox}").stop(timeout=1)
        finally:
            docker_client.close()
        assert (await call_ok(client, "get_sandbox", sandbox=sandbox))["status"] == "stopped"
        out = await call_ok(client, "run_command", sandbox=sandbox, command="cat kept.txt")
        assert out["stdout"] == "kept"
        await call_ok(client, "delete_sandbox", sandbox=sandbox)


def test_gc_removes_labelled_containers_without_a_record(home: Path) -> None:
    docker_client = docker.from_env()
    try:
        orphan = docker_client.containers.run(
            DEFAULT_IMAGE,
            ["sleep", "infinity"],
            detach=True,
            runtime="corral-runsc",
            network_mode="none",
            name=f"corral-orphan-{home_label(Settings(home=home))}",
            labels={
                f"{LABEL_NAMESPACE}.managed": "true",
                f"{LABEL_NAMESPACE}.sandbox": "sb-deadbeef",
                f"{LABEL_NAMESPACE}.owner": home_label(Settings(home=home)),
            },
        )
        dry = run_cli(home, "gc", "--dry-run")
        assert dry.returncode == 0 and orphan.name in dry.stdout and "would remove 1" in dry.stdout
        real = run_cli(home, "gc")
        assert real.returncode == 0 and "removed 1" in real.stdout
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(orphan.id)
    finally:
        docker_client.close()


async def test_docker_down_is_a_clear_tool_error(home: Path) -> None:
    settings = Settings(home=home, docker_url=f"unix://{home}/no-docker.sock")
    async with Client(build_server(settings)) as client:
        message = await call_error(client, "create_sandbox")
        assert "Docker engine is not reachable" in message or "cannot talk to the Docker engine" in message


async def test_missing_gvisor_runtime_says_how_to_fix_it(home: Path) -> None:
    async with Client(build_server(Settings(home=home, runtime="corral-runsc-missing"))) as client:
        message = await call_error(client, "create_sandbox")
        assert "not registered with Docker" in message and "setup-host.sh" in message


async def test_every_tool_call_is_audited(home: Path) -> None:
    settings = Settings(home=home)
    async with Client(build_server(settings)) as client:
        await call_error(client, "get_sandbox", sandbox="ghost")
        await call_ok(client, "list_sandboxes")
    from corral.sandbox_backend.store import Store

    store = await Store.open(settings.db_path)
    try:
        log = await store.audit.entries()
    finally:
        await store.close()
    assert [(e.tool, e.outcome) for e in log[:2]] == [("list_sandboxes", "ok"), ("get_sandbox", "error")]
    # The sandbox column holds resolved ids only: an unknown name resolves to none (the error says it).
    assert log[1].sandbox is None and "ghost" in (log[1].detail or "") and log[1].tenant == "local"
