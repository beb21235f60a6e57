"""The `instances` and `helpers` tables (migrations 016, 017): who runs on this data dir, and the
helper containers they started."""

from __future__ import annotations

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import HelperRecord, InstanceRecord
from corral.sandbox_backend.store.rows import RowCodec

_INSTANCES = RowCodec(InstanceRecord)
_HELPERS = RowCodec(HelperRecord)


class InstanceTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, rec: InstanceRecord) -> None:
        await self._db.execute(
            f"INSERT OR REPLACE INTO instances ({_INSTANCES.columns}) VALUES ({_INSTANCES.placeholders})",
            _INSTANCES.values(rec),
        )

    async def beat(self, instance_id: str, now: float) -> bool:
        """Refresh the heartbeat; False if the row is gone (someone took us for dead)."""
        return await self._db.execute("UPDATE instances SET heartbeat_at = ? WHERE id = ?", (now, instance_id)) == 1

    async def list(self) -> list[InstanceRecord]:
        rows = await self._db.fetchall(f"SELECT {_INSTANCES.columns} FROM instances ORDER BY started_at")
        return [_INSTANCES.decode(row) for row in rows]

    async def delete(self, instance_id: str) -> None:
        await self._db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))


class HelperTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: HelperRecord) -> None:
        await self._db.execute(
            f"INSERT OR REPLACE INTO helpers ({_HELPERS.columns}) VALUES ({_HELPERS.placeholders})",
            _HELPERS.values(rec),
        )

    async def list(self) -> list[HelperRecord]:
        rows = await self._db.fetchall(f"SELECT {_HELPERS.columns} FROM helpers ORDER BY created_at")
        return [_HELPERS.decode(row) for row in rows]

    async def delete(self, container_id: str) -> None:
        await self._db.execute("DELETE FROM helpers WHERE container_id = ?", (container_id,))
