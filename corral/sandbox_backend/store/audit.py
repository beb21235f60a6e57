"""The `audit` table: one row per tool call."""

from __future__ import annotations

from typing import Any

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import AuditEntry


class AuditTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, entry: AuditEntry) -> None:
        await self._db.execute(
            "INSERT INTO audit (ts, tool, sandbox, outcome, detail, duration_ms) VALUES (?,?,?,?,?,?)",
            (entry.ts, entry.tool, entry.sandbox, entry.outcome, entry.detail, entry.duration_ms),
        )

    async def entries(self, *, sandbox: str | None = None, limit: int = 100) -> list[AuditEntry]:
        query = "SELECT ts, tool, sandbox, outcome, detail, duration_ms FROM audit"
        params: list[Any] = []
        if sandbox is not None:
            query += " WHERE sandbox = ?"
            params.append(sandbox)
        rows = await self._db.fetchall(query + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [AuditEntry(*row) for row in rows]
