"""Issue 10's proof on the real engine: stop/start and fork with memory (gVisor checkpoints), env,
metrics, the warm pool, ephemeral sandboxes, an idle stop driven by an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import docker
import httpx
import pytest
from mcp import Client, StdioServerParameters

from corral.config import DEFAULT_IMAGE, Settings
from corral.server import build_server
from corral.service import open_services
from corral.service.clock import ManualClock
from corral.service.containers import LABEL_ROLE, home_label
from tests.helpers import call_error, call_noted, call_ok, corral_cmd, corral_env

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /workspace/count; sleep 0.2; done"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    """Poll a condition on the real engine (which has no event for it) until a deadline."""
    try:
        with anyio.fail_after(timeout):
            while not await check():  # noqa: ASYNC110
                await anyio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {timeout} s") from None


async def count(client: Client, sandbox: str) -> int:
    out = await call_ok(client, "run_command", sandbox=sandbox, command="cat /workspace/count")
    return int(out["stdout"] or 0)


async def counting(client: Client, sandbox: str) -> int:
    """The counter's value once it has visibly moved on (the process runs)."""
    first = await count(client, sandbox)

    async def moved() -> bool:
        return await count(client, sandbox) > first

    await eventually(moved, "the background counter moving on")
    return await count(client, sandbox)


@pytest.fixture
async def own(client: Client) -> AsyncIterator[list[str]]:
    """Sandboxes a test makes on the shared server, deleted after it."""
    made: list[str] = []
    yield made
    with anyio.CancelScope(shield=True):
        for sandbox in made:
            await client.call_tool("delete_sandbox", {"sandbox": sandbox})


async def test_stop_and_start_keep_files_variables_and_a_running_process(client: Client, own: list[str]) -> None:
    sandbox = (await call_ok(client, "create_sandbox"))["id"]
    own.append(sandbox)
    await call_ok(client, "write_file", sandbox=sandbox, path="kept.txt", content="files stay")
    await call_ok(client, "run_code", sandbox=sandbox, code="x = 41")
    await call_ok(client, "start_process", sandbox=sandbox, command=COUNTER)
    before = await counting(client, sandbox)

    stopped = await call_ok(client, "stop_sandbox", sandbox=sandbox)
    assert stopped["status"] == "stopped" and stopped["memory_kept"] is True, stopped
    assert (await call_ok(client, "get_sandbox", sandbox=sandbox))["memory_saved"] is True
    # Any tool resumes it, and says so; the variable and the process come back.
    value = await call_noted(client, "run_code", sandbox=sandbox, code="x + 1")
    assert value["value"] == "42" and value["state_lost"] is False, value
    assert any("resumed with its memory" in n for n in value["notices"])
    after = await counting(client, sandbox)
    assert after > before  # it went on from where it was, not from 1 ...
    read = await call_ok(client, "read_file", sandbox=sandbox, path="kept.txt", raw=True)
    assert read["content"] == "files stay"
    # ... and a second stop/start cycle works too (runsc keeps a restored sandbox paused otherwise).
    assert (await call_ok(client, "stop_sandbox", sandbox=sandbox))["memory_kept"] is True
    started = await call_ok(client, "start_sandbox", sandbox=sandbox)
    assert started["memory_kept"] is True and started["status"] == "running", started
    assert (await call_ok(client, "run_code", sandbox=sandbox, code="x"))["value"] == "41"
    # Without memory: files stay, the interpreter starts afresh and says so.
    assert (await call_ok(client, "stop_sandbox", sandbox=sandbox, memory=False))["memory_kept"] is False
    fresh = await call_noted(client, "run_code", sandbox=sandbox, code="'x' in globals()")
    assert fresh["value"] == "False" and fresh["state_lost"] is True
    assert any("without its memory" in n for n in fresh["notices"])


