"""core: create, list, inspect and delete sandboxes, and run shell commands in them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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


class SandboxList(BaseModel):
    sandboxes: list[SandboxInfo]


class Deleted(BaseModel):
    id: str
    name: str | None
    deleted: bool


def info(ctx: Context, rec: SandboxRecord, metrics: str | None = None) -> SandboxInfo:
    return SandboxInfo.from_record(rec, services(ctx).sandboxes.lease(rec), metrics)


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
    name: Annotated[str | None, Field(description="Unique name (a-z, 0-9, _.-) usable instead of the id.")] = None,
    image: Annotated[str | None, Field(description="Default: Corral's (Python data stack, node, git).")] = None,
    memory_mb: Annotated[int | None, Field(description="Default 1024.")] = None,
    cpus: Annotated[float | None, Field(description="Default 1.")] = None,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    idle_stop_after: Annotated[float | None, Field(description="Idle s until stopped, memory kept; 0 never")] = None,
    delete_after: Annotated[float | None, Field(description="Seconds until deleted; 0 never.")] = None,
    ephemeral: Annotated[bool, Field(description="Delete on client disconnect.")] = False,
    from_snapshot: Annotated[str | None, Field(description="Snapshot name.")] = None,
) -> SandboxInfo:
    """Create an isolated Linux sandbox (gVisor; no network, non-root, in /workspace) and return its
    id. Create one per task and reuse it: files, packages and interpreter state persist."""
    app = services(ctx)
    svc = app.sandboxes
    snapshot_image = None
    if from_snapshot is not None:
        if image is not None:
            raise InvalidRequest("give image or from_snapshot, not both: a snapshot brings its own image")
        snapshot_image = (await app.snapshots.get(from_snapshot)).image
    rec = await svc.create(
        snapshot_image=snapshot_image,
        name=name,
        image=image,
        memory_mb=memory_mb,
        cpus=cpus,
        labels=labels,
        env=env,
        idle_stop_after=idle_stop_after,
        delete_after=delete_after,
        ephemeral=ephemeral,
        session=svc.session_id(connection_key(ctx)) if ephemeral else None,
    )
    return info(ctx, rec)


async def list_sandboxes(
    ctx: Context,
    labels: Annotated[dict[str, str] | None, Field(description="Only sandboxes with all these labels.")] = None,
) -> SandboxList:
    """List sandboxes: id, name, status, limits."""
    return SandboxList(sandboxes=[info(ctx, r) for r in await services(ctx).sandboxes.list_all(labels)])


async def get_sandbox(ctx: Context, sandbox: SandboxRef) -> SandboxInfo:
    """Show one sandbox: status, image, limits, lifetimes and a line of current metrics."""
    app = services(ctx)
    rec = await app.sandboxes.get(sandbox)
    metrics = line(await app.metrics.of(rec.id)) if rec.status == "running" else None
    return info(ctx, rec, metrics)


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
    ToolSpec(run_command, "Run shell command", destructive=True),
]
