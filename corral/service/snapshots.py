"""Snapshots: a sandbox's file system saved as a local image, to create new sandboxes from.

`snapshot_sandbox` commits the sandbox's container into `corral/snapshot-<owner>:<tenant>-<name>`:
a new image, so the base image never changes. /workspace is a volume, which a commit leaves out, so
the snapshot keeps a copy of it (a volume of its own, copied while the sandbox is stopped with its
memory for that moment, then resumed). Its memory is not part of a snapshot. Snapshots belong to a
tenant (another's is answered like a missing one), are recorded in SQLite, labelled as ours,
counted against `CORRAL_MAX_SNAPSHOTS`, refused deletion while a sandbox runs from one (naming
them), and an image or volume nothing records any more is removed by `corral gc`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import secrets

import anyio
from pydantic import BaseModel

from corral.errors import InvalidRequest, QuotaExceeded, SandboxBusy, StoreConflict
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord, SnapshotRecord
from corral.sandbox_backend.store.snapshots import SnapshotTable
from corral.service import notes, tenancy
from corral.service.containers import LABEL_OWNER, LABEL_ROLE, LABEL_SANDBOX, Containers
from corral.service.forks import Forks
from corral.service.sandboxes import SandboxService

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
ROLE = "snapshot"


class SnapshotInfo(BaseModel):
    name: str
    sandbox: str
    base_image: str
    size_mb: float
    created_at: float


def snapshot_info(rec: SnapshotRecord) -> SnapshotInfo:
    return SnapshotInfo(
        name=rec.name,
        sandbox=rec.sandbox_id,
        base_image=rec.base_image,
        size_mb=round(rec.size_bytes / (1024 * 1024), 1),
        created_at=rec.created_at,
    )


def check_snapshot_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid snapshot name {str(name)[:80]!r}: use 1-63 characters of a-z, 0-9, '_', '.', '-', starting "
            "with a letter or digit"
        )
    return name


class Snapshots:
    def __init__(
        self,
        sandboxes: SandboxService,
        engine: Engine,
        containers: Containers,
        table: SnapshotTable,
        limit: int,
        forks: Forks,
    ) -> None:
        self._sandboxes = sandboxes
        self._engine = engine
        self._containers = containers
        self._table = table
        self._limit = limit
        self._forks = forks

    def image_of(self, tenant: str, name: str) -> str:
        # Docker's image names are global: the owner keeps two data dirs' snapshots apart, the
        # tenant's digest two tenants' snapshots of one name.
        digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
        return f"corral/snapshot-{self._containers.owner}:{digest}-{name}"

    async def take(self, ref: str, name: str) -> SnapshotRecord:
        check_snapshot_name(name)
        sandbox = await self._sandboxes.resolve(ref)
        tenant = sandbox.tenant
        if await self._table.get(name, tenant) is not None:
            raise InvalidRequest(f"a snapshot named {name!r} already exists; pick another name or delete_snapshot it")
        if await self._table.count() >= self._limit:
            raise QuotaExceeded(
                f"this server keeps at most {self._limit} snapshots; delete_snapshot one first (list_snapshots)"
            )
        if not self._engine.capabilities.commit:
            raise InvalidRequest("this container engine cannot save a sandbox's files as an image")
        image = self.image_of(tenant, name)
        volume = None
        async with self._sandboxes.lock(sandbox.id):
            sandbox = await self._sandboxes.check_usable(await self._sandboxes.refresh(sandbox))
            assert sandbox.container_id is not None
            labels = self._containers.image_labels(sandbox.id, ROLE)
            if sandbox.volume is None:  # no disk limits: /workspace is in the committed file system
                image_id = await self._engine.commit(sandbox.container_id, image, labels)
            else:
                if self._sandboxes.active(sandbox.id):
                    raise SandboxBusy(f"sandbox {sandbox.id} is running a call now; snapshot it once that ends")
                volume = self._containers.volume_name(secrets.token_hex(5), ROLE)
                image_id = await self._copy(sandbox, image, labels, volume)
        size = next((i.size_bytes for i in await self._engine.labelled_images(self._label()) if i.id == image_id), 0)
        rec = SnapshotRecord(
            name=name,
            image=image,
            image_id=image_id,
            sandbox_id=sandbox.id,
            base_image=sandbox.image,
            size_bytes=size,
            created_at=self._sandboxes.clock.now(),
            tenant=tenant,
            volume=volume,
            disk_bytes=sandbox.disk_bytes if volume else None,
        )
        try:
            await self._table.insert(rec)
        except StoreConflict:
            await self._remove(rec)
            raise InvalidRequest(f"a snapshot named {name!r} was just taken by another call") from None
        return rec

    async def _copy(self, sandbox: SandboxRecord, image: str, labels: dict[str, str], volume: str) -> str:
        """Commit the file system and copy /workspace into `volume`, with the sandbox stopped (its
        memory saved) for that moment: a volume is copied only while nothing writes to it."""
        was_running = sandbox.status == "running"
        checkpoint, reason = await self._forks.freeze(sandbox)
        if was_running and checkpoint is None:
            notes.notice(
                f"sandbox {sandbox.id} had to stop for the snapshot and could not keep its memory ({reason}): "
                "files are kept; interpreter variables and background processes are gone (state_lost)"
            )
        try:
            image_id = await self._engine.commit(sandbox.container_id or "", image, labels)
            spec = self._containers.volume_spec(volume, sandbox.id, ROLE, sandbox.disk_bytes)
            try:
                await self._engine.create_volume(dataclasses.replace(spec, copy_of=sandbox.volume))
            except BaseException:
                await self._engine.remove_image(image)
                raise
        finally:
            if was_running:
                with anyio.CancelScope(shield=True):
                    await self._forks.thaw(sandbox, checkpoint)
        return image_id

    async def get(self, name: str) -> SnapshotRecord:
        """The caller's snapshot of this name; another tenant's is answered like a missing one."""
        tenant = tenancy.caller().tenant
        rec = await self._table.get(check_snapshot_name(name), tenant)
        if rec is None:
            known = ", ".join(r.name for r in await self._table.list(tenant)) or "none yet (snapshot_sandbox makes one)"
            raise InvalidRequest(f"no snapshot named {name!r}. Snapshots: {known}")
        return rec

    async def all(self) -> list[SnapshotRecord]:
        return await self._table.list(tenancy.caller().tenant)

    async def delete(self, name: str) -> SnapshotRecord:
        rec = await self.get(name)
        with tenancy.acting_as(tenancy.OPERATOR):  # whoever's sandbox runs from it
            users = [s for s in await self._sandboxes.list_all() if s.image == rec.image]
        if users:
            mine = [s for s in users if s.tenant == rec.tenant]
            names = ", ".join(f"{s.id} ({s.name})" if s.name else s.id for s in mine) or "another tenant's"
            raise InvalidRequest(f"snapshot {name!r} is in use by sandbox(es) {names}; delete them first")
        await self._remove(rec)
        await self._table.delete(rec.name, rec.tenant)
        return rec

    async def _remove(self, rec: SnapshotRecord) -> None:
        await self._engine.remove_image(rec.image)
        if rec.volume:
            await self._engine.remove_volume(rec.volume)

    async def volumes(self) -> set[str]:
        """The volumes every tenant's snapshots keep (reconcile must not take them for strays)."""
        return {r.volume for r in await self._table.list() if r.volume}

    def _label(self) -> str:
        return f"{LABEL_ROLE}={ROLE}"

    async def gc(self) -> list[str]:
        """Remove the snapshot and fork images of this data dir that nothing records any more."""
        removed = []
        for tag in await self.unrecorded_images():
            await self._engine.remove_image(tag)
            removed.append(tag)
        return removed

    async def unrecorded_images(self) -> list[str]:
        """Tags of snapshot and fork images of this data dir that nothing records."""
        owner = self._containers.owner
        with tenancy.acting_as(tenancy.OPERATOR):
            sandboxes = await self._sandboxes.list_all()
        recorded = {r.image for r in await self._table.list()} | {s.image for s in sandboxes}
        found = []
        for role in (ROLE, "fork"):
            for image in await self._engine.labelled_images(f"{LABEL_ROLE}={role}"):
                if image.labels.get(LABEL_OWNER) != owner or image.labels.get(LABEL_SANDBOX) is None:
                    continue
                tags = [t for t in image.tags if t not in recorded]
                if image.tags and len(tags) == len(image.tags):
                    found += tags
        return found
