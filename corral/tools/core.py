"""core: create, list, inspect and delete sandboxes, and run shell commands in them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service.models import ExecResult, SandboxInfo
from corral.tools._base import SandboxRef, ToolSpec, progress, services

if TYPE_CHECKING:
    from corral.sandbox_backend.store import SandboxRecord

Timeout = Annotated[float | None, Field(description="Seconds (default 60).")]


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
    name: Annotated[str | None, Field(description="Unique name (a-z, 0-9, _.-) usable instead of the id.")] = None,
    image: Annotated[str | None, Field(description="Default: Corral's (Python data stack, node, git).")] = None,
    memory_mb: Annotated[int | None, Field(description="Default 1024.")] = None,
    cpus: Annotated[float | None, Field(description="Default 1.")] = None,
    disk_mb: Annotated[int | None, Field(description="Size of /workspace (server default, e.g. 10240).")] = None,
    labels: dict[str, str] | None = None,
    network: Annotated[Mode, Field(description="none (default), allowlist (only `allow`) or internet.")] = "none",
    allow: Allow = None,
) -> SandboxInfo:
    """Create an isolated Linux sandbox (gVisor, non-root, in /workspace; network only if asked,
    via Corral's proxy) and return its id. Create one per task and reuse it: files, packages and
    interpreter state persist."""
    rec = await services(ctx).sandboxes.create(
        name=name, image=image, memory_mb=memory_mb, cpus=cpus, disk_mb=disk_mb, labels=labels,
        network=network, allow=allow,
    )
    return await info(ctx, rec)


async def list_sandboxes(ctx: Context) -> SandboxList:
    """List sandboxes: id, name, status, limits, network."""
    return SandboxList(sandboxes=[await info(ctx, r) for r in await services(ctx).sandboxes.list_all()])


async def get_sandbox(ctx: Context, sandbox: SandboxRef) -> SandboxInfo:
    """Show one sandbox: status, image, isolation, limits, network and its connection counts."""
    return await info(ctx, await services(ctx).sandboxes.get(sandbox))


async def update_network(ctx: Context, sandbox: SandboxRef, network: Mode, allow: Allow = None) -> SandboxInfo:
    """Change a running sandbox's network policy at once (open connections it no longer allows
    are cut). One created with network='none' cannot get network."""
    return await info(ctx, await services(ctx).sandboxes.update_network(sandbox, network, allow))


async def delete_sandbox(ctx: Context, sandbox: SandboxRef) -> Deleted:
    """Delete a sandbox and everything in it. Cannot be undone."""
    rec = await services(ctx).sandboxes.delete(sandbox)
    return Deleted(id=rec.id, name=rec.name, deleted=True)


async def run_command(
    ctx: Context,
    sandbox: SandboxRef,
    command: Annotated[str, Field(description="Run with bash -c.")],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    timeout: Timeout = None,
) -> ExecResult:
    """Run a shell command (a fresh shell each call) and return exit code, stdout and stderr (64 KiB
    each, head and tail kept). For shell state across calls use run_code with language='bash'."""
    return await services(ctx).execution.run_command(
        sandbox, command, cwd=cwd, env=env, timeout=timeout, on_output=progress(ctx)
    )


TOOLS: list[ToolSpec] = [
    ToolSpec(create_sandbox, "Create sandbox"),
    ToolSpec(list_sandboxes, "List sandboxes", read_only=True, idempotent=True),
    ToolSpec(get_sandbox, "Get sandbox", read_only=True, idempotent=True),
    ToolSpec(delete_sandbox, "Delete sandbox", destructive=True, idempotent=True),
    ToolSpec(update_network, "Update network", idempotent=True, open_world=True),
    ToolSpec(run_command, "Run shell command", destructive=True, executes=True),
]
