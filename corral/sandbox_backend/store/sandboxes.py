"""The `sandboxes` table."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from corral.sandbox_backend.store.db import Database
from corral.sandbox_backend.store.records import SandboxRecord

_COLUMNS = (
    "id, name, container_id, image, runtime, network, memory_bytes, cpus, pids_limit, labels, "
    "status, created_at, last_used_at"
)
_FIELDS = frozenset(_COLUMNS.split(", "))


def _record(row: aiosqlite.Row) -> SandboxRecord:
    return SandboxRecord(
        id=row["id"],
        name=row["name"],
        container_id=row["container_id"],
        image=row["image"],
        runtime=row["runtime"],
        network=row["network"],
        memory_bytes=row["memory_bytes"],
        cpus=row["cpus"],
        pids_limit=row["pids_limit"],
        labels=json.loads(row["labels"]),
        status=row["status"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


class SandboxTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, rec: SandboxRecord) -> None:
        """Raises StoreConflict if the id or the name is taken."""
        await self._db.execute(
            f"INSERT INTO sandboxes ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                rec.id,
                rec.name,
                rec.container_id,
                rec.image,
                rec.runtime,
                rec.network,
                rec.memory_bytes,
                rec.cpus,
                rec.pids_limit,
                json.dumps(rec.labels),
                rec.status,
                rec.created_at,
                rec.last_used_at,
            ),
        )

    async def update(self, sandbox_id: str, **fields: Any) -> None:
        unknown = set(fields) - _FIELDS
        if unknown:
            raise ValueError(f"unknown sandbox fields: {sorted(unknown)}")
        if "labels" in fields:
            fields["labels"] = json.dumps(fields["labels"])
        assignments = ", ".join(f"{key} = ?" for key in fields)
        await self._db.execute(f"UPDATE sandboxes SET {assignments} WHERE id = ?", (*fields.values(), sandbox_id))

    async def delete(self, sandbox_id: str) -> None:
        await self._db.execute("DELETE FROM sandboxes WHERE id = ?", (sandbox_id,))

    async def get(self, ref: str) -> SandboxRecord | None:
        """By id or by name (an id wins over a name that looks the same)."""
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM sandboxes WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (ref, ref, ref),
        )
        return _record(row) if row else None

    async def list(self) -> list[SandboxRecord]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM sandboxes ORDER BY created_at")
        return [_record(row) for row in rows]

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM sandboxes")
        return int(row[0]) if row else 0
