"""Daemon + relay mode (the production path, via bootstrap_argv), background processes, tcp-relay."""

from __future__ import annotations

import base64
import json
import shutil
import struct
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from corral.agent.bundle import AGENT_VERSION, LAUNCHER, PACKAGE, bootstrap_argv
from corral.sandbox_backend.agent_channel import AgentChannel, AgentError

from .helpers import (
    AGENT_PYTHON,
    DEADLINE,
    agent_env,
    agent_process,
    daemon_pid,
    eventually,
    kill_and_wait,
    open_channel,
    pid_alive,
    read_to_end,
    relay_argv,
    run_to_completion,
)

pytestmark = pytest.mark.anyio


class ProcReader:
    """Follows a background process's combined output across polls (and channels)."""

    def __init__(self, proc_id: str) -> None:
        self.proc_id = proc_id
        self.text = ""
        self.offset = 0
        self.last: dict[str, Any] = {}

    async def poll(self, channel: AgentChannel, wait: float = 0.5) -> dict[str, Any]:
        params = {"proc_id": self.proc_id, "since": self.offset, "wait": wait}
        self.last = await channel.request("proc_output", params)
        assert self.last["next"] >= self.offset
        self.text += self.last["data"]
        self.offset = self.last["next"]
        return self.last

    async def send(self, channel: AgentChannel, data: bytes) -> None:
        params = {"proc_id": self.proc_id, "data_b64": base64.b64encode(data).decode()}
        assert await channel.request("proc_input", params) == {"written": len(data)}

    async def until(self, channel: AgentChannel, predicate: Any, timeout: float = 20) -> None:
        with anyio.fail_after(timeout):
            while not predicate(self):
                await self.poll(channel)


async def test_relay_starts_the_daemon_from_the_bundle(agent_dir: Path) -> None:
    async with open_channel(relay_argv(), agent_env(agent_dir)) as channel:
        hello = await channel.request("hello")
    assert hello["version"] == AGENT_VERSION
    assert hello["mode"] == "daemon"
    assert await anyio.Path(agent_dir / f"v-{AGENT_VERSION}" / PACKAGE / "drivers").is_dir()
    assert (await anyio.Path(agent_dir).stat()).st_mode & 0o777 == 0o700
    assert pid_alive(hello["pid"])  # outlives the relay
    assert daemon_pid(agent_dir) == hello["pid"]


async def test_the_relay_hands_its_stream_to_the_daemon_and_children_do_not_inherit_it(agent_dir: Path) -> None:
    async with open_channel(relay_argv(), agent_env(agent_dir)) as channel:
        hello = await channel.request("hello")
        fds = await channel.request("exec", {"shell": "ls /proc/self/fd", "timeout": 30})
        big = bytes(range(256)) * 8192  # 2 MiB each way through the handed-over stream
        target = agent_dir.parent / "big.bin"
        await channel.request("write_file", {"path": str(target), "bytes": big})
        back = await channel.request("read_file", {"path": str(target), "max_bytes": len(big), "binary": True})
    assert sorted(int(fd) for fd in fds["stdout"].split()) == [0, 1, 2, 3]  # 3: ls's own directory
    assert back["bytes"] == big
    assert hello["connection"].startswith("relay ")  # the daemon serves the relay's own stdio


async def test_sandbox_files_and_python_variables_cannot_hijack_the_agent(agent_dir: Path, tmp_path: Path) -> None:
    # The host starts the relay in /workspace, whose files belong to the sandbox: a module there
    # (or on a PYTHONPATH of the image) must not replace what the bootstrap or the agent imports.
    hostile = tmp_path / "workspace"
    hostile.mkdir()
    for name in ("base64", "json", "os", "random", "selectors", "socket", "tempfile", "zipfile", PACKAGE):
        (hostile / f"{name}.py").write_text(f"raise SystemExit('{name}.py from the sandbox was imported')\n")
    env = {**agent_env(agent_dir), "PYTHONPATH": str(hostile)}
    async with open_channel(relay_argv(), env, cwd=hostile) as channel:
        hello = await channel.request("hello")
        assert hello["version"] == AGENT_VERSION and hello["mode"] == "daemon"
        started = await channel.request("proc_start", {"command": "echo waited"})  # a proc-waiter too
        reader = ProcReader(started["proc_id"])
        await reader.until(channel, lambda r: r.last.get("eof") is True)
    assert reader.text == "waited\n"


KEEP = {"language": "python", "context": "keep", "timeout": 20}


