"""The `tokens` table (migration 030_tenants): HTTP tenants' bearer tokens, by hash."""

from __future__ import annotations

from typing import Any

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import TokenRecord
from corral.sandbox_backend.store.rows import RowCodec

_ROWS = RowCodec(TokenRecord)


class TokenTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: TokenRecord) -> None:
        """Raises StoreConflict if the name (or, impossibly, the hash) is taken."""
        await self._db.execute(f"INSERT INTO tokens ({_ROWS.columns}) VALUES ({_ROWS.placeholders})", _ROWS.values(rec))

    async def by_hash(self, digest: str) -> TokenRecord | None:
        row = await self._db.fetchone(f"SELECT {_ROWS.columns} FROM tokens WHERE hash = ?", (digest,))
        return _ROWS.decode(row) if row else None

    async def get(self, name: str) -> TokenRecord | None:
        row = await self._db.fetchone(f"SELECT {_ROWS.columns} FROM tokens WHERE name = ?", (name,))
        return _ROWS.decode(row) if row else None

    async def list(self) -> list[TokenRecord]:
        return [_ROWS.decode(r) for r in await self._db.fetchall(f"SELECT {_ROWS.columns} FROM tokens ORDER BY name")]

    async def any(self) -> bool:
        return await self._db.fetchone("SELECT 1 FROM tokens LIMIT 1") is not None

    async def update(self, name: str, **fields: Any) -> None:
        assignments, values = _ROWS.changes(fields)
        await self._db.execute(f"UPDATE tokens SET {assignments} WHERE name = ?", (*values, name))

    async def delete(self, name: str) -> bool:
        return await self._db.execute("DELETE FROM tokens WHERE name = ?", (name,)) > 0
