"""Corral's state in SQLite: one database per data dir, one table object per table.

`Store.open(path)` migrates the schema (named, ordered files in `migrations/`) and hands out the
tables; features get only the tables they use.
"""

from __future__ import annotations

from pathlib import Path

from corral.errors import StoreError
from corral.sandbox_backend.store.audit import AuditTable
from corral.sandbox_backend.store.contexts import ContextTable
from corral.sandbox_backend.store.db import Database, migrations
from corral.sandbox_backend.store.egress import EgressRecord, EgressTable
from corral.sandbox_backend.store.git_remotes import GitRemoteTable
from corral.sandbox_backend.store.instances import HelperTable, InstanceTable
from corral.sandbox_backend.store.pool import PoolTable
from corral.sandbox_backend.store.processes import PortTable, ProcessTable
from corral.sandbox_backend.store.records import (
    AuditEntry,
    HelperRecord,
    InstanceRecord,
    PoolRecord,
    PortRecord,
    ProcessRecord,
    SandboxRecord,
    SandboxUsage,
    SnapshotRecord,
    TokenRecord,
    VolumeRecord,
)
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.sandbox_backend.store.snapshots import SnapshotTable
from corral.sandbox_backend.store.tokens import TokenTable
from corral.sandbox_backend.store.volumes import VolumeTable


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.sandboxes = SandboxTable(db)
        self.processes = ProcessTable(db)
        self.ports = PortTable(db)
        self.contexts = ContextTable(db)
        self.audit = AuditTable(db)
        self.pool = PoolTable(db)
        self.snapshots = SnapshotTable(db)
        self.git_remotes = GitRemoteTable(db)
        self.instances = InstanceTable(db)
        self.helpers = HelperTable(db)
        self.tokens = TokenTable(db)
        self.egress = EgressTable(db)
        self.volumes = VolumeTable(db)

    @classmethod
    async def open(cls, path: Path, *, read_only: bool = False) -> Store:
        db = await Database.open(path, read_only=read_only)
        try:
            await db.migrate()
            if db.read_only:
                await _check_schema(db)
            if read_only:
                db.read_only = True  # an empty stand-in for a missing file is read-only too
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self.db.close()


async def _check_schema(db: Database) -> None:
    """A read-only open cannot migrate: refuse a database an older Corral wrote, with the fix."""
    try:
        applied = set(await db.applied_migrations())
    except StoreError:
        applied = set()
    missing = [name for name, _ in migrations() if name not in applied]
    if missing:
        raise StoreError(
            f"the state database {db.path} predates this Corral (missing: {', '.join(missing)}); start "
            "`corral serve` once, or run a command that changes something, to upgrade it"
        )


__all__ = [
    "AuditEntry",
    "EgressRecord",
    "EgressTable",
    "GitRemoteTable",
    "HelperRecord",
    "InstanceRecord",
    "PoolRecord",
    "PortRecord",
    "ProcessRecord",
    "SandboxRecord",
    "SandboxUsage",
    "SnapshotRecord",
    "Store",
    "TokenRecord",
    "VolumeRecord",
]
