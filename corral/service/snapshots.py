"""Snapshots: a sandbox's file system saved as a local image, to create new sandboxes from.

`snapshot_sandbox` commits the sandbox's container (Docker pauses it for the moment of the
commit; its memory is not part of a snapshot) into `corral/snapshot-<owner>:<name>`: a new image,
so the base image never changes. Snapshots are recorded in SQLite, labelled as ours, counted
against `CORRAL_MAX_SNAPSHOTS`, refused deletion while a sandbox runs from one (naming them), and
an image nothing records any more is removed by `corral gc`.
"""

from __future__ import annotations

import logging
import re

from pydantic import BaseModel

from corral.errors import InvalidRequest, QuotaExceeded, StoreConflict
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SnapshotRecord
from corral.sandbox_backend.store.snapshots import SnapshotTable
from corral.service.containers import LABEL_OWNER, LABEL_ROLE, LABEL_SANDBOX, Containers
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
        self, sandboxes: SandboxService, engine: Engine, containers: Containers, table: SnapshotTable, limit: int
    ) -> None:
        self._sandboxes = sandboxes
        self._engine = engine
        self._containers = containers
        self._table = table
        self._limit = limit

    def image_of(self, name: str) -> str:
        # Docker's image names are global: the owner keeps two data dirs' snapshots apart.
        return f"corral/snapshot-{self._containers.owner}:{name}"

    async def take(self, ref: str, name: str) -> SnapshotRecord:
        check_snapshot_name(name)
        sandbox = await self._sandboxes.resolve(ref)
        if await self._table.get(name) is not None:
            raise InvalidRequest(f"a snapshot named {name!r} already exists; pick another name or delete_snapshot it")
        if await self._table.count() >= self._limit:
            raise QuotaExceeded(
                f"this server keeps at most {self._limit} snapshots; delete_snapshot one first (list_snapshots)"
            )
        if not self._engine.capabilities.commit:
            raise InvalidRequest("this container engine cannot save a sandbox's files as an image")
        image = self.image_of(name)
        async with self._sandboxes.lock(sandbox.id):
            sandbox = await self._sandboxes.check_usable(await self._sandboxes.refresh(sandbox))
            assert sandbox.container_id is not None
            labels = self._containers.image_labels(sandbox.id, ROLE)
            image_id = await self._engine.commit(sandbox.container_id, image, labels)
        size = next((i.size_bytes for i in await self._engine.labelled_images(self._label()) if i.id == image_id), 0)
        rec = SnapshotRecord(
            name=name,
            image=image,
            image_id=image_id,
            sandbox_id=sandbox.id,
            base_image=sandbox.image,
            size_bytes=size,
            created_at=self._sandboxes.clock.now(),
        )
        try:
            await self._table.insert(rec)
        except StoreConflict:
            raise InvalidRequest(f"a snapshot named {name!r} was just taken by another call") from None
        return rec

    async def get(self, name: str) -> SnapshotRecord:
        rec = await self._table.get(check_snapshot_name(name))
        if rec is None:
            known = ", ".join(r.name for r in await self._table.list()) or "none yet (snapshot_sandbox makes one)"
            raise InvalidRequest(f"no snapshot named {name!r}. Snapshots: {known}")
        return rec

    async def all(self) -> list[SnapshotRecord]:
        return await self._table.list()

    async def delete(self, name: str) -> SnapshotRecord:
        rec = await self.get(name)
        users = [s for s in await self._sandboxes.list_all() if s.image == rec.image]
        if users:
            names = ", ".join(f"{s.id} ({s.name})" if s.name else s.id for s in users)
            raise InvalidRequest(f"snapshot {name!r} is in use by sandbox(es) {names}; delete them first")
        await self._engine.remove_image(rec.image)
        await self._table.delete(name)
        return rec

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
        recorded = {r.image for r in await self._table.list()} | {s.image for s in await self._sandboxes.list_all()}
        found = []
        for role in (ROLE, "fork"):
            for image in await self._engine.labelled_images(f"{LABEL_ROLE}={role}"):
                if image.labels.get(LABEL_OWNER) != owner or image.labels.get(LABEL_SANDBOX) is None:
                    continue
                tags = [t for t in image.tags if t not in recorded]
                if image.tags and len(tags) == len(image.tags):
                    found += tags
        return found
