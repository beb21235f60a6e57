"""The `volumes` table (migration 054_volumes): named volumes, per tenant like sandboxes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import SandboxUsage, VolumeRecord
from corral.sandbox_backend.store.rows import RowCodec
from corral.sandbox_backend.store.sandboxes import usage_in

_ROWS = RowCodec(VolumeRecord)


def _scope(tenant: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("", ()) if tenant is None else (" AND tenant = ?", (tenant,))


class VolumeTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: VolumeRecord, check: Callable[[SandboxUsage], None] | None = None) -> None:
        """Raises StoreConflict if the tenant already has a volume of that name. `check` sees the
        tenant's usage (sandboxes and volumes) in the same transaction, so concurrent creates cannot
        overshoot its disk quota together."""
        async with self._db.transaction() as conn:
            if check is not None:
                check(await usage_in(conn, rec.tenant))
            query = f"INSERT INTO volumes ({_ROWS.columns}) VALUES ({_ROWS.placeholders})"
            await conn.execute(query, _ROWS.values(rec))

    async def get(self, name: str, tenant: str | None) -> VolumeRecord | None:
        clause, params = _scope(tenant)
        row = await self._db.fetchone(
            f"SELECT {_ROWS.columns} FROM volumes WHERE name = ?{clause} ORDER BY created_at", (name, *params)
        )
        return _ROWS.decode(row) if row else None

    async def list(self, tenant: str | None = None) -> list[VolumeRecord]:
        clause, params = _scope(tenant)
        rows = await self._db.fetchall(
            f"SELECT {_ROWS.columns} FROM volumes WHERE 1{clause} ORDER BY created_at, name", params
        )
        return [_ROWS.decode(row) for row in rows]

    async def delete(self, name: str, tenant: str) -> None:
        await self._db.execute("DELETE FROM volumes WHERE name = ? AND tenant = ?", (name, tenant))
