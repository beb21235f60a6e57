"""Tools for background processes and for reaching a sandbox's ports from the host."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service import processes
from corral.service.ports import PortInfo
from corral.service.processes import InputSent, ProcessInfo, ProcessOutput
from corral.tools import ToolSpec
from corral.tools._base import SandboxRef, audited, service_of

ProcessRef = Annotated[str, Field(description="Process id (p-xxxxxx) from start_process.")]
PortArg = Annotated[int, Field(description="TCP port inside the sandbox.")]
Signal = Literal["TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT"]


class ProcessList(BaseModel):
    processes: list[ProcessInfo]


class PortList(BaseModel):
    ports: list[PortInfo]


@audited
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
    return await processes.start_process(service_of(ctx), sandbox, command, cwd=cwd, env=env)


@audited
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
    return await processes.process_output(service_of(ctx), process, since=since, wait=wait, max_bytes=max_bytes)


@audited
async def send_input(
    ctx: Context,
    process: ProcessRef,
    text: Annotated[str, Field(description="Text for its stdin; end lines with '\\n'.")] = "",
    eof: Annotated[bool, Field(description="Close its stdin after the text (like Ctrl-D).")] = False,
) -> InputSent:
    """Write to a background process's standard input."""
    return await processes.send_input(service_of(ctx), process, text, eof=eof)


@audited
async def signal_process(
    ctx: Context,
    process: ProcessRef,
    signal: Annotated[
        Signal,
        Field(description="TERM asks it to stop, KILL forces it, INT is Ctrl-C; STOP/CONT pause/resume."),
    ] = "TERM",
) -> ProcessInfo:
    """Send a signal to a background process and its children; reports whether it has ended."""
    return await processes.signal_process(service_of(ctx), process, signal)


@audited
async def list_processes(ctx: Context, sandbox: SandboxRef) -> ProcessList:
    """List a sandbox's background processes: command, running or not, exit code."""
    return ProcessList(processes=await processes.list_processes(service_of(ctx), sandbox))


@audited
async def expose_port(ctx: Context, sandbox: SandboxRef, port: PortArg) -> PortInfo:
    """Make a TCP port inside the sandbox reachable at a URL on the server's machine.

    Works without network access in the sandbox. The program must listen on 127.0.0.1 or 0.0.0.0
    in the sandbox (start it with start_process); the URL stays valid until close_port.
    """
    return await service_of(ctx).ports.expose(sandbox, port)


@audited
async def list_ports(
    ctx: Context,
    sandbox: Annotated[str | None, Field(description="Only this sandbox's ports (default: all).")] = None,
) -> PortList:
    """List exposed ports and their URLs."""
    return PortList(ports=await service_of(ctx).ports.list(sandbox))


@audited
async def close_port(ctx: Context, sandbox: SandboxRef, port: PortArg) -> PortInfo:
    """Stop exposing a sandbox port; its URL stops working."""
    return await service_of(ctx).ports.close(sandbox, port)


PROCESS_TOOLS: list[ToolSpec] = [
    ToolSpec(start_process, "Start background process", destructive=True),
    ToolSpec(process_output, "Read process output", read_only=True),
    ToolSpec(send_input, "Send process input", destructive=True),
    ToolSpec(signal_process, "Signal process", destructive=True),
    ToolSpec(list_processes, "List processes", read_only=True, idempotent=True),
    ToolSpec(expose_port, "Expose port", idempotent=True),
    ToolSpec(list_ports, "List exposed ports", read_only=True, idempotent=True),
    ToolSpec(close_port, "Close port", idempotent=True),
]
