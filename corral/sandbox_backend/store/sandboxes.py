"""The `sandboxes` table."""

from __future__ import annotations

from typing import Any

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import SandboxRecord
from corral.sandbox_backend.store.rows import RowCodec

SANDBOX_ROWS = _ROWS = RowCodec(SandboxRecord)


class SandboxTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: SandboxRecord) -> None:
        """Raises StoreConflict if the id or the name is taken."""
        await self._db.execute(
            f"INSERT INTO sandboxes ({_ROWS.columns}) VALUES ({_ROWS.placeholders})", _ROWS.values(rec)
        )

    async def update(self, sandbox_id: str, **fields: Any) -> None:
        assignments, values = _ROWS.changes(fields)
        await self._db.execute(f"UPDATE sandboxes SET {assignments} WHERE id = ?", (*values, sandbox_id))

    async def delete(self, sandbox_id: str) -> None:
        await self._db.execute("DELETE FROM sandboxes WHERE id = ?", (sandbox_id,))

    async def get(self, ref: str) -> SandboxRecord | None:
        """By id or by name (an id wins over a name that looks the same)."""
        row = await self._db.fetchone(
            f"SELECT {_ROWS.columns} FROM sandboxes WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (ref, ref, ref),
        )
        return _ROWS.decode(row) if row else None

    async def list(self) -> list[SandboxRecord]:
        rows = await self._db.fetchall(f"SELECT {_ROWS.columns} FROM sandboxes ORDER BY created_at")
        return [_ROWS.decode(row) for row in rows]

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM sandboxes")
        return int(row[0]) if row else 0
