"""A running sandbox whose agent code is not this Corral's (made by an older Corral, before the
agent was installed root-owned) gets it installed without a restart: its interpreter state and
background processes carry on."""

from __future__ import annotations

from pathlib import Path

import anyio
import docker
from mcp import Client

from corral.agent.bundle import AGENT_ROOT, AGENT_VERSION
from corral.config import Settings
from corral.server import build_server
from tests.helpers import call_ok


async def test_missing_agent_code_is_installed_into_a_running_sandbox_without_a_restart(home: Path) -> None:
    settings = Settings(home=home)
    with anyio.fail_after(180):
        async with Client(build_server(settings), raise_exceptions=False) as first:
            box = (await call_ok(first, "create_sandbox"))["id"]
            await call_ok(first, "run_code", sandbox=box, code="counter = 41")
            proc = await call_ok(first, "start_process", sandbox=box, command="sleep 600")
        client = docker.from_env()
        try:
            container = client.containers.get(f"corral-{box}")
            gone = container.exec_run(["rm", "-rf", f"{AGENT_ROOT}/v-{AGENT_VERSION}"], user="0:0")
            assert gone.exit_code == 0, gone.output
        finally:
            client.close()
        async with Client(build_server(settings), raise_exceptions=False) as second:
            value = await call_ok(second, "run_code", sandbox=box, code="counter + 1")
            assert value["value"] == "42" and value["state_lost"] is False
            listed = await call_ok(second, "list_processes", sandbox=box)
            assert [p["running"] for p in listed["processes"] if p["id"] == proc["id"]] == [True]
            where = await call_ok(second, "run_command", sandbox=box,
                                  command=f"stat -c '%U %a' {AGENT_ROOT}/v-{AGENT_VERSION}/corral_agent/VERSION")
            assert where["stdout"] == "root 644\n"  # installed by root, not writable by the sandbox
            await call_ok(second, "delete_sandbox", sandbox=box)
