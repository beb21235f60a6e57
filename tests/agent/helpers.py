"""Running the real agent as a local subprocess and talking to it through AgentChannel."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, ByteStream, Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.stapled import StapledByteStream

from corral.agent.bundle import bootstrap_argv, launch_argv
from corral.sandbox_backend.agent_channel import AgentChannel

AGENT_PACKAGE = Path(__file__).resolve().parents[2] / "corral" / "agent"
FAKE_DRIVERS = Path(__file__).resolve().parent / "fake_drivers"
# Run the agent under another interpreter (e.g. a Python 3.8) to check compatibility.
AGENT_PYTHON = os.environ.get("CORRAL_AGENT_PYTHON", sys.executable)
DEADLINE = 20.0


def agent_env(agent_dir: Path, drivers: Path | None = FAKE_DRIVERS) -> dict[str, str]:
    env = dict(os.environ, CORRAL_AGENT_DIR=str(agent_dir))
    env.pop("CORRAL_AGENT_DRIVERS", None)
    if drivers is not None:
        env["CORRAL_AGENT_DRIVERS"] = str(drivers)
    return env


def stdio_argv() -> list[str]:
    """The agent package from this source tree, as the sandbox runs it (`python -I`)."""
    return launch_argv("serve-stdio", python=AGENT_PYTHON)


def relay_argv() -> list[str]:
    return bootstrap_argv("relay", python=AGENT_PYTHON)


def process_stream(process: Process) -> ByteStream:
    assert process.stdin is not None and process.stdout is not None
    return StapledByteStream(process.stdin, process.stdout)


@asynccontextmanager
async def agent_process(
    argv: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> AsyncIterator[Process]:
    """The agent with piped stdin/stdout (stderr goes to pytest's capture); killed on exit."""
    process = await anyio.open_process(argv, env=env, stderr=None, cwd=cwd)
    try:
        yield process
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None and process.stdin is not None:
                await process.stdin.aclose()  # the agent's cue to leave
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


@asynccontextmanager
async def open_channel(
    argv: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> AsyncIterator[AgentChannel]:
    async with agent_process(argv, env, cwd) as process, AgentChannel(process_stream(process)) as channel:
        yield channel


async def eventually(
    predicate: Callable[[], bool], timeout: float = DEADLINE, what: str = "condition"
) -> None:
    """Poll `predicate` until it holds, failing after `timeout` seconds."""
    try:
        with anyio.fail_after(timeout):
            # Conditions on other processes (files, pids) have no event to wait on.
            while not predicate():  # noqa: ASYNC110
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {timeout} s") from None


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def daemon_pid(agent_dir: Path) -> int:
    return int((agent_dir / "agent.pid").read_text())


async def kill_and_wait(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    await eventually(lambda: not pid_alive(pid), what=f"death of process {pid}")


def kill_processes_of(agent_dir: Path) -> None:
    """Kill every process started for this agent dir: they all inherit CORRAL_AGENT_DIR."""
    needle = f"CORRAL_AGENT_DIR={agent_dir}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


async def run_to_completion(argv: list[str], env: Mapping[str, str]) -> CompletedProcess[bytes]:
    with anyio.fail_after(60):
        return await anyio.run_process(argv, env=env, check=False)


class MemoryByteStream(ByteStream):
    """One end of an in-memory byte pipe pair (see memory_stream_pair)."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._leftover = b""

    async def send(self, item: bytes) -> None:
        await self._send.send(bytes(item))

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._leftover:
            self._leftover = await self._receive.receive()
        data, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
        return data

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def memory_stream_pair() -> tuple[MemoryByteStream, MemoryByteStream]:
    a_send, b_receive = anyio.create_memory_object_stream[bytes](100)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](100)
    return MemoryByteStream(a_send, a_receive), MemoryByteStream(b_send, b_receive)


async def read_to_end(stream: ByteReceiveStream) -> bytes:
    data = bytearray()
    try:
        while True:
            data += await stream.receive()
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        return bytes(data)


async def send_raw(stream: ByteSendStream, data: bytes) -> None:
    await stream.send(data)


def result_text(result: Mapping[str, Any], stream: str = "stdout") -> str:
    value = result[stream]
    assert isinstance(value, str)
    return value