async def test_fork_carries_files_and_memory_then_both_diverge(client: Client, own: list[str]) -> None:
    source = (await call_ok(client, "create_sandbox"))["id"]
    own.append(source)
    await call_ok(client, "write_file", sandbox=source, path="shared.txt", content="from the source")
    await call_ok(client, "run_code", sandbox=source, code="x = 1")
    await call_ok(client, "start_process", sandbox=source, command=COUNTER)
    forked = await call_ok(client, "fork_sandbox", sandbox=source, name="fork-child")
    child = forked["id"]
    own.append(child)
    assert forked["memory_kept"] is True and forked["forked_from"] == source, forked
    for sandbox in (source, child):
        shared = await call_ok(client, "read_file", sandbox=sandbox, path="shared.txt", raw=True)
        assert shared["content"] == "from the source"
        assert (await call_ok(client, "run_code", sandbox=sandbox, code="x"))["value"] == "1"
        await counting(client, sandbox)  # the background process runs in both
    await call_ok(client, "run_code", sandbox=child, code="x = 100")
    await call_ok(client, "write_file", sandbox=child, path="shared.txt", content="changed in the fork")
    assert (await call_ok(client, "run_code", sandbox=source, code="x"))["value"] == "1"
    shared = await call_ok(client, "read_file", sandbox=source, path="shared.txt", raw=True)
    assert shared["content"] == "from the source"
    assert (await call_ok(client, "run_code", sandbox=child, code="x"))["value"] == "100"
    processes = await call_ok(client, "list_processes", sandbox=child)
    assert [p["running"] for p in processes["processes"]] == [True]


async def test_env_reaches_commands_interpreters_and_processes(client: Client, own: list[str]) -> None:
    created = await call_ok(client, "create_sandbox", env={"GREETING": "hello env", "DB_PASSWORD": "pw"})
    sandbox = created["id"]
    own.append(sandbox)
    assert created["env"] == {"GREETING": "hello env", "DB_PASSWORD": "***"}
    command = await call_ok(client, "run_command", sandbox=sandbox, command="echo $GREETING")
    assert command["stdout"] == "hello env\n"
    code = await call_ok(client, "run_code", sandbox=sandbox, code="import os; os.environ['GREETING']")
    assert code["value"] == "'hello env'"
    js = await call_ok(client, "run_code", sandbox=sandbox, language="javascript", code="process.env.GREETING")
    assert js["value"] == "'hello env'"
    proc = await call_ok(client, "start_process", sandbox=sandbox, command="echo $GREETING $DB_PASSWORD")
    output = await call_ok(client, "process_output", process=proc["id"], wait=20)
    assert output["output"] == "hello env pw\n"


async def test_a_named_volume_is_shared_by_two_sandboxes_and_outlives_them(client: Client) -> None:
    made = await call_ok(client, "create_volume", name="shared-data", size_mb=64)
    assert made["size_mb"] == 64 and made["mounted_by"] == []
    boxes: list[str] = []
    try:
        for path in ("/data", "/workspace/shared"):
            created = await call_ok(client, "create_sandbox", volumes={"shared-data": path})
            boxes.append(created["id"])
        writer, reader = boxes
        await call_ok(client, "run_command", sandbox=writer, command="echo from-writer > /data/note.txt")
        out = await call_ok(client, "run_command", sandbox=reader, command="cat /workspace/shared/note.txt")
        assert out["stdout"] == "from-writer\n", out
        # Sized like /workspace: writing past 64 MiB fails inside, never on the host's disk.
        fill = "head -c 80M /dev/zero > /data/big"
        full = await call_ok(client, "run_command", sandbox=writer, command=fill)
        assert "No space left on device" in full["stderr"], full
        await call_ok(client, "run_command", sandbox=writer, command="rm -f /data/big")
        refused = await call_error(client, "delete_volume", name="shared-data")
        assert f"mounted by sandbox(es) {writer}, {reader}" in refused
        listed = (await call_ok(client, "list_volumes"))["volumes"]
        assert [(v["name"], sorted(v["mounted_by"])) for v in listed] == [("shared-data", sorted(boxes))]
        for sandbox in boxes:
            await call_ok(client, "delete_sandbox", sandbox=sandbox)
        boxes = []
        again = await call_ok(client, "create_sandbox", volumes={"shared-data": "/data"})
        boxes.append(again["id"])
        out = await call_ok(client, "run_command", sandbox=again["id"], command="cat /data/note.txt")
        assert out["stdout"] == "from-writer\n"  # kept past the sandboxes that wrote it
    finally:
        for sandbox in boxes:
            await client.call_tool("delete_sandbox", {"sandbox": sandbox})
    assert (await call_ok(client, "delete_volume", name="shared-data"))["name"] == "shared-data"
    assert (await call_ok(client, "list_volumes"))["volumes"] == []


