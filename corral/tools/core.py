"""core: create, list, inspect and delete sandboxes, and run shell commands in them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service.models import ExecResult, SandboxInfo
from corral.tools._base import SandboxRef, ToolSpec, progress, services

if TYPE_CHECKING:
    from corral.sandbox_backend.store import SandboxRecord

Timeout = Annotated[
    float | None,
    Field(description="Seconds before the run is stopped (default 60; the server sets a maximum)."),
]


Mode = Literal["none", "allowlist", "internet"]
Allow = Annotated[
    list[str] | None, Field(description="allowlist only: hosts, *.domains, IPs/CIDRs, [:port].")
]


async def info(ctx: Context, rec: SandboxRecord) -> SandboxInfo:
    return SandboxInfo.from_record(rec, await services(ctx).network.view(rec))


class SandboxList(BaseModel):
    sandboxes: list[SandboxInfo]


class Deleted(BaseModel):
    id: str
    name: str | None
    deleted: bool


async def create_sandbox(
    ctx: Context,
    name: Annotated[
        str | None, Field(description="Optional unique name (a-z, 0-9, _.-) to use instead of the id.")
    ] = None,
    image: Annotated[
        str | None,
        Field(description="Container image; default: Corral's image (python3, node, git, matplotlib)."),
    ] = None,
    memory_mb: Annotated[int | None, Field(description="Memory limit in MiB (default 1024).")] = None,
    cpus: Annotated[float | None, Field(description="CPU limit in cores (default 1).")] = None,
    labels: Annotated[dict[str, str] | None, Field(description="Free-form labels to find it later.")] = None,
    network: Annotated[
        Mode, Field(description="none (default), allowlist (only `allow`) or internet (public hosts).")
    ] = "none",
    allow: Allow = None,
) -> SandboxInfo:
    """Create a new isolated Linux sandbox (a gVisor container) and return its id.

    Use it once per task and reuse the id for every later call: files, installed packages and
    interpreter state persist in it across calls and server restarts until you delete it.
    Runs as a non-root user in /workspace. Takes about a second. With network, traffic goes
    through Corral's proxy (HTTP(S)_PROXY is set).
    """
    rec = await services(ctx).sandboxes.create(
        name=name, image=image, memory_mb=memory_mb, cpus=cpus, labels=labels, network=network, allow=allow
    )
    return await info(ctx, rec)


async def list_sandboxes(ctx: Context) -> SandboxList:
    """List all sandboxes with their id, name, status and limits."""
    return SandboxList(sandboxes=[await info(ctx, r) for r in await services(ctx).sandboxes.list_all()])


async def get_sandbox(ctx: Context, sandbox: SandboxRef) -> SandboxInfo:
    """Show one sandbox: status (running/stopped/lost), image, isolation runtime, limits, network."""
    return await info(ctx, await services(ctx).sandboxes.get(sandbox))


async def update_network(
    ctx: Context,
    sandbox: SandboxRef,
    network: Mode,
    allow: Allow = None,
) -> SandboxInfo:
    """Change a running sandbox's network policy, at once (open connections it no longer allows
    are cut). One created with network='none' cannot get network."""
    return await info(ctx, await services(ctx).sandboxes.update_network(sandbox, network, allow))


async def delete_sandbox(ctx: Context, sandbox: SandboxRef) -> Deleted:
    """Delete a sandbox and everything in it (files, processes). Cannot be undone."""
    rec = await services(ctx).sandboxes.delete(sandbox)
    return Deleted(id=rec.id, name=rec.name, deleted=True)


async def run_command(
    ctx: Context,
    sandbox: SandboxRef,
    command: Annotated[str, Field(description="Shell command line, run with bash -c.")],
    cwd: Annotated[str | None, Field(description="Working directory (default /workspace).")] = None,
    env: Annotated[dict[str, str] | None, Field(description="Extra environment variables.")] = None,
    timeout: Timeout = None,
) -> ExecResult:
    """Run a shell command in the sandbox and return exit code, stdout and stderr separately.

    Each call is a fresh shell (use run_code with language='bash' to keep shell state). Output is
    capped at 64 KiB per stream, keeping head and tail. On timeout the command is killed and the
    sandbox stays usable. No network access unless the sandbox was created with it.
    """
    return await services(ctx).execution.run_command(
        sandbox, command, cwd=cwd, env=env, timeout=timeout, on_output=progress(ctx)
    )


TOOLS: list[ToolSpec] = [
    ToolSpec(create_sandbox, "Create sandbox"),
    ToolSpec(list_sandboxes, "List sandboxes", read_only=True, idempotent=True),
    ToolSpec(get_sandbox, "Get sandbox", read_only=True, idempotent=True),
    ToolSpec(delete_sandbox, "Delete sandbox", destructive=True, idempotent=True),
    ToolSpec(update_network, "Update network", idempotent=True, open_world=True),
    ToolSpec(run_command, "Run shell command", destructive=True),
]
