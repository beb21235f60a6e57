"""core: create, list, inspect and delete sandboxes, and run shell commands in them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import Context
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from corral.errors import InvalidRequest
from corral.service.metrics import line
from corral.service.models import ExecResult, SandboxInfo
from corral.tools._base import SandboxRef, ToolSpec, progress, services

if TYPE_CHECKING:
    from corral.sandbox_backend.store import SandboxRecord

Timeout = Annotated[float | None, Field(description="Seconds (default 60).")]


Mode = Literal["none", "allowlist", "internet"]
Allow = Annotated[list[str] | None, Field(description="Hosts, *.domains, IPs/CIDRs[:port].")]


async def info(ctx: Context, rec: SandboxRecord, metrics: str | None = None) -> SandboxInfo:
    app = services(ctx)
    return SandboxInfo.from_record(rec, await app.network.view(rec), app.sandboxes.lease(rec), metrics)


class SandboxList(BaseModel):
    sandboxes: list[SandboxInfo]


class Deleted(BaseModel):
    id: str
    name: str | None
    deleted: bool


def connection_key(ctx: Context) -> str:
    """What an ephemeral sandbox belongs to: the client connection of this call, whose end
    (stdio exit, HTTP session end or expiry, SSE disconnect) deletes it through the connection's
    exit stack. A 2026-era client has no connection beyond one request: over stdio the server
    process is its connection (its end deletes the sandbox); over HTTP there is none to see."""
    connection = getattr(ctx.request_context.session, "_connection", None)
    stack, state = getattr(connection, "exit_stack", None), getattr(connection, "state", None)
    if ctx.request_context.protocol_version in MODERN_PROTOCOL_VERSIONS:
        if ctx.request_context.request is not None:  # an HTTP request: nothing outlives it
            raise InvalidRequest(
                "ephemeral=true needs a client connection, and this client's HTTP requests have none; "
                "use delete_after to bound the sandbox's life instead"
            )
        return ""  # the server process: its end deletes the sandbox
    if stack is None or not isinstance(state, dict):
        raise InvalidRequest("ephemeral=true is not available here: this connection has no end Corral can see")
    key = state.get("corral.session")
    if key is None:
        key = state["corral.session"] = f"c{id(connection):x}"
        sandboxes = services(ctx).sandboxes
        stack.push_async_callback(sandboxes.end_session, sandboxes.session_id(key))
    return str(key)


async def create_sandbox(
    ctx: Context,
    name: str | None = None,
    image: str | None = None,
    memory_mb: int | None = None,
    cpus: float | None = None,
    disk_mb: int | None = None,
    labels: dict[str, str] | None = None,
    network: Mode | None = None,
    allow: Allow = None,
    env: dict[str, str] | None = None,
    idle_stop_after: Annotated[float | None, Field(description="Idle s to stop; 0 never")] = None,
    delete_after: Annotated[float | None, Field(description="s to delete; 0 never")] = None,
    ephemeral: Annotated[bool | None, Field(description="Gone on disconnect.")] = None,
    from_snapshot: str | None = None,
    volumes: Annotated[dict[str, str] | None, Field(description="{name: path}")] = None,
) -> SandboxInfo:
    """Create an isolated gVisor Linux sandbox (non-root, /workspace, no network unless asked);
    returns its id. Reuse it per task: files and state persist."""
    app = services(ctx)
    svc = app.sandboxes
    snapshot = None
    if from_snapshot is not None:
        if image is not None:
            raise InvalidRequest("give image or from_snapshot, not both: a snapshot brings its own image")
        snapshot = await app.snapshots.get(from_snapshot)
    mounts = await app.volumes.mounts(volumes)
    rec = await svc.create(
        mounts=mounts,
        snapshot=snapshot,
        name=name,
        image=image,
        memory_mb=memory_mb,
        cpus=cpus,
        disk_mb=disk_mb,
        labels=labels,
        network=network,
        allow=allow,
        env=env,
        idle_stop_after=idle_stop_after,
        delete_after=delete_after,
        ephemeral=bool(ephemeral),
        session=svc.session_id(connection_key(ctx)) if ephemeral else None,
    )
    return await info(ctx, rec)


async def list_sandboxes(
    ctx: Context,
    labels: Annotated[dict[str, str] | None, Field(description="Only sandboxes with all these labels.")] = None,
) -> SandboxList:
    """List sandboxes: id, name, status, limits, network."""
    return SandboxList(sandboxes=[await info(ctx, r) for r in await services(ctx).sandboxes.list_all(labels)])


async def get_sandbox(ctx: Context, sandbox: SandboxRef) -> SandboxInfo:
    """Show one sandbox: status, image, limits, network, lifetimes and a line of current metrics."""
    app = services(ctx)
    rec = await app.sandboxes.get(sandbox)
    metrics = line(await app.metrics.of(rec.id)) if rec.status == "running" else None
    return await info(ctx, rec, metrics)


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