async def test_metrics_see_a_200_mb_allocation(client: Client, sandbox: str) -> None:
    before = await call_ok(client, "sandbox_metrics", sandbox=sandbox)
    assert before["status"] == "running" and before["memory_limit_mb"] == 1024
    assert before["processes"] >= 2 and before["pids"] > 0 and before["uptime_s"] > 0
    # /workspace is its own sized volume: its limit is the sandbox's disk_mb, its use what was written.
    assert before["disk_limit_mb"] > before["disk_mb"] >= 0 and before["net_rx_bytes"] is None
    await call_ok(client, "run_command", sandbox=sandbox, command="head -c 3000000 /dev/urandom > metrics.bin")
    await call_ok(client, "run_code", sandbox=sandbox, context="metrics", code="blob = bytearray(200 * 1024 * 1024)")
    try:
        after = await call_ok(client, "sandbox_metrics", sandbox=sandbox)
        assert after["memory_mb"] - before["memory_mb"] >= 180, (before, after)
        assert after["disk_mb"] - before["disk_mb"] >= 2.5, (before, after)
        line = (await call_ok(client, "get_sandbox", sandbox=sandbox))["metrics"]
        assert line.startswith("cpu ") and "/1024 MiB" in line and "processes" in line
    finally:
        await call_ok(client, "run_code", sandbox=sandbox, context="metrics", code="del blob")
        await call_ok(client, "run_command", sandbox=sandbox, command="rm -f metrics.bin")


async def test_the_warm_pool_hands_over_a_started_sandbox_and_refills(home: Path) -> None:
    owner = home_label(Settings(home=home))
    engine = docker.from_env()

    def members() -> set[str]:
        labels = [f"dev.corral.owner={owner}", f"{LABEL_ROLE}=pool"]
        return {c.id for c in engine.containers.list(all=True, filters={"label": labels})}

    async with Client(build_server(Settings(home=home, pool_size=1)), raise_exceptions=False) as client:

        async def ready() -> bool:
            async with open_services(Settings(home=home), serve=False, read_only=True) as view:
                return any(m.ready for m in await view.reconciler._pool.list())  # type: ignore[union-attr]

        await eventually(ready, "the pool filling")
        waiting = members()
        created = await call_ok(client, "create_sandbox", name="from-pool")
        info = engine.containers.get(f"corral-{created['id']}")
        assert info.id in waiting  # the very container that waited in the pool
        first = await call_ok(client, "run_code", sandbox="from-pool", code="print(1)")
        assert first["stdout"] == "1\n" and first["state_lost"] is False
        await eventually(ready, "the pool refilling")
        assert len(members() - {info.id}) == 1
    engine.close()


def stdio_server(home: Path) -> StdioServerParameters:
    cmd = corral_cmd("serve")
    return StdioServerParameters(command=cmd[0], args=cmd[1:], env=corral_env(home, CORRAL_POOL_SIZE="0"))


