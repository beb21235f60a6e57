"""The `processes` and `ports` tables (migration 003_processes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import PortRecord, ProcessRecord
from corral.sandbox_backend.store.rows import RowCodec

_PROCESSES = RowCodec(ProcessRecord)


class ProcessTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: ProcessRecord) -> None:
        await self._db.execute(
            f"INSERT INTO processes ({_PROCESSES.columns}) VALUES ({_PROCESSES.placeholders})",
            _PROCESSES.values(rec),
        )

    async def get(self, process_id: str) -> ProcessRecord | None:
        row = await self._db.fetchone(f"SELECT {_PROCESSES.columns} FROM processes WHERE id = ?", (process_id,))
        return _PROCESSES.decode(row) if row else None

    async def list(self, sandbox_id: str | None = None) -> list[ProcessRecord]:
        query = f"SELECT {_PROCESSES.columns} FROM processes"
        params: tuple[Any, ...] = ()
        if sandbox_id is not None:
            query += " WHERE sandbox_id = ?"
            params = (sandbox_id,)
        rows = await self._db.fetchall(query + " ORDER BY started_at, id", params)
        return [_PROCESSES.decode(row) for row in rows]

    async def update(self, process_id: str, **fields: Any) -> None:
        assignments, values = _PROCESSES.changes(fields)
        await self._db.execute(f"UPDATE processes SET {assignments} WHERE id = ?", (*values, process_id))

    async def delete(self, sandbox_id: str, process_ids: Iterable[str] | None = None) -> None:
        """Forget a sandbox's processes: all of them, or only the listed ones."""
        if process_ids is None:
            await self._db.execute("DELETE FROM processes WHERE sandbox_id = ?", (sandbox_id,))
            return
        async with self._db.transaction() as conn:
            await conn.executemany(
                "DELETE FROM processes WHERE sandbox_id = ? AND id = ?", [(sandbox_id, p) for p in process_ids]
            )


class PortTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, rec: PortRecord) -> None:
        await self._db.execute(
            "INSERT INTO ports (sandbox_id, port, host, host_port, created_at, instance_id) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (sandbox_id, port) DO UPDATE SET host = excluded.host, host_port = excluded.host_port, "
            "instance_id = excluded.instance_id",
            (rec.sandbox_id, rec.port, rec.host, rec.host_port, rec.created_at, rec.instance_id),
        )

    async def take_over(self, rec: PortRecord, previous_owner: str | None) -> bool:
        """Record `rec` (a listener of ours) in place of the one `previous_owner` had; False if
        another server was quicker (or the port was closed meanwhile)."""
        changed = await self._db.execute(
            "UPDATE ports SET host = ?, host_port = ?, instance_id = ? WHERE sandbox_id = ? AND port = ? "
            "AND instance_id IS ?",
            (rec.host, rec.host_port, rec.instance_id, rec.sandbox_id, rec.port, previous_owner),
        )
        return changed == 1

    async def list(self, sandbox_id: str | None = None) -> list[PortRecord]:
        query = "SELECT sandbox_id, port, host, host_port, created_at, instance_id FROM ports"
        params: tuple[Any, ...] = ()
        if sandbox_id is not None:
            query += " WHERE sandbox_id = ?"
            params = (sandbox_id,)
        return [PortRecord(*row) for row in await self._db.fetchall(query + " ORDER BY created_at, port", params)]

    async def delete(self, sandbox_id: str, port: int | None = None) -> None:
        if port is None:
            await self._db.execute("DELETE FROM ports WHERE sandbox_id = ?", (sandbox_id,))
        else:
            await self._db.execute("DELETE FROM ports WHERE sandbox_id = ? AND port = ?", (sandbox_id, port))
