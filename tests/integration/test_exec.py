"""run_command and run_code basics: results, timeouts, output caps, persistence between calls."""

from __future__ import annotations

from mcp import Client

from tests.helpers import call_ok


async def test_run_command_separates_streams_and_exit_code(client: Client, sandbox: str) -> None:
    out = await call_ok(client, "run_command", sandbox=sandbox, command="echo out; echo err >&2; exit 3")
    assert (out["exit_code"], out["stdout"], out["stderr"]) == (3, "out\n", "err\n")
    assert out["timed_out"] is False and out["duration_ms"] > 0


async def test_run_command_honours_cwd_and_env(client: Client, sandbox: str) -> None:
    await call_ok(client, "run_command", sandbox=sandbox, command="mkdir -p /workspace/sub")
    out = await call_ok(client, "run_command", sandbox=sandbox, command='pwd; echo "$GREETING"',
                        cwd="sub", env={"GREETING": "hi there"})
    assert out["stdout"] == "/workspace/sub\nhi there\n"


async def test_files_written_by_one_call_are_seen_by_the_next(client: Client, sandbox: str) -> None:
    await call_ok(client, "run_command", sandbox=sandbox, command="echo persisted > note.txt")
    out = await call_ok(client, "run_command", sandbox=sandbox, command="cat /workspace/note.txt")
    assert out["stdout"] == "persisted\n"


async def test_timeout_kills_the_command_and_the_sandbox_stays_usable(client: Client, sandbox: str) -> None:
    out = await call_ok(client, "run_command", sandbox=sandbox, command="echo started; sleep 30", timeout=1)
    assert out["timed_out"] is True
    assert "started" in out["stdout"]
    assert out["duration_ms"] < 15000
    again = await call_ok(client, "run_command", sandbox=sandbox, command="echo alive")
    assert again["stdout"] == "alive\n"
    procs = await call_ok(client, "run_command", sandbox=sandbox, command="ps -eo args | grep -c '[s]leep 30'")
    assert procs["stdout"].strip() == "0"


async def test_huge_output_keeps_head_and_tail_with_a_marker(client: Client, sandbox: str) -> None:
    command = "python3 -c \"print('HEAD'); print('x' * 1_000_000); print('TAIL')\""
    out = await call_ok(client, "run_command", sandbox=sandbox, command=command)
    assert out["stdout"].startswith("HEAD")
    assert out["stdout"].rstrip().endswith("TAIL")
    assert out["stdout_dropped_bytes"] > 800_000
    assert len(out["stdout"]) <= 70 * 1024


async def test_run_code_python_keeps_state_and_returns_the_last_value(client: Client, sandbox: str) -> None:
    await call_ok(client, "run_code", sandbox=sandbox, code="import math\nx = 21")
    out = await call_ok(client, "run_code", sandbox=sandbox, code="print('hi')\nmath.floor(x * 2.5)")
    assert out["stdout"] == "hi\n" and out["value"] == "52"


async def test_run_code_in_each_language(client: Client, sandbox: str) -> None:
    js = await call_ok(client, "run_code", sandbox=sandbox, language="javascript", code="console.log(6 * 7)")
    assert js["stdout"].strip() == "42"
    sh = await call_ok(client, "run_code", sandbox=sandbox, language="bash", code="echo $((6 * 7))")
    assert sh["stdout"].strip() == "42"


async def test_python_exception_comes_back_as_a_clean_error(client: Client, sandbox: str) -> None:
    out = await call_ok(client, "run_code", sandbox=sandbox, code="def f():\n    1/0\nf()")
    assert out["error"]["ename"] == "ZeroDivisionError"
    assert "f()" in out["error"]["traceback"] and "driver" not in out["error"]["traceback"]