async def test_relay_reconnect_finds_the_same_daemon_and_contexts(agent_dir: Path) -> None:
    env = agent_env(agent_dir)
    async with open_channel(relay_argv(), env) as channel:
        first = await channel.request("hello")
        await channel.request("code_run", {**KEEP, "code": "x = 41"})
    async with open_channel(relay_argv(), env) as channel:
        second = await channel.request("hello")
        run = await channel.request("code_run", {**KEEP, "code": "x + 1"})
        contexts = await channel.request("context_list")
    assert second["pid"] == first["pid"]
    assert run["value"] == "42" and run["state_lost"] is False
    assert [(c["language"], c["context"], c["runs"]) for c in contexts["contexts"]] == [("python", "keep", 2)]


async def test_two_relays_at_once_share_one_daemon(agent_dir: Path) -> None:
    env = agent_env(agent_dir)
    async with open_channel(relay_argv(), env) as one, open_channel(relay_argv(), env) as two:
        pids = {(await one.request("hello"))["pid"], (await two.request("hello"))["pid"]}
    assert len(pids) == 1


async def test_garbage_drops_only_that_connection(agent_dir: Path) -> None:
    env = agent_env(agent_dir)
    async with open_channel(relay_argv(), env) as channel:
        pid = (await channel.request("hello"))["pid"]
    async with agent_process(relay_argv(), env) as relay:
        assert relay.stdin is not None and relay.stdout is not None
        await relay.stdin.send(struct.pack(">I", 4) + b"junk")
        with anyio.fail_after(10):
            assert await read_to_end(relay.stdout) == b""
            await relay.wait()
    async with open_channel(relay_argv(), env) as channel:
        assert (await channel.request("hello"))["pid"] == pid


async def test_shutdown_stops_the_daemon_and_a_relay_starts_a_new_one(agent_dir: Path) -> None:
    env = agent_env(agent_dir)
    async with open_channel(relay_argv(), env) as channel:
        old = (await channel.request("hello"))["pid"]
        assert await channel.request("shutdown") == {}
        with anyio.fail_after(10):
            await channel.wait_closed()
    await eventually(lambda: not pid_alive(old), what="daemon exit")
    async with open_channel(relay_argv(), env) as channel:
        assert (await channel.request("hello"))["pid"] != old


async def test_relay_replaces_a_daemon_of_another_version(agent_dir: Path, tmp_path: Path) -> None:
    env = agent_env(agent_dir)
    unpacked = await run_to_completion(bootstrap_argv("version", python=AGENT_PYTHON), env)
    assert unpacked.stdout.decode().strip() == AGENT_VERSION, unpacked.stderr
    old_bundle = tmp_path / "old-bundle"
    shutil.copytree(agent_dir / f"v-{AGENT_VERSION}", old_bundle)
    (old_bundle / PACKAGE / "VERSION").write_text("0ld\n")
    argv = [AGENT_PYTHON, "-I", "-c", LAUNCHER, str(old_bundle), PACKAGE, "daemon"]
    async with await anyio.open_process(argv, env=env, stdin=DEVNULL, start_new_session=True) as old:
        await eventually(lambda: (agent_dir / "agent.pid").exists() and daemon_pid(agent_dir) == old.pid)
        await eventually(lambda: (agent_dir / "agent.sock").exists())
        async with open_channel(relay_argv(), env) as channel:
            hello = await channel.request("hello")
        assert hello["version"] == AGENT_VERSION and hello["pid"] != old.pid
        with anyio.fail_after(DEADLINE):
            assert await old.wait() == 0  # it was asked to shut down


async def test_background_process_survives_a_daemon_kill(agent_dir: Path) -> None:
    env = agent_env(agent_dir)
    script = "echo start; while read line; do echo got:$line; echo err:$line >&2; done; echo bye; exit 7"
    async with open_channel(relay_argv(), env) as channel:
        started = await channel.request("proc_start", {"command": script})
        reader = ProcReader(started["proc_id"])
        await reader.until(channel, lambda r: "start\n" in r.text)
        await reader.send(channel, b"one\n")
        await reader.until(channel, lambda r: "err:one\n" in r.text)
        first_daemon = (await channel.request("hello"))["pid"]
    await kill_and_wait(first_daemon)
    assert pid_alive(started["pid"])

    async with open_channel(relay_argv(), env) as channel:  # starts a fresh daemon
        assert (await channel.request("hello"))["pid"] != first_daemon
        listed = (await channel.request("proc_list"))["procs"]
        assert [(p["proc_id"], p["pid"], p["running"], p["command"]) for p in listed] == [
            (reader.proc_id, started["pid"], True, script)
        ]
        await reader.send(channel, b"two\n")
        await reader.until(channel, lambda r: "err:two\n" in r.text)
        await channel.request("proc_input", {"proc_id": reader.proc_id, "eof": True})
        await reader.until(channel, lambda r: r.last.get("eof") is True)
        assert reader.last["running"] is False and reader.last["exit_code"] == 7
        final = (await channel.request("proc_list"))["procs"][0]
        assert final["running"] is False and final["exit_code"] == 7
    assert reader.text == "start\ngot:one\nerr:one\ngot:two\nerr:two\nbye\n"


