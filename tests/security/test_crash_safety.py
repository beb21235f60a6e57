"""Finding 10: a server killed (SIGKILL) in the middle of a call left partial state: a sandbox the
client never got, a truncated upload at the final path that blocked the retry."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
import docker
from mcp import Client

from corral.config import Settings
from corral.server import build_server
from tests.helpers import call_error, call_ok
from tests.security.host import RawServer, labelled, wait_until


async def test_a_create_killed_half_way_is_rolled_back_at_the_next_start(home: Path) -> None:
    with anyio.fail_after(240):
        server = await anyio.to_thread.run_sync(RawServer, home)
        try:
            server.call("create_sandbox", name="half")
            # The container exists, the create has not answered yet: now the server dies.
            await anyio.to_thread.run_sync(lambda: wait_until(lambda: labelled(home, role="sandbox"), 60, "container"))
        finally:
            await anyio.to_thread.run_sync(server.kill)
        assert labelled(home, role="sandbox")  # what the dead server left
        async with Client(build_server(Settings(home=home)), raise_exceptions=False) as restarted:
            assert (await call_ok(restarted, "list_sandboxes"))["sandboxes"] == []
            assert labelled(home) == [] and labelled(home, "volumes") == []
            assert list((home / "disks").glob("*.img")) == []
            # The name the client never got is free again.
            made = await call_ok(restarted, "create_sandbox", name="half")
            assert made["status"] == "running"
            await call_ok(restarted, "delete_sandbox", sandbox="half")


def sandbox_files(container: str, pattern: str) -> str:
    client = docker.from_env()
    try:
        found = client.containers.get(container).exec_run(["find", "/workspace", "-name", pattern, "-size", "+0"])
        return found.output.decode().strip()
    finally:
        client.close()


async def test_an_upload_killed_half_way_leaves_no_partial_file_and_can_be_retried(home: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    payload = os.urandom(48 * 1024 * 1024)
    (shared / "big.bin").write_bytes(payload)
    env = {"CORRAL_HOST_DIRS": str(shared)}
    with anyio.fail_after(240):
        server = await anyio.to_thread.run_sync(lambda: RawServer(home, env=env))
        try:
            reply = await anyio.to_thread.run_sync(server.wait, server.call("create_sandbox", name="up"), 120)
            assert not reply["result"]["isError"], reply
            box = reply["result"]["structuredContent"]["id"]
            server.call("upload", sandbox="up", host_path="big.bin", path="big.bin")
            # Some of it has arrived (under whatever name): now the server dies.
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: sandbox_files(f"corral-{box}", "*big.bin*"), 60, "a partial upload", 0.1)
            )
        finally:
            await anyio.to_thread.run_sync(server.kill)
        settings = Settings(home=home, host_dirs=(shared,))
        async with Client(build_server(settings), raise_exceptions=False) as restarted:
            assert "nothing exists" in await call_error(restarted, "download", sandbox="up", path="big.bin",
                                                        host_path="back.bin")
            done = await call_ok(restarted, "upload", sandbox="up", host_path="big.bin", path="big.bin")
            assert done["bytes"] == len(payload)
            await call_ok(restarted, "download", sandbox="up", path="big.bin", host_path="back.bin")
            assert hashlib.sha256((shared / "back.bin").read_bytes()).digest() == hashlib.sha256(payload).digest()
            await call_ok(restarted, "delete_sandbox", sandbox="up")
