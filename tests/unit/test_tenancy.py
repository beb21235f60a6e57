"""Tenants against the in-memory FakeEngine: ownership, per-tenant names, quotas under concurrency,
tokens kept as hashes, the audit trail's summaries."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from corral.config import Quota, Settings
from corral.errors import InvalidRequest, QuotaExceeded, SandboxNotFound
from corral.sandbox_backend.fake import FakeEngine
from corral.sandbox_backend.store import ProcessRecord, Store
from corral.service import Services, open_services, tenancy
from corral.service.audit import redact, summarize
from corral.service.tenancy import Caller, acting_as


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with open_services(Settings(home=tmp_path, max_sandboxes=20), engine=FakeEngine()) as opened:
        yield opened


ALICE = Caller("alice")
BOB = Caller("bob")


async def test_a_tenant_sees_and_touches_only_its_own_sandboxes(services: Services) -> None:
    with acting_as(ALICE):
        mine = await services.sandboxes.create(name="box")
    with acting_as(BOB):
        theirs = await services.sandboxes.create(name="box")  # names are per tenant
        assert [r.id for r in await services.sandboxes.list_all()] == [theirs.id]
        for ref in (mine.id, "sb-00000000"):
            with pytest.raises(SandboxNotFound) as caught:
                await services.sandboxes.delete(ref)
            # Exactly as for a missing one, and the hint names only bob's own sandbox.
            assert str(caught.value) == f"no sandbox with id or name {ref!r}. Known sandboxes: {theirs.id} (box)"
        assert (await services.sandboxes.resolve("box")).id == theirs.id
    with acting_as(ALICE):
        assert (await services.sandboxes.get("box")).id == mine.id
    with acting_as(tenancy.OPERATOR):
        assert {r.tenant for r in await services.sandboxes.list_all()} == {"alice", "bob"}
        with pytest.raises(InvalidRequest, match="several tenants have a sandbox named 'box'"):
            await services.sandboxes.resolve("box")


async def test_code_that_sets_no_caller_acts_for_the_local_tenant(services: Services) -> None:
    rec = await services.sandboxes.create()
    assert rec.tenant == "local"
    with acting_as(ALICE):
        assert await services.sandboxes.list_all() == []


async def test_ten_parallel_creates_cannot_overshoot_a_tenants_sandbox_quota(services: Services) -> None:
    who = Caller("quota", Quota(sandboxes=3))
    outcomes: list[str] = []

    async def create() -> None:
        with acting_as(who):
            try:
                await services.sandboxes.create()
                outcomes.append("created")
            except QuotaExceeded as exc:
                outcomes.append(str(exc))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(create)
    assert outcomes.count("created") == 3
    refusals = [o for o in outcomes if o != "created"]
    assert len(refusals) == 7
    assert all("tenant 'quota' may keep 3 sandbox(es) (quota sandboxes=3) and has 3" in o for o in refusals)
    with acting_as(who):
        assert len(await services.sandboxes.list_all()) == 3


async def test_a_memory_quota_error_says_the_quota_and_the_current_use(services: Services) -> None:
    with acting_as(Caller("mem", Quota(memory_mb=1536))):
        await services.sandboxes.create(memory_mb=1024)
        with pytest.raises(QuotaExceeded) as caught:
            await services.sandboxes.create(memory_mb=1024)
        assert "may use 1536 MiB of memory in all" in str(caught.value)
        assert "its sandboxes use 1024 MiB and this one asks for 1024 MiB" in str(caught.value)
        await services.sandboxes.create(memory_mb=512)  # what still fits is allowed


async def test_the_server_maximum_holds_across_tenants(tmp_path: Path) -> None:
    async with open_services(Settings(home=tmp_path, max_sandboxes=2), engine=FakeEngine()) as services:
        with acting_as(ALICE):
            await services.sandboxes.create()
        with acting_as(BOB):
            await services.sandboxes.create()
            with pytest.raises(QuotaExceeded, match="at most 2 sandboxes and holds 2"):
                await services.sandboxes.create()


async def test_concurrent_executions_are_capped_per_tenant(services: Services) -> None:
    who = Caller("busy", Quota(executions=1))
    slots = services.tenants.slots
    with slots.hold(who):
        with pytest.raises(QuotaExceeded, match=r"may run 1 execution.* and 1 are running"):
            with slots.hold(who):
                pass
        with slots.hold(BOB):  # another tenant is not affected
            pass
    with slots.hold(who):  # released
        pass


async def test_tokens_are_stored_only_as_hashes_in_a_private_database(services: Services, tmp_path: Path) -> None:
    created = await services.tenants.create("ci", Quota(sandboxes=2))
    assert created.secret.startswith("crl_") and len(created.secret) > 40
    who = await services.tenants.verify(created.secret)
    assert who is not None and who.tenant == "ci" and who.quota.sandboxes == 2
    assert await services.tenants.verify(created.secret + "x") is None
    [listed] = await services.tenants.list()
    assert listed.last_used_at is not None and created.secret not in repr(listed)
    db = services.settings.db_path
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    raw = await anyio.to_thread.run_sync(lambda: b"".join(p.read_bytes() for p in tmp_path.glob("corral.db*")))
    assert created.secret.encode() not in raw
    await services.tenants.revoke("ci")
    assert await services.tenants.verify(created.secret) is None  # at once


@pytest.mark.parametrize("name", ["local", "default", "Bad Name", ""])
async def test_reserved_or_invalid_token_names_are_refused(services: Services, name: str) -> None:
    with pytest.raises(InvalidRequest):
        await services.tenants.create(name)


async def test_a_tenants_own_quota_overrides_the_default_only_where_set(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, tenant_quota=Quota(sandboxes=5, executions=2))
    async with open_services(settings, engine=FakeEngine()) as services:
        created = await services.tenants.create("t", Quota(sandboxes=1))
        who = await services.tenants.verify(created.secret)
        assert who is not None and who.quota == Quota(sandboxes=1, executions=2)
        assert services.tenants.caller("local").quota == Quota(sandboxes=5, executions=2)


async def test_the_migration_keeps_existing_sandboxes_as_the_local_tenants(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "corral.db")
    try:
        assert "030_tenants" in await store.db.applied_migrations()
        columns = [row[1] for row in await store.db.fetchall("PRAGMA table_info(sandboxes)")]
        assert "tenant" in columns and "name" in columns
    finally:
        await store.close()


def test_audit_summaries_keep_what_was_asked_and_never_secrets_or_contents() -> None:
    summary = summarize({
        "sandbox": "sb-1",
        "command": "curl -H 'Authorization: Bearer abc123' https://user:hunter2@example.com/x?token=s3cr3t\nsecond",
        "env": {"API_KEY": "supersecret"},
        "content": "file contents here",
        "credentials": {"username": "u", "password": "pw"},
        "text": "typed password",
        "path": "/workspace/a.txt",
    })
    assert summary is not None
    for secret in ("abc123", "hunter2", "s3cr3t", "supersecret", "file contents", "pw", "typed password"):
        assert secret not in summary, (secret, summary)
    assert "https://***@example.com" in summary and "(+1 lines)" in summary
    assert "env=[API_KEY]" in summary and "content=<18 chars>" in summary and "path=/workspace/a.txt" in summary
    assert "credentials" not in summary


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("git push https://x-access-token:ghp_abcdefghijklmnop@github.com/a/b", "ghp_abcdefghijklmnop"),
        ("export PASSWORD=letmein && run", "letmein"),
        ("mysql --password 'p@ss word'", "p@ss word"),
        ("echo crl_AbCdEfGhIjKlMnOp", "AbCdEfGhIjKlMnOp"),
        ("aws AKIAABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"),
    ],
)
def test_redaction_masks_common_credential_forms(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redaction_leaves_prose_about_credentials_readable() -> None:
    prose = "authentication failed: check the user name and the password or token (author=jane)"
    assert redact(prose) == prose


async def test_the_operator_reading_logs_changes_nothing_a_server_relies_on(tmp_path: Path) -> None:
    engine = FakeEngine(agent_ops={"proc_output": lambda p: {"data": "hello\n"[p["since"]:], "next": 6, "size": 6}})
    settings = Settings(home=tmp_path)
    async with open_services(settings, engine=engine) as services:
        rec = await services.sandboxes.create(name="quiet")
    store = await Store.open(settings.db_path)
    try:
        await store.sandboxes.update(rec.id, last_used_at=1.0)  # idle for ages
        await store.processes.insert(ProcessRecord("p-000001", rec.id, "agent-1", 7, "echo hello", None, 2.0))
    finally:
        await store.close()
    async with open_services(settings, engine=engine, serve=False, read_only=True) as services:
        with acting_as(tenancy.OPERATOR):
            [(info, output)] = await services.processes.tail("quiet", 3)
    assert (info.id, output) == ("p-000001", "lo\n")
    store = await Store.open(settings.db_path)
    try:
        after = await store.sandboxes.get(rec.id)
        assert after is not None and after.last_used_at == 1.0  # looking is not using
        [proc] = await store.processes.list(rec.id)
        assert proc.cursor == 0  # no client's read position moved
    finally:
        await store.close()
