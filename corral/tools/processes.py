"""Tools for background processes and for reaching a sandbox's ports from the host."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service.ports import PortInfo
from corral.service.processes import InputSent, ProcessInfo, ProcessOutput
from corral.tools._base import SandboxRef, ToolSpec, services

ProcessRef = Annotated[str, Field(description="Id from start_process.")]
PortArg = Annotated[int, Field(description="TCP port in the sandbox.")]
Signal = Literal["TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT"]


class ProcessList(BaseModel):
    processes: list[ProcessInfo]


class PortList(BaseModel):
    ports: list[PortInfo]


async def start_process(
    ctx: Context,
    sandbox: SandboxRef,
    command: Annotated[str, Field(description="Run with bash -c.")],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> ProcessInfo:
    """Start a command in the background (a server, a watcher, a long build) and return its id at
    once; it keeps running across calls. Read its output with process_output."""
    return await services(ctx).processes.start_process(sandbox, command, cwd=cwd, env=env)


async def process_output(
    ctx: Context,
    process: ProcessRef,
    since: Annotated[int | None, Field(description="A next_cursor; default: after the last reply.")] = None,
    wait: Annotated[float, Field(description="Seconds to wait for output or exit (max 30).")] = 0,
    max_bytes: Annotated[int | None, Field(description="Default and max 64 KiB.")] = None,
) -> ProcessOutput:
    """Read a background process's new output (stdout and stderr) and whether it still runs;
    successive calls return successive output."""
    return await services(ctx).processes.process_output(process, since=since, wait=wait, max_bytes=max_bytes)


async def send_input(
    ctx: Context,
    process: ProcessRef,
    text: Annotated[str, Field(description="End lines with '\\n'.")] = "",
    eof: Annotated[bool, Field(description="Then close stdin (Ctrl-D).")] = False,
) -> InputSent:
    """Write to a background process's standard input."""
    return await services(ctx).processes.send_input(process, text, eof=eof)


async def signal_process(
    ctx: Context,
    process: ProcessRef,
    signal: Signal = "TERM",
) -> ProcessInfo:
    """Signal a background process and its children (TERM stops, KILL forces, INT is Ctrl-C)."""
    return await services(ctx).processes.signal_process(process, signal)


async def list_processes(ctx: Context, sandbox: SandboxRef) -> ProcessList:
    """List a sandbox's background processes."""
    return ProcessList(processes=await services(ctx).processes.list_processes(sandbox))


async def expose_port(ctx: Context, sandbox: SandboxRef, port: PortArg) -> PortInfo:
    """Make a TCP port of the sandbox (a server started with start_process) reachable at a URL on
    the server's machine, until close_port. Needs no network in the sandbox."""
    return await services(ctx).ports.expose(sandbox, port)


async def list_ports(
    ctx: Context,
    sandbox: str | None = None,
) -> PortList:
    """List exposed ports and their URLs."""
    return PortList(ports=await services(ctx).ports.list(sandbox))


async def close_port(ctx: Context, sandbox: SandboxRef, port: PortArg) -> PortInfo:
    """Stop exposing a sandbox port."""
    return await services(ctx).ports.close(sandbox, port)


TOOLS: list[ToolSpec] = [
    ToolSpec(start_process, "Start background process", destructive=True),
    ToolSpec(process_output, "Read process output", read_only=True),
    ToolSpec(send_input, "Send process input", destructive=True),
    ToolSpec(signal_process, "Signal process", destructive=True),
    ToolSpec(list_processes, "List processes", read_only=True, idempotent=True),
    ToolSpec(expose_port, "Expose port", idempotent=True),
    ToolSpec(list_ports, "List exposed ports", read_only=True, idempotent=True),
    ToolSpec(close_port, "Close port", idempotent=True),
]
