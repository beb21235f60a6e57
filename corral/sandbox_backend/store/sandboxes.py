"""The `sandboxes` table.

Lookups take the caller's tenant: `None` means every tenant (the operator); any other value sees
only that tenant's rows, so a query can never return another tenant's sandbox by mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiosqlite

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import SandboxRecord, SandboxUsage
from corral.sandbox_backend.store.rows import RowCodec

SANDBOX_ROWS = _ROWS = RowCodec(SandboxRecord)
# A sandbox's disk limit counts toward a tenant's disk quota once records carry one (disk quotas).
DISK_FIELD = "disk_bytes"
_DISK_SUM = f"COALESCE(SUM({DISK_FIELD}), 0)" if DISK_FIELD in _ROWS.fields else "0"

UsageCheck = Callable[[SandboxUsage, SandboxUsage], None]  # (whole server, the tenant) -> raise to refuse


def _scope(tenant: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("", ()) if tenant is None else (" AND tenant = ?", (tenant,))


def _usage_query(tenant: str | None) -> tuple[str, tuple[Any, ...]]:
    """Count, memory and disk in use; disk counts named volumes (migration 054) as well, since they
    are the same kind of sized ext4 image on the host."""
    clause, params = _scope(tenant)
    volumes = f"(SELECT COALESCE(SUM(size_bytes), 0) FROM volumes WHERE 1{clause})"
    query = f"SELECT COUNT(*), COALESCE(SUM(memory_bytes), 0), {_DISK_SUM} + {volumes} FROM sandboxes WHERE 1{clause}"
    return query, (*params, *params)


class SandboxTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def read_only(self) -> bool:
        """Opened by a command that may only look (next to a live server)."""
        return self._db.read_only

    async def insert(self, rec: SandboxRecord, check: UsageCheck | None = None) -> None:
        """Insert; `check` sees the server's and the record's tenant's usage in the same
        transaction, so concurrent creates (from any process) cannot overshoot a quota together.
        Raises StoreConflict if the id or the tenant's name is taken."""
        async with self._db.transaction() as conn:
            if check is not None:
                check(await usage_in(conn, None), await usage_in(conn, rec.tenant))
            await conn.execute(
                f"INSERT INTO sandboxes ({_ROWS.columns}) VALUES ({_ROWS.placeholders})", _ROWS.values(rec)
            )

    async def update(self, sandbox_id: str, **fields: Any) -> None:
        assignments, values = _ROWS.changes(fields)
        await self._db.execute(f"UPDATE sandboxes SET {assignments} WHERE id = ?", (*values, sandbox_id))

    async def delete(self, sandbox_id: str) -> None:
        await self._db.execute("DELETE FROM sandboxes WHERE id = ?", (sandbox_id,))

    async def find(self, ref: str, tenant: str | None) -> list[SandboxRecord]:
        """The sandbox with id `ref`, else those named `ref` (several only across tenants)."""
        clause, params = _scope(tenant)
        for column in ("id", "name"):
            rows = await self._db.fetchall(
                f"SELECT {_ROWS.columns} FROM sandboxes WHERE {column} = ?{clause} ORDER BY created_at", (ref, *params)
            )
            if rows:
                return [_ROWS.decode(row) for row in rows]
        return []

    async def get(self, ref: str, tenant: str | None = None) -> SandboxRecord | None:
        """By id or by name (an id wins over a name that looks the same)."""
        found = await self.find(ref, tenant)
        return found[0] if found else None

    async def list(self, tenant: str | None = None) -> list[SandboxRecord]:
        clause, params = _scope(tenant)
        rows = await self._db.fetchall(
            f"SELECT {_ROWS.columns} FROM sandboxes WHERE 1{clause} ORDER BY created_at", params
        )
        return [_ROWS.decode(row) for row in rows]

    async def count(self, tenant: str | None = None) -> int:
        clause, params = _scope(tenant)
        row = await self._db.fetchone(f"SELECT COUNT(*) FROM sandboxes WHERE 1{clause}", params)
        return int(row[0]) if row else 0

    async def usage(self, tenant: str | None = None) -> SandboxUsage:
        query, params = _usage_query(tenant)
        row = await self._db.fetchone(query, params)
        return SandboxUsage(*(int(v) for v in row)) if row else SandboxUsage()


async def usage_in(conn: aiosqlite.Connection, tenant: str | None) -> SandboxUsage:
    query, params = _usage_query(tenant)
    async with conn.execute(query, params) as cur:
        row = await cur.fetchone()
    return SandboxUsage(*(int(v) for v in row)) if row else SandboxUsage()
