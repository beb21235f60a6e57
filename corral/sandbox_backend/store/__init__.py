"""Corral's state in SQLite: one database per data dir, one table object per table.

`Store.open(path)` migrates the schema (named, ordered files in `migrations/`) and hands out the
tables; features get only the tables they use.
"""

from __future__ import annotations

from pathlib import Path

from corral.sandbox_backend.store.audit import AuditTable
from corral.sandbox_backend.store.contexts import ContextTable
from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.egress import EgressRecord, EgressTable
from corral.sandbox_backend.store.git_remotes import GitRemoteTable
from corral.sandbox_backend.store.processes import PortTable, ProcessTable
from corral.sandbox_backend.store.records import AuditEntry, PortRecord, ProcessRecord, SandboxRecord
from corral.sandbox_backend.store.sandboxes import SandboxTable


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.sandboxes = SandboxTable(db)
        self.processes = ProcessTable(db)
        self.ports = PortTable(db)
        self.contexts = ContextTable(db)
        self.audit = AuditTable(db)
        self.git_remotes = GitRemoteTable(db)
        self.egress = EgressTable(db)

    @classmethod
    async def open(cls, path: Path, *, read_only: bool = False) -> Store:
        db = await Database.open(path, read_only=read_only)
        try:
            await db.migrate()
            if read_only:
                db.read_only = True  # an empty stand-in for a missing file is read-only too
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self.db.close()


__all__ = [
    "AuditEntry",
    "EgressRecord",
    "EgressTable",
    "GitRemoteTable",
    "PortRecord",
    "ProcessRecord",
    "SandboxRecord",
    "Store",
]
