"""lifecycle: stop and start (memory kept), fork, lifetimes and labels, metrics."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service.metrics import SandboxMetrics
from corral.service.models import SandboxInfo
from corral.service.snapshots import SnapshotInfo, snapshot_info
from corral.service.volumes import VolumeInfo
from corral.tools._base import SandboxRef, ToolSpec, services
from corral.tools.core import info


class Power(BaseModel):
    id: str
    name: str | None
    status: str
    memory_kept: bool = Field(description="Variables and processes survive (stop) / came back (start).")
    reason: str | None = None


class Fork(BaseModel):
    id: str
    name: str | None
    forked_from: str
    memory_kept: bool
    reason: str | None = None


async def stop_sandbox(
    ctx: Context,
    sandbox: SandboxRef,
    memory: Annotated[bool, Field(description="Keep memory (variables, processes).")] = True,
) -> Power:
    """Stop a sandbox to free resources; files always stay. Any later call resumes it."""
    change = await services(ctx).sandboxes.stop(sandbox, memory=memory)
    rec = change.rec
    return Power(id=rec.id, name=rec.name, status=rec.status, memory_kept=change.memory, reason=change.reason)


async def start_sandbox(ctx: Context, sandbox: SandboxRef) -> Power:
    """Start a stopped sandbox now (any call would too)."""
    change = await services(ctx).sandboxes.start(sandbox)
    rec = change.rec
    return Power(id=rec.id, name=rec.name, status=rec.status, memory_kept=change.memory, reason=change.reason)


async def fork_sandbox(
    ctx: Context,
    sandbox: SandboxRef,
    name: Annotated[str | None, Field(description="Name of the copy.")] = None,
) -> Fork:
    """Copy a sandbox (files, memory, processes) into a new one; the two then diverge."""
    forked = await services(ctx).forks.fork(sandbox, name)
    rec = forked.rec
    return Fork(id=rec.id, name=rec.name, forked_from=forked.source.id, memory_kept=forked.memory, reason=forked.reason)


async def update_sandbox(
    ctx: Context,
    sandbox: SandboxRef,
    labels: Annotated[dict[str, str] | None, Field(description="Merged in; '' removes a key.")] = None,
    idle_stop_after: Annotated[float | None, Field(description="Seconds; 0 = never.")] = None,
    delete_after: Annotated[float | None, Field(description="Seconds from now; 0 = never.")] = None,
) -> SandboxInfo:
    """Change a sandbox's labels or lifetimes (e.g. extend it before it is deleted)."""
    rec = await services(ctx).sandboxes.update(
        sandbox, labels=labels, idle_stop_after=idle_stop_after, delete_after=delete_after
    )
    return await info(ctx, rec)


async def sandbox_metrics(ctx: Context, sandbox: SandboxRef) -> SandboxMetrics:
    """CPU %, memory, disk, processes, uptime and network of a sandbox, now."""
    return await services(ctx).metrics.of(sandbox)


class SnapshotList(BaseModel):
    snapshots: list[SnapshotInfo]


async def snapshot_sandbox(
    ctx: Context, sandbox: SandboxRef, name: Annotated[str, Field(description="a-z, 0-9, _.-")]
) -> SnapshotInfo:
    """Save a sandbox's files as a snapshot; create_sandbox(from_snapshot=name) starts new ones from it."""
    return snapshot_info(await services(ctx).snapshots.take(sandbox, name))


async def list_snapshots(ctx: Context) -> SnapshotList:
    """List snapshots."""
    return SnapshotList(snapshots=[snapshot_info(r) for r in await services(ctx).snapshots.all()])


async def delete_snapshot(ctx: Context, name: Annotated[str, Field(description="Snapshot name.")]) -> SnapshotInfo:
    """Delete a snapshot (refused while a sandbox runs from it)."""
    return snapshot_info(await services(ctx).snapshots.delete(name))


class VolumeList(BaseModel):
    volumes: list[VolumeInfo]


async def create_volume(
    ctx: Context,
    name: Annotated[str, Field(description="a-z, 0-9, _.-")],
    size_mb: Annotated[int | None, Field(description="Default: the /workspace size.")] = None,
) -> VolumeInfo:
    """Create a named volume to share files between sandboxes and keep them past a sandbox's life;
    mount it with create_sandbox(volumes={name: path})."""
    app = services(ctx)
    return await app.volumes.info(await app.volumes.create(name, size_mb))


async def list_volumes(ctx: Context) -> VolumeList:
    """List named volumes and the sandboxes mounting them."""
    app = services(ctx)
    return VolumeList(volumes=[await app.volumes.info(r) for r in await app.volumes.all()])


async def delete_volume(ctx: Context, name: Annotated[str, Field(description="Volume name.")]) -> VolumeInfo:
    """Delete a named volume and its files (refused while a sandbox mounts it)."""
    app = services(ctx)
    return await app.volumes.info(await app.volumes.delete(name))


TOOLS: list[ToolSpec] = [
    ToolSpec(stop_sandbox, "Stop sandbox", idempotent=True),
    ToolSpec(start_sandbox, "Start sandbox", idempotent=True),
    ToolSpec(fork_sandbox, "Fork sandbox"),
    ToolSpec(update_sandbox, "Update sandbox", idempotent=True),
    ToolSpec(sandbox_metrics, "Sandbox metrics", read_only=True),
    ToolSpec(snapshot_sandbox, "Snapshot sandbox"),
    ToolSpec(list_snapshots, "List snapshots", read_only=True, idempotent=True),
    ToolSpec(delete_snapshot, "Delete snapshot", destructive=True),
    ToolSpec(create_volume, "Create volume"),
    ToolSpec(list_volumes, "List volumes", read_only=True, idempotent=True),
    ToolSpec(delete_volume, "Delete volume", destructive=True),
]
