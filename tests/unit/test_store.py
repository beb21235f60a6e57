"""The SQLite store on its own: migrations, records, audit, errors, sharing one file."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from corral.errors import StoreConflict, StoreError
from corral.sandbox_backend.store import AuditEntry, SandboxRecord, Store
from corral.sandbox_backend.store.db import migrations


@pytest.fixture
async def opened() -> AsyncIterator[list[Store]]:
    """Stores a test opens; closed after it, also when it fails (aiosqlite's thread would
    otherwise keep the test process alive)."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        await store.close()


async def open_store(opened: list[Store], path: Path, **kwargs: bool) -> Store:
    store = await Store.open(path, **kwargs)
    opened.append(store)
    return store


def record(sandbox_id: str = "sb-00000001", name: str | None = "one") -> SandboxRecord:
    now = time.time()
    return SandboxRecord(
        id=sandbox_id, name=name, container_id="c1", image="img", runtime="corral-runsc", network="none",
        memory_bytes=1 << 30, cpus=1.0, pids_limit=2048, status="running", created_at=now,
        last_used_at=now, labels={"team": "a"},
    )


async def test_migrations_apply_in_name_order_once(tmp_path: Path, opened: list[Store]) -> None:
    store = await open_store(opened, tmp_path / "c.db")
    names = [name for name, _ in migrations()]
    assert names == sorted(names) and names[0] == "001_sandboxes"
    assert await store.db.applied_migrations() == names
    assert await store.db.migrate() == []


async def test_two_servers_opening_one_new_database_at_once_both_succeed(
    tmp_path: Path, opened: list[Store]
) -> None:
    stores: list[Store] = []

    async def open_one() -> None:
        stores.append(await open_store(opened, tmp_path / "c.db"))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(open_one)
    assert [await s.db.applied_migrations() for s in stores] == [[n for n, _ in migrations()]] * 4


async def test_database_uses_wal_and_is_private(tmp_path: Path, opened: list[Store]) -> None:
    await open_store(opened, tmp_path / "data" / "c.db")
    with sqlite3.connect(tmp_path / "data" / "c.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "c.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700


async def test_record_round_trips_and_is_found_by_id_or_name(tmp_path: Path, opened: list[Store]) -> None:
    store = await open_store(opened, tmp_path / "c.db")
    rec = record()
    await store.sandboxes.insert(rec)
    assert await store.sandboxes.get("sb-00000001") == rec
    assert await store.sandboxes.get("one") == rec
    assert await store.sandboxes.get("two") is None
    await store.sandboxes.update(rec.id, status="lost")
    got = await store.sandboxes.get("one")
    assert got is not None and got.status == "lost"


async def test_records_survive_reopening(tmp_path: Path, opened: list[Store]) -> None:
    store = await open_store(opened, tmp_path / "c.db")
    await store.sandboxes.insert(record())
    reopened = await open_store(opened, tmp_path / "c.db")
    assert [r.id for r in await reopened.sandboxes.list()] == ["sb-00000001"]


async def test_a_taken_name_is_a_store_conflict_not_a_sqlite_error(tmp_path: Path, opened: list[Store]) -> None:
    store = await open_store(opened, tmp_path / "c.db")
    await store.sandboxes.insert(record())
    with pytest.raises(StoreConflict):
        await store.sandboxes.insert(record("sb-00000002", name="one"))


async def test_unknown_fields_are_refused(tmp_path: Path, opened: list[Store]) -> None:
    store = await open_store(opened, tmp_path / "c.db")
    with pytest.raises(ValueError, match="unknown SandboxRecord fields"):
        await store.sandboxes.update("sb-00000001", colour="red")


async def test_read_only_store_reads_and_refuses_writes(tmp_path: Path, opened: list[Store]) -> None:
    store = await open_store(opened, tmp_path / "c.db")
    await store.sandboxes.insert(record())
    reader = await open_store(opened, tmp_path / "c.db", read_only=True)
    assert [r.id for r in await reader.sandboxes.list()] == ["sb-00000001"]
    with pytest.raises(StoreError, match="read-only"):
        await reader.sandboxes.delete("sb-00000001")
    empty = await open_store(opened, tmp_path / "missing.db", read_only=True)
    assert await empty.sandboxes.list() == []
    with pytest.raises(StoreError, match="read-only"):
        await empty.sandboxes.insert(record())
    assert not (tmp_path / "missing.db").exists()


async def test_writers_on_two_connections_wait_for_each_other(tmp_path: Path, opened: list[Store]) -> None:
    first, second = await open_store(opened, tmp_path / "c.db"), await open_store(opened, tmp_path / "c.db")

    async def write(store: Store, prefix: int) -> None:
        for i in range(50):
            await store.sandboxes.insert(record(f"sb-{prefix:02d}{i:06d}", name=None))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write, first, 1)
            tg.start_soon(write, second, 2)
    assert await first.sandboxes.count() == 100


async def test_audit_entries_are_listed_newest_first(tmp_path: Path, opened: list[Store]) -> None:
    store = await open_store(opened, tmp_path / "c.db")
    for i in range(3):
        await store.audit.record(AuditEntry(float(i), f"tool{i}", "sb-1", "ok", None, 1.0))
    assert [e.tool for e in await store.audit.entries()] == ["tool2", "tool1", "tool0"]
    assert await store.audit.entries(sandbox="sb-2") == []
