"""Tools for background processes and for reaching a sandbox's ports from the host."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service.ports import PortInfo
from corral.service.processes import InputSent, ProcessInfo, ProcessOutput
from corral.tools._base import SandboxRef, ToolSpec, services

ProcessRef = Annotated[str, Field(description="Process id (p-xxxxxx) from start_process.")]
PortArg = Annotated[int, Field(description="TCP port inside the sandbox.")]
Signal = Literal["TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT"]


class ProcessList(BaseModel):
    processes: list[ProcessInfo]


class PortList(BaseModel):
    ports: list[PortInfo]


async def start_process(
    ctx: Context,
    sandbox: SandboxRef,
    command: Annotated[str, Field(description="Shell command line, run with bash -c.")],
    cwd: Annotated[str | None, Field(description="Working directory (default /workspace).")] = None,
    env: Annotated[dict[str, str] | None, Field(description="Extra environment variables.")] = None,
) -> ProcessInfo:
    """Start a long-running command in the background (a server, a watcher, a long build) and
    return its process id at once. It keeps running across calls and server restarts; read its
    output with process_output."""
    return await services(ctx).processes.start_process(sandbox, command, cwd=cwd, env=env)


async def process_output(
    ctx: Context,
    process: ProcessRef,
    since: Annotated[
        int | None,
        Field(description="Cursor (next_cursor of an earlier reply); default: after the last reply."),
    ] = None,
    wait: Annotated[float, Field(description="Seconds to wait for new output or exit (max 30).")] = 0,
    max_bytes: Annotated[int | None, Field(description="Most output to return (default and max 64 KiB).")] = None,
) -> ProcessOutput:
    """Read a background process's new output (stdout and stderr combined) and whether it is still
    running. Successive calls return successive output: nothing is skipped between calls."""
    return await services(ctx).processes.process_output(process, since=since, wait=wait, max_bytes=max_bytes)


async def send_input(
    ctx: Context,
    process: ProcessRef,
    text: Annotated[str, Field(description="Text for its stdin; end lines with '\\n'.")] = "",
    eof: Annotated[bool, Field(description="Close its stdin after the text (like Ctrl-D).")] = False,
) -> InputSent:
    """Write to a background process's standard input."""
    return await services(ctx).processes.send_input(process, text, eof=eof)


async def signal_process(
    ctx: Context,
    process: ProcessRef,
    signal: Annotated[
        Signal,
        Field(description="TERM asks it to stop, KILL forces it, INT is Ctrl-C; STOP/CONT pause/resume."),
    ] = "TERM",
) -> ProcessInfo:
    """Send a signal to a background process and its children; reports whether it has ended."""
    return await services(ctx).processes.signal_process(process, signal)


async def list_processes(ctx: Context, sandbox: SandboxRef) -> ProcessList:
    """List a sandbox's background processes: command, running or not, exit code."""
    return ProcessList(processes=await services(ctx).processes.list_processes(sandbox))


async def expose_port(ctx: Context, sandbox: SandboxRef, port: PortArg) -> PortInfo:
    """Make a TCP port inside the sandbox reachable at a URL on the server's machine.

    Works without network access in the sandbox. The program must listen on 127.0.0.1 or 0.0.0.0
    in the sandbox (start it with start_process); the URL stays valid until close_port.
    """
    return await services(ctx).ports.expose(sandbox, port)


async def list_ports(
    ctx: Context,
    sandbox: Annotated[str | None, Field(description="Only this sandbox's ports (default: all).")] = None,
) -> PortList:
    """List exposed ports and their URLs."""
    return PortList(ports=await services(ctx).ports.list(sandbox))


async def close_port(ctx: Context, sandbox: SandboxRef, port: PortArg) -> PortInfo:
    """Stop exposing a sandbox port; its URL stops working."""
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
