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
        # WAL + NORMAL: commits survive a process crash; only an OS crash may lose the last ones.
        await conn.execute("PRAGMA synchronous=NORMAL")
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

    # -- interpreter contexts ---------------------------------------------------------------

    async def swap_context_agent(self, sandbox_id: str, language: str, name: str, agent_started: float) -> float | None:
        """Record that the context now lives in the daemon started at `agent_started`; return
        the daemon it lived in before (None if the context is new)."""
        async with self._db.execute(
            "SELECT agent_started FROM contexts WHERE sandbox_id = ? AND language = ? AND name = ?",
            (sandbox_id, language, name),
        ) as cur:
            row = await cur.fetchone()
        await self._db.execute(
            "INSERT OR REPLACE INTO contexts VALUES (?, ?, ?, ?)", (sandbox_id, language, name, agent_started)
        )
        await self._db.commit()
        return float(row[0]) if row else None

    async def forget_contexts(self, sandbox_id: str) -> None:
        await self._db.execute("DELETE FROM contexts WHERE sandbox_id = ?", (sandbox_id,))
        await self._db.commit()

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

    # -- background processes and exposed ports (migration 003_processes) -------------------

    async def insert_process(self, rec: ProcessRecord) -> None:
        await self._db.execute(
            f"INSERT INTO processes ({_PROCESS_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                rec.id,
                rec.sandbox_id,
                rec.agent_id,
                rec.pid,
                rec.command,
                rec.cwd,
                rec.started_at,
                rec.cursor,
                int(rec.running),
                rec.exit_code,
                rec.ended_at,
            ),
        )
        await self._db.commit()

    async def get_process(self, process_id: str) -> ProcessRecord | None:
        async with self._db.execute(
            f"SELECT {_PROCESS_COLUMNS} FROM processes WHERE id = ?", (process_id,)
        ) as cur:
            row = await cur.fetchone()
        return _row_to_process(row) if row else None

    async def list_processes(self, sandbox_id: str | None = None) -> list[ProcessRecord]:
        query = f"SELECT {_PROCESS_COLUMNS} FROM processes"
        params: tuple[Any, ...] = ()
        if sandbox_id is not None:
            query += " WHERE sandbox_id = ?"
            params = (sandbox_id,)
        async with self._db.execute(query + " ORDER BY started_at, id", params) as cur:
            return [_row_to_process(row) for row in await cur.fetchall()]

    async def update_process(self, process_id: str, **fields: Any) -> None:
        if "running" in fields:
            fields["running"] = int(fields["running"])
        assignments = ", ".join(f"{key} = ?" for key in fields)
        await self._db.execute(
            f"UPDATE processes SET {assignments} WHERE id = ?", (*fields.values(), process_id)
        )
        await self._db.commit()

    async def delete_processes(self, sandbox_id: str, process_ids: Iterable[str] | None = None) -> None:
        """Forget a sandbox's processes: all of them, or only the listed ones."""
        if process_ids is None:
            await self._db.execute("DELETE FROM processes WHERE sandbox_id = ?", (sandbox_id,))
        else:
            await self._db.executemany(
                "DELETE FROM processes WHERE sandbox_id = ? AND id = ?",
                [(sandbox_id, pid) for pid in process_ids],
            )
        await self._db.commit()

    async def upsert_port(self, rec: PortRecord) -> None:
        await self._db.execute(
            "INSERT INTO ports (sandbox_id, port, host, host_port, created_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (sandbox_id, port) DO UPDATE SET host = excluded.host, "
            "host_port = excluded.host_port",
            (rec.sandbox_id, rec.port, rec.host, rec.host_port, rec.created_at),
        )
        await self._db.commit()

    async def list_ports(self, sandbox_id: str | None = None) -> list[PortRecord]:
        query = "SELECT sandbox_id, port, host, host_port, created_at FROM ports"
        params: tuple[Any, ...] = ()
        if sandbox_id is not None:
            query += " WHERE sandbox_id = ?"
            params = (sandbox_id,)
        async with self._db.execute(query + " ORDER BY created_at, port", params) as cur:
            return [PortRecord(*row) for row in await cur.fetchall()]

    async def delete_ports(self, sandbox_id: str, port: int | None = None) -> None:
        if port is None:
            await self._db.execute("DELETE FROM ports WHERE sandbox_id = ?", (sandbox_id,))
        else:
            await self._db.execute("DELETE FROM ports WHERE sandbox_id = ? AND port = ?", (sandbox_id, port))
        await self._db.commit()


@dataclass(frozen=True)
class ProcessRecord:
    """A background process: `id` (p-xxxxxx) is what the model sees, `agent_id` the agent's."""

    id: str
    sandbox_id: str
    agent_id: str
    pid: int | None
    command: str
    cwd: str | None
    started_at: float
    cursor: int = 0  # where process_output continues when no `since` is given
    running: bool = True
    exit_code: int | None = None
    ended_at: float | None = None

    def with_(self, **changes: Any) -> ProcessRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class PortRecord:
    """A sandbox port forwarded from host:host_port."""

    sandbox_id: str
    port: int
    host: str
    host_port: int
    created_at: float


_PROCESS_COLUMNS = (
    "id, sandbox_id, agent_id, pid, command, cwd, started_at, cursor, running, exit_code, ended_at"
)


def _row_to_process(row: aiosqlite.Row) -> ProcessRecord:
    return ProcessRecord(
        id=row["id"],
        sandbox_id=row["sandbox_id"],
        agent_id=row["agent_id"],
        pid=row["pid"],
        command=row["command"],
        cwd=row["cwd"],
        started_at=row["started_at"],
        cursor=row["cursor"],
        running=bool(row["running"]),
        exit_code=row["exit_code"],
        ended_at=row["ended_at"],
    )
