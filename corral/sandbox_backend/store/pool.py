"""The `pool` table (migration 050_lifecycle): warm sandboxes waiting to be handed out."""

from __future__ import annotations

from collections.abc import Callable

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import PoolRecord, SandboxRecord
from corral.sandbox_backend.store.rows import RowCodec
from corral.sandbox_backend.store.sandboxes import SANDBOX_ROWS, UsageCheck, usage_in

_ROWS = RowCodec(PoolRecord)


class PoolTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: PoolRecord) -> None:
        await self._db.execute(f"INSERT INTO pool ({_ROWS.columns}) VALUES ({_ROWS.placeholders})", _ROWS.values(rec))

    async def mark_ready(self, sandbox_id: str, container_id: str) -> None:
        await self._db.execute(
            "UPDATE pool SET ready = 1, container_id = ? WHERE sandbox_id = ?", (container_id, sandbox_id)
        )

    async def set_container(self, sandbox_id: str, container_id: str) -> None:
        await self._db.execute("UPDATE pool SET container_id = ? WHERE sandbox_id = ?", (container_id, sandbox_id))

    async def hand_over(
        self,
        spec: str,
        instance_id: str,
        build: Callable[[PoolRecord], SandboxRecord],
        check: UsageCheck | None = None,
    ) -> SandboxRecord | None:
        """Take one ready member of `spec` made by `instance_id` out of the pool and record it as
        the sandbox `build(member)`, in one transaction: the row is deleted by the statement that
        finds it (two callers never get the same member), and at no moment is the container
        recorded nowhere. A taken name (StoreConflict) or a quota `check` that refuses leaves the
        member in the pool."""
        async with self._db.transaction() as conn:
            async with conn.execute(
                f"DELETE FROM pool WHERE sandbox_id = (SELECT sandbox_id FROM pool WHERE spec = ? AND "
                f"instance_id = ? AND ready = 1 ORDER BY created_at LIMIT 1) RETURNING {_ROWS.columns}",
                (spec, instance_id),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            rec = build(_ROWS.decode(row))
            if check is not None:
                check(await usage_in(conn, None), await usage_in(conn, rec.tenant))
            await conn.execute(
                f"INSERT INTO sandboxes ({SANDBOX_ROWS.columns}) VALUES ({SANDBOX_ROWS.placeholders})",
                SANDBOX_ROWS.values(rec),
            )
        return rec

    async def delete(self, sandbox_id: str) -> bool:
        return await self._db.execute("DELETE FROM pool WHERE sandbox_id = ?", (sandbox_id,)) > 0

    async def list(self, instance_id: str | None = None) -> list[PoolRecord]:
        query = f"SELECT {_ROWS.columns} FROM pool"
        params: tuple[str, ...] = ()
        if instance_id is not None:
            query += " WHERE instance_id = ?"
            params = (instance_id,)
        return [_ROWS.decode(row) for row in await self._db.fetchall(query + " ORDER BY created_at", params)]
