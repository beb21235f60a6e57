"""The `snapshots` table (migration 051_snapshots)."""

from __future__ import annotations

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import SnapshotRecord
from corral.sandbox_backend.store.rows import RowCodec

_ROWS = RowCodec(SnapshotRecord)


class SnapshotTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: SnapshotRecord) -> None:
        """Raises StoreConflict if the name is taken."""
        await self._db.execute(
            f"INSERT INTO snapshots ({_ROWS.columns}) VALUES ({_ROWS.placeholders})", _ROWS.values(rec)
        )

    async def get(self, name: str) -> SnapshotRecord | None:
        row = await self._db.fetchone(f"SELECT {_ROWS.columns} FROM snapshots WHERE name = ?", (name,))
        return _ROWS.decode(row) if row else None

    async def list(self) -> list[SnapshotRecord]:
        rows = await self._db.fetchall(f"SELECT {_ROWS.columns} FROM snapshots ORDER BY created_at, name")
        return [_ROWS.decode(row) for row in rows]

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM snapshots")
        return int(row[0]) if row else 0

    async def delete(self, name: str) -> None:
        await self._db.execute("DELETE FROM snapshots WHERE name = ?", (name,))
