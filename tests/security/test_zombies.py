"""Finding 9: PID 1 was `sleep infinity`, so orphaned processes stayed zombies for ever and ate
the sandbox's pids limit."""

from __future__ import annotations

import anyio
from mcp import Client

from tests.helpers import call_ok
from tests.security.host import eventually

COUNT_ZOMBIES = "ps -eo stat= | grep -c '^Z' || true"


async def test_orphaned_processes_are_reaped(client: Client, sandbox: str) -> None:
    with anyio.fail_after(120):
        orphans = "for i in $(seq 200); do (sleep 0.05 &); done; sleep 1"
        await call_ok(client, "run_command", sandbox=sandbox, command=orphans)

        async def no_zombies() -> bool:  # reaping is asynchronous
            out = await call_ok(client, "run_command", sandbox=sandbox, command=COUNT_ZOMBIES)
            return bool(out["stdout"] == "0\n")

        await eventually(no_zombies, 30, "no zombies")
        pid1 = await call_ok(client, "run_command", sandbox=sandbox, command="cat /proc/1/comm")
        assert pid1["stdout"].strip() != "sleep"
