"""The stateful interpreter: notebook semantics, rich output, timeouts, contexts, streaming."""

from __future__ import annotations

import base64

import anyio
import docker
from mcp import Client
from mcp.types import ImageContent

from tests.helpers import call_ok


async def test_matplotlib_figures_come_back_as_pngs_every_one(client: Client, sandbox: str) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "for k in range(3):\n"
        "    plt.figure(); plt.plot([0, 1, 2], [0, k, 2 * k])\n"
        "print('plotted')"
    )
    result = await client.call_tool("run_code", {"sandbox": sandbox, "code": code})
    assert not result.is_error
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert len(images) == 3 and result.structured_content["images"] == 3
    assert all(base64.b64decode(i.data).startswith(b"\x89PNG") for i in images)
    again = await client.call_tool("run_code", {"sandbox": sandbox, "code": "1 + 1"})
    assert not [c for c in again.content if isinstance(c, ImageContent)]  # figures were closed


async def test_timeout_interrupts_and_keeps_state(client: Client, sandbox: str) -> None:
    await call_ok(client, "run_code", sandbox=sandbox, code="kept = 'yes'", context="slow")
    out = await call_ok(
        client,
        "run_code",
        sandbox=sandbox,
        context="slow",
        timeout=1,
        code="import time\nprint('working', flush=True)\nwhile True:\n    time.sleep(0.01)",
    )
    assert out["timed_out"] is True and out["state_lost"] is False
    assert "working" in out["stdout"]
    assert out["error"]["ename"] == "KeyboardInterrupt"
    after = await call_ok(client, "run_code", sandbox=sandbox, context="slow", code="kept")
    assert after["value"] == "'yes'"


async def test_wedged_interpreter_is_restarted_and_says_state_was_lost(client: Client, sandbox: str) -> None:
    await call_ok(client, "run_code", sandbox=sandbox, code="gone = 1", context="wedged")
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)"
    out = await call_ok(client, "run_code", sandbox=sandbox, context="wedged", timeout=1, code=code)
    assert out["timed_out"] is True and out["state_lost"] is True
    after = await call_ok(client, "run_code", sandbox=sandbox, context="wedged", code="'gone' in globals()")
    assert after["value"] == "False"


async def test_a_runaway_context_does_not_block_others(client: Client, sandbox: str) -> None:
    async def runaway() -> None:
        await call_ok(client, "run_code", sandbox=sandbox, context="busy", timeout=8, code="while True:\n    pass")

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runaway)
            # Wait until the runaway is really running, then use other contexts meanwhile.
            while not any(  # noqa: ASYNC110 - the condition lives in the sandbox; polled under fail_after
                c["context"] == "busy" and c["busy"]
                for c in (await call_ok(client, "list_contexts", sandbox=sandbox))["contexts"]
            ):
                await anyio.sleep(0.05)  # polling a condition under fail_after
            with anyio.fail_after(5):
                quick = await call_ok(client, "run_code", sandbox=sandbox, context="other", code="6 * 7")
                cmd = await call_ok(client, "run_command", sandbox=sandbox, command="echo free")
            assert quick["value"] == "42" and cmd["stdout"] == "free\n"
            await call_ok(client, "interrupt_context", sandbox=sandbox, context="busy")


async def test_contexts_are_separate_and_can_be_restarted(client: Client, sandbox: str) -> None:
    await call_ok(client, "run_code", sandbox=sandbox, code="who = 'a'", context="ctx-a")
    await call_ok(client, "run_code", sandbox=sandbox, code="who = 'b'", context="ctx-b")
    assert (await call_ok(client, "run_code", sandbox=sandbox, code="who", context="ctx-a"))["value"] == "'a'"
    names = {c["context"] for c in (await call_ok(client, "list_contexts", sandbox=sandbox))["contexts"]}
    assert {"ctx-a", "ctx-b"} <= names
    await call_ok(client, "restart_context", sandbox=sandbox, context="ctx-a")
    out = await call_ok(client, "run_code", sandbox=sandbox, code="who", context="ctx-a")
    assert out["error"]["ename"] == "NameError"


async def test_javascript_and_bash_keep_state(client: Client, sandbox: str) -> None:
    await call_ok(
        client, "run_code", sandbox=sandbox, language="javascript", code="let n = 40; function inc(x) { return x + 1 }"
    )
    js = await call_ok(client, "run_code", sandbox=sandbox, language="javascript", code="inc(n) + 1")
    assert js["value"] == "42"
    await call_ok(
        client,
        "run_code",
        sandbox=sandbox,
        language="bash",
        code='cd /tmp; GREETING=hello; greet() { echo "$GREETING $1"; }',
    )
    sh = await call_ok(client, "run_code", sandbox=sandbox, language="bash", code="greet world; pwd")
    assert sh["stdout"] == "hello world\n/tmp\n"


async def test_huge_repr_is_capped(client: Client, sandbox: str) -> None:
    out = await call_ok(client, "run_code", sandbox=sandbox, code="'x' * 1_000_000")
    assert (len(out["value"]) < 140_000 and "dropped" in out["value"]) or "truncated" in out["value"]


async def test_long_runs_stream_output_as_progress(client: Client, sandbox: str) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    code = "import time\nfor i in range(6):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.3)"
    result = await client.call_tool("run_code", {"sandbox": sandbox, "code": code}, progress_callback=on_progress)
    assert not result.is_error
    assert len(messages) >= 2 and "tick 0" in "".join(messages)


async def test_context_state_loss_after_a_sandbox_restart_is_reported(client: Client) -> None:
    sandbox = (await call_ok(client, "create_sandbox"))["id"]
    try:
        await call_ok(client, "run_code", sandbox=sandbox, code="value = 7")
        docker_client = docker.from_env()
        try:
            docker_client.containers.get(f"corral-{sandbox}").restart(timeout=1)
        finally:
            docker_client.close()
        out = await call_ok(client, "run_code", sandbox=sandbox, code="'value' in globals()")
        assert out["value"] == "False" and out["state_lost"] is True
        assert "restarted" in out["notice"]
        quiet = await call_ok(client, "run_code", sandbox=sandbox, code="1")
        assert quiet["notice"] is None and quiet["state_lost"] is False
    finally:
        await call_ok(client, "delete_sandbox", sandbox=sandbox)
