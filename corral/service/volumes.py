"""Named volumes: data shared between sandboxes and kept past a sandbox's life.

A named volume belongs to a tenant (another's is answered like a missing one) and is sized like
/workspace (an ext4 image on a loop device: writing past it fails with ENOSPC and never reaches
the host's disk). `create_sandbox(volumes={mount path: name})` mounts it; deleting one is refused
while a sandbox mounts it, naming them. `corral gc` removes volumes no record claims.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Mapping

import anyio
from pydantic import BaseModel

from corral.agent.bundle import AGENT_MOUNT
from corral.config import MIB, WORKDIR, Limits, Settings
from corral.errors import InvalidRequest, StoreConflict
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import VolumeRecord
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.sandbox_backend.store.volumes import VolumeTable
from corral.service import tenancy
from corral.service.containers import Containers
from corral.service.quotas import check_disk, volume_check

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
ROLE = "named"
MAX_MOUNTS = 8
# Where a named volume may not go: the system's own directories and what Corral mounts itself.
FORBIDDEN = (
    *("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/var"),
    *("/tmp", "/run", WORKDIR, AGENT_MOUNT),
)


class VolumeInfo(BaseModel):
    name: str
    size_mb: int | None
    created_at: float
    mounted_by: list[str]


def check_volume_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid volume name {str(name)[:80]!r}: use 1-63 characters of a-z, 0-9, '_', '.', '-', starting "
            "with a letter or digit"
        )
    return name


def check_mount_path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path or len(path) > 255:
        raise InvalidRequest(f"a volume's mount path must be an absolute path (got {str(path)[:80]!r})")
    clean = posixpath.normpath(path)
    if clean.startswith("//"):
        clean = clean[1:]
    if any(clean == bad or (bad not in ("/", WORKDIR) and clean.startswith(bad + "/")) for bad in FORBIDDEN):
        raise InvalidRequest(
            f"a volume cannot be mounted at {clean}: pick a new directory such as /data or {WORKDIR}/data "
            "(not a system directory, /tmp, or /workspace itself)"
        )
    return clean


class Volumes:
    def __init__(
        self, settings: Settings, engine: Engine, containers: Containers, table: VolumeTable, sandboxes: SandboxTable
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._containers = containers
        self._table = table
        self._sandboxes = sandboxes

    async def create(self, name: str, size_mb: int | None = None) -> VolumeRecord:
        check_volume_name(name)
        tenant = tenancy.caller().tenant or tenancy.LOCAL
        limits: Limits = self._settings.limits
        size = None if self._settings.unsafe_no_disk_limit else check_disk(limits, size_mb)
        if await self._table.get(name, tenant) is not None:
            raise InvalidRequest(f"a volume named {name!r} already exists; pick another name or use it")
        volume = self._containers.named_volume(tenant, name)
        rec = VolumeRecord(name, volume, size, time.time(), tenant, self._settings.instance_id)
        try:
            # First: a crash now leaves a record, never an unrecorded disk.
            await self._table.insert(rec, volume_check(tenant, tenancy.caller().quota, size))
        except StoreConflict:
            raise InvalidRequest(f"a volume named {name!r} was just made by another call") from None
        try:
            await self._engine.create_volume(self._containers.volume_spec(volume, "", ROLE, size))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._table.delete(name, tenant)
            raise
        return rec

    async def get(self, name: str) -> VolumeRecord:
        """The caller's volume of this name; another tenant's is answered like a missing one."""
        tenant = tenancy.caller().tenant
        rec = await self._table.get(check_volume_name(name), tenant)
        if rec is None:
            known = ", ".join(r.name for r in await self._table.list(tenant)) or "none yet (create_volume makes one)"
            raise InvalidRequest(f"no volume named {name!r}. Volumes: {known}")
        return rec

    async def mounts(self, volumes: Mapping[str, str] | None) -> dict[str, str]:
        """`create_sandbox(volumes={name: mount path})` checked: {mount path: name}."""
        if not volumes:
            return {}
        if not isinstance(volumes, Mapping) or len(volumes) > MAX_MOUNTS:
            raise InvalidRequest(f"volumes must map at most {MAX_MOUNTS} volume names to mount paths")
        found: dict[str, str] = {}
        for name, path in volumes.items():
            await self.get(name)
            where = check_mount_path(path)
            if where in found:
                raise InvalidRequest(f"two volumes cannot be mounted at {where}")
            found[where] = name
        return found

    async def info(self, rec: VolumeRecord) -> VolumeInfo:
        users = [s.id for s in await self._sandboxes.list(rec.tenant) if rec.name in s.mounts.values()]
        size = None if rec.size_bytes is None else rec.size_bytes // MIB
        return VolumeInfo(name=rec.name, size_mb=size, created_at=rec.created_at, mounted_by=users)

    async def all(self) -> list[VolumeRecord]:
        return await self._table.list(tenancy.caller().tenant)

    async def delete(self, name: str) -> VolumeRecord:
        rec = await self.get(name)
        users = [s for s in await self._sandboxes.list(rec.tenant) if rec.name in s.mounts.values()]
        if users:
            names = ", ".join(f"{s.id} ({s.name})" if s.name else s.id for s in users)
            raise InvalidRequest(f"volume {name!r} is mounted by sandbox(es) {names}; delete them first")
        await self._engine.remove_volume(rec.volume)
        await self._table.delete(rec.name, rec.tenant)
        return rec

    async def recorded(self) -> set[str]:
        """The engine names of every tenant's named volumes (reconcile must not take them for strays)."""
        return {r.volume for r in await self._table.list()}
