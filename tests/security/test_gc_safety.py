"""Finding 7: `corral gc` next to a live server rewrote its ports, removed a live clone's helper,
and collapsed orphan helpers into one entry; finding 10: a killed server left its networked git
helper running."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import docker
from mcp import Client

from corral.config import LABEL_NAMESPACE, Settings
from corral.server import build_server
from corral.service.containers import home_label
from tests.helpers import call_ok, run_cli
from tests.integration.git_server import GitServer
from tests.security.host import RawServer, eventually, http_ok, labelled, wait_until

ALLOW_PRIVATE = "172.16.0.0/12,192.168.0.0/16"  # the test git server sits on a Docker network's gateway


def fake_helper(home: Path, instance: str) -> str:
    """A container labelled like a git helper of server `instance` (created, never started)."""
    client = docker.from_env()
    try:
        labels = {
            f"{LABEL_NAMESPACE}.managed": "true",
            f"{LABEL_NAMESPACE}.owner": home_label(Settings(home=home)),
            f"{LABEL_NAMESPACE}.instance": instance,
            f"{LABEL_NAMESPACE}.role": "git",
            f"{LABEL_NAMESPACE}.helper-for": "sb-00000000",
        }
        container = client.containers.create("corral/sandbox:2", ["true"], labels=labels, runtime="corral-runsc")
        return str(container.id)
    finally:
        client.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_gc_next_to_a_live_server_removes_only_dead_leftovers_each_by_id(home: Path) -> None:
    with anyio.fail_after(240):
        async with Client(build_server(Settings(home=home)), raise_exceptions=False) as live:
            box = (await call_ok(live, "create_sandbox"))["id"]
            await call_ok(live, "start_process", sandbox=box, command="python3 -m http.server 8000")
            port = await call_ok(live, "expose_port", sandbox=box, port=8000)
            await eventually(lambda: http_ok(port["url"]), 30, "the sandbox's web server")
            live_instance = labelled(home, sandbox=box)[0].labels[f"{LABEL_NAMESPACE}.instance"]
            dead = [fake_helper(home, "deadbeef") for _ in range(3)]
            busy = fake_helper(home, live_instance)  # e.g. a clone the live server is running

            db = home / "corral.db"
            before = digest(db)
            dry = await anyio.to_thread.run_sync(run_cli, home, "gc", "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert digest(db) == before  # a dry run writes nothing
            assert "would remove 3 leftover(s)" in dry.stdout, dry.stdout
            for container_id in dead:
                assert container_id[:12] in dry.stdout  # one entry each, keyed by container id
            assert busy[:12] in dry.stdout.split("kept", 1)[1]
            assert {c.id for c in labelled(home, role="git")} == {*dead, busy}

            done = await anyio.to_thread.run_sync(run_cli, home, "gc")
            assert done.returncode == 0, done.stderr
            assert "removed 3 leftover(s)" in done.stdout, done.stdout
            assert {c.id for c in labelled(home, role="git")} == {busy}
            # The live server's sandbox, port and record were left alone.
            listed = await call_ok(live, "list_ports", sandbox=box)
            assert listed["ports"][0]["url"] == port["url"] and listed["ports"][0]["active"] is True
            assert await http_ok(port["url"])
            assert (await call_ok(live, "run_command", sandbox=box, command="echo ok"))["stdout"] == "ok\n"


async def test_a_server_killed_mid_clone_leaves_no_networked_helper(home: Path, git_server: GitServer) -> None:
    with anyio.fail_after(240):
        server = await anyio.to_thread.run_sync(
            lambda: RawServer(home, env={"CORRAL_GIT_ALLOW_PRIVATE": ALLOW_PRIVATE})
        )
        try:
            reply = await anyio.to_thread.run_sync(server.wait, server.call("create_sandbox", name="cloner"), 120)
            assert not reply["result"]["isError"], reply
            server.call("git_clone", sandbox="cloner", url=git_server.url("public.git"), path="repo")
            helper = await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: labelled(home, role="git"), 60, "a helper")
            )
        finally:
            await anyio.to_thread.run_sync(server.kill)
        assert labelled(home, role="git")  # the killed server could not remove it
        settings = Settings(home=home, git_allow_private=tuple(ALLOW_PRIVATE.split(",")))
        async with Client(build_server(settings), raise_exceptions=False) as restarted:
            assert labelled(home, role="git") == []  # reaped at start: its server is gone
            assert labelled(home, "volumes", role="git") == []
            assert helper[0].id not in {c.id for c in labelled(home)}
            # The sandbox works, and the clone can simply be run again.
            cloned = await call_ok(restarted, "git_clone", sandbox="cloner", url=git_server.url("public.git"),
                                   path="repo2")
            assert cloned["commits"] >= 1
            assert labelled(home, role="git") == []
