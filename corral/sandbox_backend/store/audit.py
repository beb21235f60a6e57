"""The `audit` table: one row per tool call."""

from __future__ import annotations

from typing import Any

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import AuditEntry
from corral.sandbox_backend.store.rows import RowCodec

_ROWS = RowCodec(AuditEntry)


class AuditTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, entry: AuditEntry) -> None:
        await self._db.execute(
            f"INSERT INTO audit ({_ROWS.columns}) VALUES ({_ROWS.placeholders})", _ROWS.values(entry)
        )

    async def entries(
        self,
        *,
        tenant: str | None = None,
        sandbox: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("tenant = ?", tenant), ("sandbox = ?", sandbox), ("ts >= ?", since)):
            if value is not None:
                where.append(clause)
                params.append(value)
        query = f"SELECT {_ROWS.columns} FROM audit"
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = await self._db.fetchall(query + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_ROWS.decode(row) for row in rows]

    async def prune(self, before: float) -> int:
        """Forget the records older than `before`; returns how many went."""
        return await self._db.execute("DELETE FROM audit WHERE ts < ?", (before,))
