"""The `snapshots` table (migrations 051_snapshots, 053_snapshot_tenants).

Lookups take the caller's tenant like the sandboxes table: `None` means every tenant (the
operator, gc); any other value sees only that tenant's snapshots.
"""

from __future__ import annotations

from typing import Any

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import SnapshotRecord
from corral.sandbox_backend.store.rows import RowCodec

_ROWS = RowCodec(SnapshotRecord)


def _scope(tenant: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("", ()) if tenant is None else (" AND tenant = ?", (tenant,))


class SnapshotTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: SnapshotRecord) -> None:
        """Raises StoreConflict if the tenant already has a snapshot of that name."""
        await self._db.execute(
            f"INSERT INTO snapshots ({_ROWS.columns}) VALUES ({_ROWS.placeholders})", _ROWS.values(rec)
        )

    async def get(self, name: str, tenant: str | None = None) -> SnapshotRecord | None:
        clause, params = _scope(tenant)
        row = await self._db.fetchone(
            f"SELECT {_ROWS.columns} FROM snapshots WHERE name = ?{clause} ORDER BY created_at", (name, *params)
        )
        return _ROWS.decode(row) if row else None

    async def list(self, tenant: str | None = None) -> list[SnapshotRecord]:
        clause, params = _scope(tenant)
        rows = await self._db.fetchall(
            f"SELECT {_ROWS.columns} FROM snapshots WHERE 1{clause} ORDER BY created_at, name", params
        )
        return [_ROWS.decode(row) for row in rows]

    async def count(self, tenant: str | None = None) -> int:
        clause, params = _scope(tenant)
        row = await self._db.fetchone(f"SELECT COUNT(*) FROM snapshots WHERE 1{clause}", params)
        return int(row[0]) if row else 0

    async def delete(self, name: str, tenant: str) -> None:
        await self._db.execute("DELETE FROM snapshots WHERE name = ? AND tenant = ?", (name, tenant))
