"""Finding 8: one memory spike or fork bomb wiped the sandbox's state and was misreported ("lost
contact with the in-sandbox agent", once a Docker error read as a 1.3 GB frame)."""

from __future__ import annotations

import anyio
from mcp import Client

from tests.helpers import call_error, call_ok


async def test_a_memory_spike_or_fork_bomb_is_reported_as_such_and_the_sandbox_recovers(
    client: Client, sandbox: str
) -> None:
    with anyio.fail_after(300):
        box = (await call_ok(client, "create_sandbox", memory_mb=256))["id"]
        started = await call_ok(client, "start_process", sandbox=box, command="echo before; sleep 600")
        with anyio.fail_after(30):
            while "before" not in (await call_ok(client, "process_output", process=started["id"], wait=5))["output"]:
                pass
        await call_ok(client, "write_file", sandbox=box, path="kept.txt", content="kept")

        message = await call_error(client, "run_code", sandbox=box, code="hog = bytearray(600 * 1024 * 1024)")
        assert "ran out of memory" in message and "256 MiB" in message and "OOMKilled" in message, message
        assert "memory_mb" in message and "lost contact" not in message and "frame" not in message

        # The next call works; files and the spool of the earlier background process are kept.
        assert (await call_ok(client, "run_command", sandbox=box, command="echo ok"))["stdout"] == "ok\n"
        assert (await call_ok(client, "read_file", sandbox=box, path="kept.txt", raw=True))["content"] == "kept"
        earlier = await call_ok(client, "process_output", process=started["id"], since=0)
        assert earlier["output"] == "before\n" and earlier["running"] is False

        message = await call_error(
            client, "run_command", sandbox=box, command="bomb() { bomb | bomb & }; bomb; sleep 60", timeout=90
        )
        assert "starts again on the next call" in message and "lost contact" not in message, message
        assert "fork bomb" in message or "ran out of memory" in message, message
        assert (await call_ok(client, "run_command", sandbox=box, command="echo ok"))["stdout"] == "ok\n"
        assert (await call_ok(client, "run_code", sandbox=box, code="6 * 7"))["value"] == "42"
        # The other sandboxes did not notice.
        assert (await call_ok(client, "run_command", sandbox=sandbox, command="echo ok"))["stdout"] == "ok\n"
        await call_ok(client, "delete_sandbox", sandbox=box)
