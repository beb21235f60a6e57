"""Finding 12: two servers on one data dir (every Claude Code window starts one) could wedge each
other. Now it is a supported mode: both answer every call, nothing is lost, and what one server
leaves (its ports when it dies) the other takes over."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from corral.config import Settings
from corral.server import build_server
from tests.helpers import corral_cmd, corral_env, run_cli, text_of
from tests.security.host import RawServer, eventually, http_ok, labelled

SOAK = 60.0


def stdio(home: Path) -> StdioServerParameters:
    cmd = corral_cmd("serve", "--log-level", "WARNING")
    return StdioServerParameters(command=cmd[0], args=cmd[1:], env=corral_env(home))


async def test_two_servers_on_one_data_dir_answer_every_call_and_lose_nothing(home: Path) -> None:
    calls: Counter[str] = Counter()
    kept: dict[str, str] = {}  # sandbox id -> the content of its file

    async with Client(stdio(home)) as first, Client(stdio(home)) as second:
        servers = (first, second)

        async def call(server: Client, tool: str, expect_error: bool = False, **args: Any) -> Any:
            result = await server.call_tool(tool, args)
            calls[tool] += 1
            assert result.is_error == expect_error, f"{tool} {args}: {text_of(result)}"
            return text_of(result) if expect_error else result.structured_content

        async def worker(number: int) -> None:
            mine, other = servers[number % 2], servers[(number + 1) % 2]
            end = time.monotonic() + SOAK
            round_ = 0
            while time.monotonic() < end:
                round_ += 1
                name = f"w{number}-{round_}"
                box = (await call(mine, "create_sandbox", name=name, memory_mb=256, disk_mb=64))["id"]
                await call(mine, "write_file", sandbox=box, path="f.txt", content=name)
                assert (await call(other, "read_file", sandbox=box, path="f.txt", raw=True))["content"] == name
                ran = await call(other, "run_command", sandbox=box, command="cat f.txt; echo; echo $((6*7))")
                assert ran["stdout"] == f"{name}\n42\n"
                started = await call(mine, "start_process", sandbox=box, command="echo spooled")
                if round_ % 2 == 1:
                    message = await call(other, "run_code", True, sandbox=box, code="hog = bytearray(500 << 20)")
                    assert "ran out of memory" in message, message
                output = await call(other, "process_output", process=started["id"], since=0, wait=10)
                assert output["output"] == "spooled\n", output
                assert (await call(mine, "read_file", sandbox=box, path="f.txt", raw=True))["content"] == name
                if round_ % 3 == 0:
                    kept[box] = name
                else:
                    await call(other if round_ % 2 else mine, "delete_sandbox", sandbox=box)

        with anyio.fail_after(SOAK + 240):
            async with anyio.create_task_group() as tg:
                for number in range(4):
                    tg.start_soon(worker, number)
            # Both see the same sandboxes, with their files; nothing deleted lingers anywhere.
            for server in servers:
                listed = {s["id"] for s in (await call(server, "list_sandboxes"))["sandboxes"]}
                assert listed == set(kept)
            for box, name in kept.items():
                assert (await call(second, "read_file", sandbox=box, path="f.txt", raw=True))["content"] == name
                await call(first, "delete_sandbox", sandbox=box)
            # What the servers still hold is their warm pools' members, nothing else.
            roles = {thing.labels.get("dev.corral.role") for thing in labelled(home)}
            assert roles <= {"pool"}, roles
    # Both servers have exited and drained their pools: nothing of theirs is left.
    assert labelled(home) == [] and labelled(home, "volumes") == []
    gc = await anyio.to_thread.run_sync(run_cli, home, "gc", "--dry-run")
    assert "would remove 0 leftover(s)" in gc.stdout, gc.stdout
    print(f"\ntwo servers, {SOAK:.0f} s: {sum(calls.values())} calls, all answered: {dict(calls)}")
    assert calls["create_sandbox"] >= 8 and calls["run_code"] >= 4


async def test_a_dead_servers_ports_are_taken_over_by_the_live_one(home: Path) -> None:
    with anyio.fail_after(180):
        server = await anyio.to_thread.run_sync(RawServer, home)
        try:
            reply = await anyio.to_thread.run_sync(server.wait, server.call("create_sandbox", name="web"), 120)
            assert not reply["result"]["isError"], reply
            server.call("start_process", sandbox="web", command="python3 -m http.server 8000")
            request = server.call("expose_port", sandbox="web", port=8000)
            exposed = await anyio.to_thread.run_sync(server.wait, request, 60)
            url = exposed["result"]["structuredContent"]["url"]
            async with Client(build_server(Settings(home=home)), raise_exceptions=False) as survivor:
                listed = (await survivor.call_tool("list_ports", {"sandbox": "web"})).structured_content
                assert listed["ports"][0]["active"] is True  # the other, live server listens for it
                await anyio.to_thread.run_sync(server.kill)
                # Taken over within a heartbeat, on the same host port.
                await eventually(lambda: http_ok(url), 60, "the port to be taken over", every=0.5)
                listed = (await survivor.call_tool("list_ports", {"sandbox": "web"})).structured_content
                assert listed["ports"][0]["url"] == url and listed["ports"][0]["active"] is True
                await survivor.call_tool("delete_sandbox", {"sandbox": "web"})
        finally:
            await anyio.to_thread.run_sync(server.kill)
