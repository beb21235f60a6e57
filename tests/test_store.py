"""The SQLite store on its own: migrations, records, audit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from corral.sandbox_backend.migrations import MIGRATIONS
from corral.sandbox_backend.store import AuditEntry, SandboxRecord, Store


def record(sandbox_id: str = "sb-00000001", name: str | None = "one") -> SandboxRecord:
    now = time.time()
    return SandboxRecord(
        id=sandbox_id, name=name, container_id="c1", image="img", runtime="corral-runsc", network="none",
        memory_bytes=1 << 30, cpus=1.0, pids_limit=2048, status="running", created_at=now,
        last_used_at=now, labels={"team": "a"},
    )


async def test_migrations_apply_in_order_once(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db")
    assert await store.applied_migrations() == [name for name, _ in MIGRATIONS]
    assert await store.migrate() == []
    await store.close()


async def test_database_uses_wal(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db")
    await store.close()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_record_round_trips_and_is_found_by_id_or_name(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db")
    rec = record()
    await store.insert_sandbox(rec)
    assert await store.get_sandbox("sb-00000001") == rec
    assert await store.get_sandbox("one") == rec
    assert await store.get_sandbox("two") is None
    await store.update_sandbox(rec.id, status="lost")
    got = await store.get_sandbox("one")
    assert got is not None and got.status == "lost"
    await store.close()


async def test_records_survive_reopening(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db")
    await store.insert_sandbox(record())
    await store.close()
    reopened = await Store.open(tmp_path / "c.db")
    assert [r.id for r in await reopened.list_sandboxes()] == ["sb-00000001"]
    await reopened.close()


async def test_names_are_unique(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db")
    await store.insert_sandbox(record())
    with pytest.raises(sqlite3.IntegrityError):
        await store.insert_sandbox(record("sb-00000002", name="one"))
    await store.close()


async def test_audit_entries_are_listed_newest_first(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "c.db")
    for i in range(3):
        await store.record_audit(AuditEntry(float(i), f"tool{i}", "sb-1", "ok", None, 1.0))
    assert [e.tool for e in await store.audit_log()] == ["tool2", "tool1", "tool0"]
    assert await store.audit_log(sandbox="sb-2") == []
    await store.close()
