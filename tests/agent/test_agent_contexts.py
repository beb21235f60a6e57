"""The daemon's side of code contexts, driven with tests/agent/fake_drivers/python_driver.py,
plus smoke tests of the real drivers when they are present."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral.sandbox_backend.agent_channel import AgentChannel, AgentError
from tests.drivers.conftest import node_has_typescript

from .helpers import AGENT_PACKAGE, agent_env, eventually, open_channel, pid_alive, stdio_argv

pytestmark = pytest.mark.anyio

IGNORE_SIGINT = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"


async def run(
    agent: AgentChannel, code: str, context: str = "main", timeout: float = 20, **extra: Any
) -> dict[str, Any]:
    params = {"language": "python", "context": context, "code": code, "timeout": timeout, **extra}
    return await agent.request("code_run", params)


async def contexts(agent: AgentChannel) -> dict[str, dict[str, Any]]:
    listed = (await agent.request("context_list"))["contexts"]
    return {c["context"]: c for c in listed}


async def test_state_value_output_and_errors(agent: AgentChannel) -> None:
    first = await run(agent, "x = 20\nprint('hello')\nimport sys; print('warn', file=sys.stderr)")
    assert first["stdout"] == "hello\n" and first["stderr"] == "warn\n"
    assert first["value"] is None and first["error"] is None
    assert first["timed_out"] is first["restarted"] is first["state_lost"] is False
    assert (await run(agent, "x * 2 + 2"))["value"] == "42"
    failed = await run(agent, "1 / 0")
    assert failed["error"]["ename"] == "ZeroDivisionError"
    assert (await run(agent, "x"))["value"] == "20"


async def test_contexts_are_separate(agent: AgentChannel) -> None:
    await run(agent, "x = 'a'", context="a")
    await run(agent, "x = 'b'", context="b")
    assert (await run(agent, "x", context="a"))["value"] == "'a'"
    listed = await contexts(agent)
    assert sorted(listed) == ["a", "b"]
    assert listed["a"]["runs"] == 2 and listed["a"]["busy"] is False and pid_alive(listed["a"]["pid"])


async def test_output_is_capped_and_streamed(agent: AgentChannel) -> None:
    events: list[dict[str, Any]] = []
    code = "import time\nprint('a' * 5000)\ntime.sleep(0.6)\nprint('done')"
    params = {"language": "python", "context": "main", "code": code, "timeout": 20, "max_output": 100}
    result = await agent.request("code_run", params, on_event=events.append)
    assert result["stdout_dropped"] == 5001 + 5 - 100
    assert result["stdout"].startswith("a" * 50) and result["stdout"].endswith("done\n")
    assert events and events[0]["stream"] == "stdout" and events[0]["data"].startswith("aaaa")


async def test_timeout_interrupts_and_keeps_state(agent: AgentChannel) -> None:
    await run(agent, "x = 1")
    result = await run(agent, "import time\ntime.sleep(60)", timeout=0.5)
    assert result["timed_out"] is True and result["interrupted"] is True
    assert result["error"]["ename"] == "KeyboardInterrupt"
    assert result["restarted"] is False and result["state_lost"] is False
    assert (await run(agent, "x"))["value"] == "1"


async def test_unresponsive_interpreter_is_killed_and_restarted(agent: AgentChannel) -> None:
    await run(agent, "x = 1")
    old_pid = (await contexts(agent))["main"]["pid"]
    started = time.monotonic()
    result = await run(agent, IGNORE_SIGINT, timeout=0.5)
    assert time.monotonic() - started < 10
    assert result["timed_out"] is True and result["restarted"] is True and result["state_lost"] is True
    assert result["error"]["ename"] == "Timeout"
    await eventually(lambda: not pid_alive(old_pid), what="death of the old interpreter")
    assert (await run(agent, "x"))["error"]["ename"] == "NameError"
    assert (await contexts(agent))["main"]["pid"] != old_pid


async def test_a_runaway_context_blocks_nothing_else(agent: AgentChannel) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, agent, IGNORE_SIGINT, "runaway", 5.0)
        await _wait_busy(agent, "runaway")
        with anyio.fail_after(3):
            assert (await run(agent, "6 * 7", context="other"))["value"] == "42"
            await agent.request("exec", {"shell": "true", "timeout": 5})
            await agent.request("context_list")
        tg.cancel_scope.cancel()


async def test_second_run_on_a_busy_context_waits_its_turn(agent: AgentChannel) -> None:
    results: dict[str, dict[str, Any]] = {}

    async def first() -> None:
        results["first"] = await run(agent, "import time\ntime.sleep(1)\n'first'")

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await _wait_busy(agent, "main")
        with pytest.raises(AgentError) as busy:
            await run(agent, "'second'", timeout=0.2)
        assert busy.value.type == "busy"
        results["queued"] = await run(agent, "'queued'", timeout=10)
    assert results["first"]["value"] == "'first'" and results["queued"]["value"] == "'queued'"


async def _wait_busy(agent: AgentChannel, name: str) -> None:
    with anyio.fail_after(20):
        while not (await contexts(agent)).get(name, {}).get("busy"):  # noqa: ASYNC110 (agent-side state)
            await anyio.sleep(0.02)


async def test_context_interrupt(agent: AgentChannel) -> None:
    assert (await run(agent, "y = 3"))["error"] is None
    assert await agent.request("context_interrupt", {"language": "python", "context": "main"}) == {
        "interrupted": False
    }
    async with anyio.create_task_group() as tg:
        outcome: dict[str, Any] = {}

        async def long_run() -> None:
            outcome.update(await run(agent, "import time\ntime.sleep(60)", timeout=60))

        tg.start_soon(long_run)
        await _wait_busy(agent, "main")
        reply = await agent.request("context_interrupt", {"language": "python", "context": "main"})
        assert reply == {"interrupted": True}
    assert outcome["interrupted"] is True and outcome["timed_out"] is False
    assert outcome["error"]["ename"] == "KeyboardInterrupt"
    assert (await run(agent, "y"))["value"] == "3"


async def test_context_restart_and_close(agent: AgentChannel) -> None:
    await run(agent, "z = 1")
    old_pid = (await contexts(agent))["main"]["pid"]
    restarted = await agent.request("context_restart", {"language": "python", "context": "main"})
    assert restarted["pid"] != old_pid and pid_alive(restarted["pid"])
    assert (await run(agent, "z"))["error"]["ename"] == "NameError"
    await agent.request("context_close", {"language": "python", "context": "main"})
    assert await contexts(agent) == {}
    await eventually(lambda: not pid_alive(restarted["pid"]))
    with pytest.raises(AgentError) as unknown:
        await agent.request("context_restart", {"language": "python", "context": "main"})
    assert unknown.value.type == "unknown_context"


async def test_restart_during_a_run_ends_that_run(agent: AgentChannel) -> None:
    outcome: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:

        async def long_run() -> None:
            outcome.update(await run(agent, "import time\ntime.sleep(60)", timeout=60))

        tg.start_soon(long_run)
        await _wait_busy(agent, "main")
        await agent.request("context_restart", {"language": "python", "context": "main"})
    assert outcome["error"]["ename"] == "ContextRestarted" and outcome["state_lost"] is True
    assert (await run(agent, "1"))["value"] == "1"


async def test_interpreter_exit_is_reported_and_recovered(agent: AgentChannel) -> None:
    await run(agent, "w = 1")
    died = await run(agent, "print('bye', flush=True)\nimport os\nos._exit(3)")
    assert died["error"]["ename"] == "InterpreterExited" and "status 3" in died["error"]["evalue"]
    assert died["state_lost"] is True and died["stdout"] == "bye\n"
    fresh = await run(agent, "w")
    assert fresh["error"]["ename"] == "NameError" and fresh["state_lost"] is False


async def test_cancelled_code_run_leaves_the_context_usable(agent: AgentChannel) -> None:
    await run(agent, "v = 9")
    with anyio.move_on_after(0.5):
        await run(agent, "import time\ntime.sleep(60)", timeout=60)
    assert (await run(agent, "v"))["value"] == "9"


async def test_missing_driver_is_a_clear_error(agent_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-drivers"
    empty.mkdir()
    async with open_channel(stdio_argv(), agent_env(agent_dir, drivers=empty)) as agent:
        with pytest.raises(AgentError) as missing:
            await run(agent, "1")
        assert missing.value.type == "not_found" and "driver is missing" in missing.value.message
        assert await contexts(agent) == {}


REAL_DRIVERS = AGENT_PACKAGE / "drivers"
async def test_driver_outputs_are_checked_and_bounded(agent: AgentChannel) -> None:
    code = (
        "big = 'A' * (5 * 2**20)\n"
        "OUTPUTS = [{'main': True, 'text': 't', 'html': 7, 'png': big, 'chart': {'type': 'bar'}},\n"
        "           {'main': 'yes', 'jpeg': big}, {'png': 'x' * 100}, 'junk', {'main': False}, {'json': [1, 2]}]"
    )
    outputs = (await run(agent, code))["outputs"]
    assert outputs == [
        {"main": True, "text": "t", "png": "A" * (5 * 2**20), "chart": {"type": "bar"}},  # html: not text
        # the second output's image would pass the run's 8 MiB budget: dropped, and nothing is left of it
        {"main": False, "png": "x" * 100},
        {"main": False, "json": [1, 2]},
    ]


async def test_run_env_is_passed_to_the_driver(agent: AgentChannel) -> None:
    reply = await run(agent, "1", env={"A": "b"})
    assert reply["error"] is None
    bad = await agent_error(agent, "code_run", {"language": "python", "context": "main", "code": "1", "env": {"": "x"}})
    assert bad.type == "bad_request"


async def agent_error(agent: AgentChannel, op: str, params: dict[str, Any]) -> AgentError:
    with pytest.raises(AgentError) as caught:
        await agent.request(op, params)
    return caught.value


async def test_contexts_report_last_use_and_memory(agent: AgentChannel) -> None:
    await run(agent, "blob = bytearray(32 * 2**20)", context="mem")
    info = (await contexts(agent))["mem"]
    assert info["last_used"] >= info["created"]
    assert info["memory"] >= 32 * 2**20


REAL_CASES = [
    ("python", "python_driver.py", ["x = 6", "x * 7"], "42"),
    ("javascript", "node_driver.js", ["let x = 6", "x * 7"], "42"),
    ("typescript", "node_driver.js", ["let x: number = 6", "x * 7"], "42"),
    ("bash", "bash_driver.py", ["X=42", "echo $X"], None),
]


@pytest.mark.parametrize(("language", "script", "codes", "value"), REAL_CASES, ids=[c[0] for c in REAL_CASES])
async def test_real_driver_smoke(
    agent_dir: Path, language: str, script: str, codes: list[str], value: str | None
) -> None:
    if not (REAL_DRIVERS / script).is_file():
        pytest.skip(f"{script} is not written yet")
    if language in ("javascript", "typescript") and shutil.which("node") is None:
        pytest.skip("node is not installed")
    if language == "typescript" and not node_has_typescript():
        pytest.skip("the host's node has no 'typescript' package (the Docker tier runs TypeScript in the image)")
    async with open_channel(stdio_argv(), agent_env(agent_dir, drivers=None)) as agent:
        params = {"language": language, "context": "smoke", "timeout": 60}
        results = [await agent.request("code_run", {**params, "code": code}) for code in codes]
        assert all(r["error"] is None for r in results), results
        if value is not None:
            assert results[-1]["value"] == value
        else:
            assert results[-1]["stdout"] == "42\n"
        slow = {"python": "import time\ntime.sleep(60)", "javascript": "while (true) {}",
                "typescript": "while (true) {}", "bash": "sleep 60"}
        timed_out = await agent.request("code_run", {**params, "code": slow[language], "timeout": 1})
        assert timed_out["timed_out"] is True
        again = await agent.request("code_run", {**params, "code": codes[-1]})
        assert again["error"] is None
