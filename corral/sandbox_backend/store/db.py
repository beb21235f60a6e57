"""One SQLite connection with Corral's rules: WAL, busy waits, retried writes, translated errors.

Several Corral servers may share one data dir (every Claude Code window starts its own stdio
server on the default CORRAL_HOME), so every write is short, autocommitted or in an IMMEDIATE
transaction (a deferred one could fail at once with SQLITE_BUSY when it upgrades to a write),
and a write that still meets a lock is retried until a deadline. sqlite3's exceptions never
leave this module: they become `StoreError` / `StoreConflict`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import anyio.to_thread

from corral.errors import StoreConflict, StoreError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
WRITE_DEADLINE = 30.0  # seconds a write keeps retrying while another process holds the lock


def migrations() -> list[tuple[str, str]]:
    """(name, sql) of every migration file, in name order. Append only: never edit a shipped one."""
    folder = resources.files("corral.sandbox_backend.store") / "migrations"
    files = sorted((f.name, f) for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), f.read_text()) for name, f in files]


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@contextlib.contextmanager
def map_sqlite_errors(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise StoreConflict(f"{what}: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(
            f"{what}: Corral's state database failed ({exc}). If another program holds it locked, "
            "try again; if the disk is full, free space."
        ) from exc


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path, read_only: bool) -> None:
        self._conn = conn
        self.path = path
        self.read_only = read_only
        self._write_lock = anyio.Lock()  # one transaction at a time on this connection

    @classmethod
    async def open(cls, path: Path, *, read_only: bool = False) -> Database:
        exists = await anyio.to_thread.run_sync(_prepare_files, path, read_only)
        with map_sqlite_errors("open the state database"):
            if read_only and not exists:
                # Nothing was ever recorded here: an empty database in memory says exactly that.
                conn = await aiosqlite.connect(":memory:", isolation_level=None)
            elif read_only:
                conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            else:
                conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path, read_only=read_only and exists)
        with map_sqlite_errors("configure the state database"):
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not read_only:
                await db._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                # WAL + NORMAL: commits survive a process crash; only an OS crash may lose the last ones.
                await conn.execute("PRAGMA synchronous=NORMAL")
        return db

    async def close(self) -> None:
        await self._conn.close()

    async def _retry(self, fn: Any) -> Any:
        deadline = time.monotonic() + WRITE_DEADLINE
        delay = 0.02
        while True:
            try:
                return await fn()
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or time.monotonic() > deadline:
                    raise
                log.debug("state database busy (%s); retrying", exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.5)

    # -- reads --------------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async def run() -> list[aiosqlite.Row]:
            async with self._conn.execute(sql, tuple(params)) as cur:
                return list(await cur.fetchall())

        with map_sqlite_errors("read the state database"):
            return await self._retry(run)  # type: ignore[no-any-return]

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    # -- writes -------------------------------------------------------------------------------

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One autocommitted write; returns the number of rows it changed."""
        self._check_writable()

        async def run() -> int:
            async with self._write_lock:
                cur = await self._conn.execute(sql, tuple(params))
                count = cur.rowcount
                await cur.close()
                return count

        with map_sqlite_errors("write the state database"):
            return await self._retry(run)  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Several statements as one IMMEDIATE transaction (all or nothing)."""
        self._check_writable()
        async with self._write_lock:
            with map_sqlite_errors("write the state database"):
                await self._retry(lambda: self._conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield self._conn
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError("the state database was opened read-only; this command changes nothing")

    # -- schema -------------------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        """Apply the migrations not yet applied; safe when several servers start at once."""
        if self.read_only:
            return []
        await self.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        applied = []
        async with self.transaction() as conn:
            async with conn.execute("SELECT name FROM _migrations") as cur:
                done = {row[0] for row in await cur.fetchall()}
            for name, sql in migrations():
                if name in done:
                    continue
                for statement in _statements(sql):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                applied.append(name)
        return applied

    async def applied_migrations(self) -> list[str]:
        return [row[0] for row in await self.fetchall("SELECT name FROM _migrations ORDER BY name")]


def _prepare_files(path: Path, read_only: bool) -> bool:
    """Make the database file (private) unless read-only; returns whether it exists."""
    if read_only:
        return path.exists()
    # The database holds every sandbox's record and audit trail: for its owner's eyes only. A data
    # dir Corral creates is private too; an existing one is the operator's to set (never chmod /tmp).
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return True


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (migrations hold no ';' inside literals)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
