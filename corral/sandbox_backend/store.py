"""SQLite state: sandboxes and the audit log (aiosqlite, WAL, named migrations)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiosqlite

from corral.sandbox_backend.migrations import MIGRATIONS


@dataclass(frozen=True)
class SandboxRecord:
    id: str
    name: str | None
    container_id: str | None
    image: str
    runtime: str
    network: str
    memory_bytes: int
    cpus: float
    pids_limit: int
    status: str  # creating | running | stopped | lost | error
    created_at: float
    last_used_at: float
    labels: dict[str, str] = field(default_factory=dict)

    def with_(self, **changes: Any) -> SandboxRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class AuditEntry:
    ts: float
    tool: str
    sandbox: str | None
    outcome: str
    detail: str | None
    duration_ms: float


_COLUMNS = (
    "id, name, container_id, image, runtime, network, memory_bytes, cpus, pids_limit, labels, "
    "status, created_at, last_used_at"
)


def _row_to_record(row: aiosqlite.Row) -> SandboxRecord:
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


class Store:
    """One aiosqlite connection; every write commits at once so a crash loses nothing."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._db = conn

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA foreign_keys=ON")
        store = cls(conn)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    async def migrate(self) -> list[str]:
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        async with self._db.execute("SELECT name FROM _migrations") as cur:
            done = {row[0] for row in await cur.fetchall()}
        applied = []
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            await self._db.executescript(
                f"BEGIN;\n{sql}\nINSERT INTO _migrations VALUES ('{name}', {time.time()});\nCOMMIT;"
            )
            applied.append(name)
        return applied

    async def applied_migrations(self) -> list[str]:
        async with self._db.execute("SELECT name FROM _migrations ORDER BY name") as cur:
            return [row[0] for row in await cur.fetchall()]

    # -- sandboxes ---------------------------------------------------------------------------

    async def insert_sandbox(self, rec: SandboxRecord) -> None:
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
        await self._db.commit()

    async def update_sandbox(self, sandbox_id: str, **fields: Any) -> None:
        if "labels" in fields:
            fields["labels"] = json.dumps(fields["labels"])
        assignments = ", ".join(f"{key} = ?" for key in fields)
        await self._db.execute(
            f"UPDATE sandboxes SET {assignments} WHERE id = ?", (*fields.values(), sandbox_id)
        )
        await self._db.commit()

    async def delete_sandbox(self, sandbox_id: str) -> None:
        await self._db.execute("DELETE FROM sandboxes WHERE id = ?", (sandbox_id,))
        await self._db.commit()

    async def get_sandbox(self, ref: str) -> SandboxRecord | None:
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM sandboxes WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            (ref, ref, ref),
        ) as cur:
            row = await cur.fetchone()
        return _row_to_record(row) if row else None

    async def list_sandboxes(self) -> list[SandboxRecord]:
        async with self._db.execute(f"SELECT {_COLUMNS} FROM sandboxes ORDER BY created_at") as cur:
            return [_row_to_record(row) for row in await cur.fetchall()]

    async def count_sandboxes(self) -> int:
        async with self._db.execute("SELECT COUNT(*) FROM sandboxes") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- audit ------------------------------------------------------------------------------

    async def record_audit(self, entry: AuditEntry) -> None:
        await self._db.execute(
            "INSERT INTO audit (ts, tool, sandbox, outcome, detail, duration_ms) VALUES (?,?,?,?,?,?)",
            (entry.ts, entry.tool, entry.sandbox, entry.outcome, entry.detail, entry.duration_ms),
        )
        await self._db.commit()

    async def audit_log(self, *, sandbox: str | None = None, limit: int = 100) -> list[AuditEntry]:
        query = "SELECT ts, tool, sandbox, outcome, detail, duration_ms FROM audit"
        params: Iterable[Any] = ()
        if sandbox is not None:
            query += " WHERE sandbox = ?"
            params = (sandbox,)
        query += " ORDER BY id DESC LIMIT ?"
        async with self._db.execute(query, (*params, limit)) as cur:
            rows = await cur.fetchall()
        return [AuditEntry(*row) for row in rows]
