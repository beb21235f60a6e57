"""exec, concurrency, cancellation and request validation against the agent in serve-stdio mode."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral.agent.bundle import AGENT_VERSION
from corral.sandbox_backend.agent_channel import AgentChannel, AgentError

from .helpers import agent_env, agent_process, eventually, pid_alive, read_to_end, stdio_argv

pytestmark = pytest.mark.anyio


async def test_hello_reports_the_bundle_version(agent: AgentChannel) -> None:
    hello = await agent.request("hello")
    assert hello["version"] == AGENT_VERSION
    assert hello["protocol"] == 1
    assert hello["mode"] == "serve-stdio"
    assert pid_alive(hello["pid"])


async def test_exec_shell_returns_output_and_exit_code(agent: AgentChannel) -> None:
    result = await agent.request("exec", {"shell": "echo out; echo err >&2; exit 3", "timeout": 10})
    assert result["stdout"] == "out\n"
    assert result["stderr"] == "err\n"
    assert result["exit_code"] == 3
    assert result["timed_out"] is False
    assert result["stdout_dropped"] == result["stderr_dropped"] == 0


async def test_exec_argv_cwd_env_and_stdin(agent: AgentChannel, work_dir: Path) -> None:
    result = await agent.request(
        "exec",
        {
            "argv": ["sh", "-c", 'pwd; echo "$GREETING"; cat'],
            "cwd": str(work_dir),
            "env": {"GREETING": "hi there"},
            "stdin_b64": "ZnJvbSBzdGRpbg==",  # "from stdin"
            "timeout": 10,
        },
    )
    assert result["stdout"] == f"{work_dir}\nhi there\nfrom stdin"
    assert result["exit_code"] == 0


async def test_exec_reports_a_signal_as_negative_exit_code(agent: AgentChannel) -> None:
    result = await agent.request("exec", {"shell": "kill -TERM $$", "timeout": 10})
    assert result["exit_code"] == -15


async def test_exec_missing_program_and_cwd_are_errors(agent: AgentChannel, work_dir: Path) -> None:
    with pytest.raises(AgentError) as missing:
        await agent.request("exec", {"argv": ["/no/such/program"], "timeout": 5})
    assert (missing.value.type, missing.value.field) == ("not_found", "argv")
    with pytest.raises(AgentError) as bad_cwd:
        await agent.request("exec", {"shell": "true", "cwd": str(work_dir / "nope"), "timeout": 5})
    assert (bad_cwd.value.type, bad_cwd.value.field) == ("not_found", "cwd")


async def test_exec_timeout_kills_the_process_group(agent: AgentChannel, work_dir: Path) -> None:
    pid_file = work_dir / "background.pid"
    started = time.monotonic()
    result = await agent.request(
        "exec", {"shell": f"sleep 60 & echo $! > {pid_file}; sleep 60", "timeout": 0.5}
    )
    assert result["timed_out"] is True
    assert result["exit_code"] == -9
    assert time.monotonic() - started < 10
    background = int(pid_file.read_text())
    await eventually(lambda: not pid_alive(background), what="death of the background job")
    again = await agent.request("exec", {"shell": "echo still here", "timeout": 5})
    assert again["stdout"] == "still here\n"


async def test_exec_output_keeps_head_and_tail_and_counts_dropped_bytes(agent: AgentChannel) -> None:
    script = "printf HEAD; head -c 100000 /dev/zero | tr '\\0' x; printf TAIL; printf oops >&2"
    result = await agent.request("exec", {"shell": script, "timeout": 10, "max_output": 1000})
    total = 4 + 100000 + 4
    assert result["stdout_dropped"] == total - 1000
    stdout = result["stdout"]
    assert stdout.startswith("HEAD" + "x" * 496)
    assert stdout.endswith("x" * 496 + "TAIL")
    assert f"[... {total - 1000} bytes omitted ...]" in stdout
    assert result["stderr"] == "oops"
    assert result["stderr_dropped"] == 0


async def test_exec_with_zero_output_limit_counts_everything(agent: AgentChannel) -> None:
    result = await agent.request("exec", {"shell": "printf 12345", "timeout": 5, "max_output": 0})
    assert result["stdout_dropped"] == 5


async def test_exec_streams_output_events(agent: AgentChannel) -> None:
    events: list[dict[str, Any]] = []

    async def collect(event: dict[str, Any]) -> None:
        events.append(event)

    script = "for i in 1 2 3 4; do echo line$i; sleep 0.3; done"
    result = await agent.request("exec", {"shell": script, "timeout": 20}, on_event=collect)
    assert result["stdout"] == "line1\nline2\nline3\nline4\n"
    assert events, "expected progress events"
    assert all(e["event"] == "output" and e["stream"] == "stdout" for e in events)
    streamed = "".join(e["data"] for e in events)
    assert result["stdout"].startswith(streamed) and streamed.startswith("line1\n")


async def test_exec_without_streaming_sends_no_events(agent: AgentChannel) -> None:
    events: list[dict[str, Any]] = []
    script = "echo a; sleep 0.6; echo b"
    await agent.request("exec", {"shell": script, "timeout": 10, "stream": False}, on_event=events.append)
    assert events == []


async def test_requests_run_concurrently(agent: AgentChannel) -> None:
    started = time.monotonic()
    results: list[dict[str, Any]] = []

    async def sleeper() -> None:
        results.append(await agent.request("exec", {"shell": "sleep 1; echo done", "timeout": 10}))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(sleeper)
        with anyio.fail_after(0.9):  # answered while the five sleeps run
            await agent.request("hello")
    assert [r["stdout"] for r in results] == ["done\n"] * 5
    assert time.monotonic() - started < 4


async def test_cancelling_the_caller_kills_the_command(agent: AgentChannel, work_dir: Path) -> None:
    pid_file = work_dir / "sleep.pid"
    async with anyio.create_task_group() as tg:

        async def long_exec() -> None:
            await agent.request("exec", {"shell": f"echo $$ > {pid_file}; exec sleep 60", "timeout": 60})

        tg.start_soon(long_exec)
        await eventually(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        tg.cancel_scope.cancel()
    pid = int(pid_file.read_text())
    await eventually(lambda: not pid_alive(pid), what="death of the cancelled command")
    assert (await agent.request("exec", {"shell": "echo ok", "timeout": 5}))["stdout"] == "ok\n"


async def test_cancel_of_an_unknown_request_is_answered(agent: AgentChannel) -> None:
    assert await agent.request("cancel", {"target": 987654}) == {"found": False}


@pytest.mark.parametrize(
    ("op", "params", "message"),
    [
        ("no_such_op", {}, "unknown op"),
        ("exec", {}, "exactly one of 'argv' and 'shell'"),
        ("exec", {"argv": ["true"], "shell": "true"}, "exactly one of"),
        ("exec", {"shell": 42}, "'shell' must be a string"),
        ("exec", {"argv": []}, "'argv' must be a non-empty list"),
        ("exec", {"argv": ["a", 1]}, "only strings"),
        ("exec", {"shell": "true", "timeout": -1}, "'timeout' must be greater than 0"),
        ("exec", {"shell": "true", "timeout": "soon"}, "'timeout' must be a finite number"),
        ("exec", {"shell": "true", "timeout": True}, "'timeout' must be a finite number"),
        ("exec", {"shell": "true", "max_output": 1.5}, "'max_output' must be an integer"),
        ("exec", {"shell": "true", "max_output": 10**9}, "'max_output' must be <="),
        ("exec", {"shell": "true", "env": {"A=B": "x"}}, "invalid variable name"),
        ("exec", {"shell": "true", "env": {"A": 1}}, "must be a string"),
        ("exec", {"shell": "true", "stdin_b64": "not base64!"}, "not valid base64"),
        ("exec", {"shell": "true", "bogus": 1}, "unknown field(s) for op exec: 'bogus'"),
        ("read_file", {}, "missing required field 'path'"),
        ("read_file", {"path": "/etc/hostname", "max_bytes": -1}, "'max_bytes' must be >= 0"),
        ("read_file", {"path": "a\0b"}, "NUL"),
        ("list_files", {"path": "/", "depth": 0}, "'depth' must be >= 1"),
        ("write_file", {"path": "/tmp/x", "data_b64": "", "mode": 99999}, "'mode' must be <="),
        ("signal", {"pid": 1, "signal": "TERM"}, "'pid' must be >= 2"),
        ("signal", {"pid": 12345, "signal": "NOPE"}, "unknown signal"),
        ("code_run", {"language": "cobol", "context": "c", "code": ""}, "'language' must be one of"),
        ("code_run", {"language": "python", "context": "../x", "code": ""}, "'context' must match"),
        ("proc_output", {"proc_id": "../../etc"}, "invalid proc_id"),
        ("proc_input", {"proc_id": "p1"}, "one of 'data_b64' and 'eof'"),
        ("cancel", {"target": "x"}, "'target' must be an integer"),
    ],
)
async def test_bad_requests_are_answered_not_fatal(
    agent: AgentChannel, op: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(AgentError) as excinfo:
        await agent.request(op, params)
    assert excinfo.value.type == "bad_request"
    assert message in excinfo.value.message
    assert (await agent.request("hello"))["version"] == AGENT_VERSION


def frame(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def binary_frame(obj: object, payload: bytes) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">II", 0x80000000 | (4 + len(body) + len(payload)), len(body)) + body + payload


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", 5) + b"{nope",  # not JSON
        struct.pack(">I", 3) + b"[1]",  # not an object
        struct.pack(">I", 2) + b"\xff\xfe",  # not UTF-8
        struct.pack(">I", 64 * 1024 * 1024),  # over MAX_FRAME
        frame({"op": "hello"}),  # no id to answer to
        frame({"id": "7", "op": "hello"}),
        # binary frames: JSON length beyond the frame, a JSON 'bytes' field, over MAX_FRAME
        struct.pack(">II", 0x80000000 | 8, 100) + b"abcd",
        binary_frame({"id": 1, "op": "write_file", "path": "/x", "bytes": "x"}, b"raw"),
        struct.pack(">I", 0x80000000 | (64 * 1024 * 1024)),
    ],
)
async def test_garbage_frames_drop_the_connection(agent_dir: Path, garbage: bytes) -> None:
    async with agent_process(stdio_argv(), agent_env(agent_dir)) as process:
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send(garbage)
        with anyio.fail_after(10):
            assert await read_to_end(process.stdout) == b""
            assert await process.wait() == 0  # serve-stdio: the connection was all there was