async def test_background_process_signal_and_errors(agent: AgentChannel) -> None:
    started = await agent.request("proc_start", {"command": "sleep 60"})
    proc_id = started["proc_id"]
    await agent.request("proc_signal", {"proc_id": proc_id, "signal": "TERM"})
    reader = ProcReader(proc_id)
    await reader.until(agent, lambda r: r.last.get("eof") is True)
    assert reader.last["exit_code"] == -15
    with pytest.raises(AgentError) as not_running:
        await agent.request("proc_signal", {"proc_id": proc_id, "signal": "KILL"})
    assert not_running.value.type == "not_running"
    with pytest.raises(AgentError) as no_input:
        await agent.request("proc_input", {"proc_id": proc_id, "eof": True})
    assert no_input.value.type == "not_running"
    with pytest.raises(AgentError) as unknown:
        await agent.request("proc_output", {"proc_id": "p0000000000"})
    assert unknown.value.type == "not_found"
    with pytest.raises(AgentError) as bad_cwd:
        await agent.request("proc_start", {"command": "true", "cwd": "/no/such/dir"})
    assert bad_cwd.value.type == "not_found"


async def test_proc_output_pages_without_splitting_characters(agent: AgentChannel) -> None:
    started = await agent.request("proc_start", {"command": "printf 'h\\303\\251llo w\\303\\266rld'"})
    reader = ProcReader(started["proc_id"])
    with anyio.fail_after(20):
        while reader.last.get("eof") is not True:
            params = {"proc_id": reader.proc_id, "since": reader.offset, "max_bytes": 2, "wait": 0.5}
            reader.last = await agent.request("proc_output", params)
            reader.text += reader.last["data"]
            reader.offset = reader.last["next"]
    assert reader.text == "héllo wörld"


async def echo_upper(stream: SocketStream) -> None:
    """Reads until EOF, then answers with everything upper-cased (needs TCP half-close)."""
    async with stream:
        data = bytearray()
        try:
            while True:
                data += await stream.receive()
        except anyio.EndOfStream:
            pass
        await stream.send(bytes(data).upper())


async def test_tcp_relay_forwards_both_ways_with_half_close(agent_dir: Path) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo_upper)
        argv = bootstrap_argv("tcp-relay", "127.0.0.1", str(port), python=AGENT_PYTHON)
        async with agent_process(argv, agent_env(agent_dir)) as relay:
            assert relay.stdin is not None and relay.stdout is not None
            await relay.stdin.send(b"hello through ")
            await relay.stdin.send(b"the relay\n")
            await relay.stdin.aclose()
            with anyio.fail_after(10):
                assert await read_to_end(relay.stdout) == b"HELLO THROUGH THE RELAY\n"
                assert await relay.wait() == 0
        tg.cancel_scope.cancel()


async def test_tcp_relay_reports_a_refused_connection(agent_dir: Path) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there now
    argv = bootstrap_argv("tcp-relay", "127.0.0.1", str(port), python=AGENT_PYTHON)
    result = await run_to_completion(argv, agent_env(agent_dir))
    assert result.returncode == 1 and b"cannot connect" in result.stderr


def test_bootstrap_argv_is_small() -> None:
    argv = bootstrap_argv("relay")
    # -I: nothing of the sandbox's environment or working directory; -S: no site (the agent is
    # stdlib-only, and site-packages' .pth files cost every agent process ~55 ms under gVisor).
    assert argv[:4] == ["python3", "-I", "-S", "-c"] and argv[5] == "relay"
    # Linux refuses a single argument over MAX_ARG_STRLEN (128 KiB): the bundle must stay well under.
    assert max(len(a) for a in argv) < 120_000 and sum(len(a) for a in argv) < 125_000
    assert json.dumps(argv)  # plain strings only