async def test_an_ephemeral_sandbox_goes_when_its_stdio_client_exits(home: Path) -> None:
    engine = docker.from_env()
    with anyio.fail_after(180):
        async with Client(stdio_server(home)) as client:
            gone = (await call_ok(client, "create_sandbox", ephemeral=True))["id"]
            kept = (await call_ok(client, "create_sandbox"))["id"]
            assert engine.containers.get(f"corral-{gone}").status == "running"
    mine = {"label": f"dev.corral.owner={home_label(Settings(home=home))}"}
    names = {c.name for c in engine.containers.list(all=True, filters=mine)}
    engine.close()
    assert names == {f"corral-{kept}"}


async def test_the_reaper_stops_an_idle_sandbox_with_its_memory(home: Path) -> None:
    clock = ManualClock()
    async with open_services(Settings(home=home), clock=clock) as services:
        rec = await services.sandboxes.create(idle_stop_after=300)
        await services.execution.run_code(rec.id, "y = 7")
        clock.advance(301)

        async def stopped_with_memory() -> bool:
            now = await services.sandboxes.get(rec.id)
            return now.status == "stopped" and now.checkpoint is not None

        await eventually(stopped_with_memory, "the idle stop")
        value, _ = await services.execution.run_code(rec.id, "y * 6")
        assert value.value == "42" and value.state_lost is False
        await services.sandboxes.delete(rec.id)


async def test_a_snapshot_gives_new_sandboxes_its_files_and_leaves_the_base_image(
    client: Client, own: list[str]
) -> None:
    engine = docker.from_env()
    base_before = engine.images.get(DEFAULT_IMAGE).id
    source = (await call_ok(client, "create_sandbox"))["id"]
    own.append(source)
    await call_ok(client, "write_file", sandbox=source, path="data/model.txt", content="trained")
    await call_ok(client, "snapshot_sandbox", sandbox=source, name="trained-v1")
    try:
        child = (await call_ok(client, "create_sandbox", from_snapshot="trained-v1"))["id"]
        own.append(child)
        model = await call_ok(client, "read_file", sandbox=child, path="data/model.txt", raw=True)
        assert model["content"] == "trained"
        fresh = (await call_ok(client, "create_sandbox"))["id"]
        own.append(fresh)
        listing = await call_ok(client, "run_command", sandbox=fresh, command="ls /workspace/data 2>&1 || true")
        assert "No such file" in listing["stdout"]
        assert engine.images.get(DEFAULT_IMAGE).id == base_before
    finally:
        for sandbox in own[1:]:
            await client.call_tool("delete_sandbox", {"sandbox": sandbox})
        del own[1:]
        await call_ok(client, "delete_snapshot", name="trained-v1")
        engine.close()


async def test_an_exposed_port_stays_and_a_connection_resumes_the_stopped_sandbox(
    client: Client, own: list[str]
) -> None:
    sandbox = (await call_ok(client, "create_sandbox"))["id"]
    own.append(sandbox)
    await call_ok(client, "write_file", sandbox=sandbox, path="site/index.html", content="served from memory")
    server = await call_ok(client, "start_process", sandbox=sandbox, cwd="site",
                           command="exec python3 -u -m http.server 8124 --bind 127.0.0.1")
    await eventually(lambda: _serving(client, server["id"]), "the web server starting")
    url = (await call_ok(client, "expose_port", sandbox=sandbox, port=8124))["url"]
    async with httpx.AsyncClient(trust_env=False, timeout=60) as web:  # loopback only, never a proxy
        assert (await web.get(url + "index.html")).text == "served from memory"
        assert (await call_ok(client, "stop_sandbox", sandbox=sandbox))["memory_kept"] is True
        # The listener stayed; the connection resumes the sandbox, whose server process was restored.
        with anyio.fail_after(120):
            assert (await web.get(url + "index.html")).text == "served from memory"
    assert (await call_ok(client, "get_sandbox", sandbox=sandbox))["status"] == "running"


async def _serving(client: Client, process: str) -> bool:
    out = await call_ok(client, "process_output", process=process, since=0)
    return "Serving HTTP" in out["output"]
