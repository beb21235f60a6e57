"""Tools that create, inspect and delete sandboxes."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service.models import SandboxInfo
from corral.tools._base import SandboxRef, audited, service_of


class SandboxList(BaseModel):
    sandboxes: list[SandboxInfo]


class Deleted(BaseModel):
    id: str
    name: str | None
    deleted: bool


@audited
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
) -> SandboxInfo:
    """Create a new isolated Linux sandbox (a gVisor container) and return its id.

    Use it once per task and reuse the id for every later call: files, installed packages and
    interpreter state persist in it across calls and server restarts until you delete it.
    No network access; runs as a non-root user in /workspace. Takes about a second.
    """
    rec = await service_of(ctx).create(name=name, image=image, memory_mb=memory_mb, cpus=cpus, labels=labels)
    return SandboxInfo.from_record(rec)


@audited
async def list_sandboxes(ctx: Context) -> SandboxList:
    """List all sandboxes with their id, name, status and limits."""
    return SandboxList(sandboxes=[SandboxInfo.from_record(r) for r in await service_of(ctx).list_all()])


@audited
async def get_sandbox(ctx: Context, sandbox: SandboxRef) -> SandboxInfo:
    """Show one sandbox: status (running/stopped/lost), image, isolation runtime and limits."""
    return SandboxInfo.from_record(await service_of(ctx).get(sandbox))


@audited
async def delete_sandbox(ctx: Context, sandbox: SandboxRef) -> Deleted:
    """Delete a sandbox and everything in it (files, processes). Cannot be undone."""
    rec = await service_of(ctx).delete(sandbox)
    return Deleted(id=rec.id, name=rec.name, deleted=True)
