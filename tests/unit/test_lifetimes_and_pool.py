"""Lifetimes (idle stop, delete_after, ephemeral) driven by a ManualClock, and the warm pool,
against the in-memory FakeEngine. No test sleeps: time moves when the test says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from corral.config import Lifetimes, Quota, Settings
from corral.errors import QuotaExceeded
from corral.sandbox_backend.fake import FakeEngine
from corral.sandbox_backend.store import Store
from corral.server import build_server
from corral.service import Services, notes, open_services
from corral.service.clock import ManualClock
from corral.service.containers import LABEL_OWNER, LABEL_ROLE
from corral.service.tenancy import Caller, acting_as
from tests.helpers import call_ok

DEADLINE = 20.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for a background task (reaper, pool) to act, with a deadline; no sleep decides."""
    try:
        with anyio.fail_after(DEADLINE):
            while not predicate():  # noqa: ASYNC110
                await anyio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {DEADLINE} s") from None


class Agent:
    """Fake agent ops whose answers a test changes: background processes and contexts."""

    def __init__(self) -> None:
        self.running = False

    def ops(self) -> dict[str, Any]:
        return {
            "proc_list": lambda p: {"procs": [{"proc_id": "1", "running": self.running}]},
            "context_list": lambda p: {"contexts": []},
            "code_run": lambda p: {"stdout": "", "stderr": ""},  # the pool warms a Python context
        }


def status_of(engine: FakeEngine, container_id: str | None) -> str:
    assert container_id is not None
    container = engine.containers.get(container_id)
    return "gone" if container is None else container.status


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def agent() -> Agent:
    return Agent()


@pytest.fixture
def engine(agent: Agent) -> FakeEngine:
    return FakeEngine(agent_ops=agent.ops())


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(home=tmp_path, **changes)


async def test_an_idle_sandbox_is_stopped_with_its_memory_and_calls_renew_the_lease(
    tmp_path: Path, engine: FakeEngine, clock: ManualClock
) -> None:
    async with open_services(settings_for(tmp_path), engine=engine, clock=clock) as services:
        rec = await services.sandboxes.create(idle_stop_after=120)
        clock.advance(100)
        await services.sandboxes.request(rec.id, "proc_list", {})  # a call renews the lease
        clock.advance(100)
        await anyio.wait_all_tasks_blocked()
        assert status_of(engine, rec.container_id) == "running"
        clock.advance(30)
        await until(lambda: status_of(engine, rec.container_id) == "exited", "the idle stop")
        assert rec.container_id is not None
        checkpoints = engine.containers[rec.container_id].checkpoints  # memory kept, never deleted
        await until(lambda: len(checkpoints) == 1, "the checkpoint")
        async with services.sandboxes.lock(rec.id):  # the stop has recorded it once it lets go
            stopped = await services.sandboxes.get(rec.id)
        assert stopped.status == "stopped" and stopped.checkpoint in checkpoints


async def test_a_running_background_process_keeps_an_idle_sandbox_up(
    tmp_path: Path, engine: FakeEngine, clock: ManualClock, agent: Agent
) -> None:
    agent.running = True
    async with open_services(settings_for(tmp_path), engine=engine, clock=clock) as services:
        rec = await services.sandboxes.create(idle_stop_after=60)
        clock.advance(61)
        await until(lambda: engine.calls.count(("open_exec_stream", str(rec.container_id))) >= 1, "the check")
        await until(lambda: rec.id in services.sandboxes._last_used, "the renewal")
        await anyio.wait_all_tasks_blocked()
        assert status_of(engine, rec.container_id) == "running"
        agent.running = False
        clock.advance(61)
        await until(lambda: status_of(engine, rec.container_id) == "exited", "the idle stop after the process ended")


async def test_delete_after_warns_in_its_last_tenth_then_deletes(tmp_path: Path, clock: ManualClock) -> None:
    engine = FakeEngine(agent_ops=Agent().ops())
    async with open_services(settings_for(tmp_path), engine=engine, clock=clock) as services:
        rec = await services.sandboxes.create(delete_after=1000, idle_stop_after=0)
        clock.advance(850)
        with notes.collecting() as collected:
            await services.sandboxes.use(rec.id)
        assert collected.notices == []  # 150 s left of 1000: not yet the last tenth
        clock.advance(60)
        with notes.collecting() as collected:
            await services.sandboxes.use(rec.id)
        assert collected.leases[rec.id] == {"expires_at": "2027-01-15T08:16:40Z"}
        assert len(collected.notices) == 1 and "will be DELETED in 90 s" in collected.notices[0]
        clock.advance(90)
        await until(lambda: status_of(engine, rec.container_id) == "gone", "the deletion")
        async with services.sandboxes.lock(rec.id):  # the delete has dropped the record once it lets go
            assert await services.sandboxes.find(rec.id) is None


async def test_deadlines_hold_across_a_server_restart(tmp_path: Path, engine: FakeEngine, clock: ManualClock) -> None:
    settings = settings_for(tmp_path)
    async with open_services(settings, engine=engine, clock=clock) as services:
        doomed = await services.sandboxes.create(delete_after=600, idle_stop_after=0)
        sleepy = await services.sandboxes.create(idle_stop_after=300)
        kept = await services.sandboxes.create(idle_stop_after=0)
    clock.advance(700)  # no server ran meanwhile
    async with open_services(settings, engine=engine, clock=clock):
        await until(lambda: status_of(engine, doomed.container_id) == "gone", "the overdue deletion")
        await until(lambda: status_of(engine, sleepy.container_id) == "exited", "the overdue idle stop")
        assert status_of(engine, kept.container_id) == "running"


async def test_the_reaper_never_touches_a_container_that_is_not_ours(
    tmp_path: Path, engine: FakeEngine, clock: ManualClock
) -> None:
    settings = settings_for(tmp_path)
    async with open_services(settings, engine=engine, clock=clock, serve=False) as services:
        rec = await services.sandboxes.create(delete_after=60)
    assert rec.container_id is not None
    stranger = engine.containers[rec.container_id]
    stranger.spec = type(stranger.spec)(**{**stranger.spec.__dict__, "labels": {LABEL_OWNER: "someone-else"}})
    clock.advance(120)
    async with open_services(settings, engine=engine, clock=clock) as services:
        await until(lambda: ("inspect", rec.container_id) in engine.calls, "the reaper's check")
        await anyio.wait_all_tasks_blocked()
        assert status_of(engine, rec.container_id) == "running"
        assert ("remove", rec.container_id) not in engine.calls


async def test_ephemeral_sandboxes_go_with_the_client_connection(tmp_path: Path, engine: FakeEngine) -> None:
    settings = settings_for(tmp_path)
    async with Client(build_server(settings, engine=engine), raise_exceptions=False) as client:
        gone = await call_ok(client, "create_sandbox", ephemeral=True)
        kept = await call_ok(client, "create_sandbox", name="kept")
        assert gone["ephemeral"] is True
    store = await Store.open(settings.db_path)
    try:
        assert [r.id for r in await store.sandboxes.list()] == [kept["id"]]
    finally:
        await store.close()
    assert len(engine.containers) == 1


# -- the warm pool --------------------------------------------------------------------------------


def members(engine: FakeEngine) -> list[str]:
    return [c.id for c in engine.by_label(LABEL_ROLE, "pool")]


async def pool_ready(services: Services, size: int) -> None:
    async def count() -> int:
        return len([m for m in await services.reconciler._pool.list() if m.ready])  # type: ignore[union-attr]

    with anyio.fail_after(DEADLINE):
        while await count() < size:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_the_pool_hands_over_at_once_and_refills(tmp_path: Path, engine: FakeEngine) -> None:
    async with open_services(settings_for(tmp_path, pool_size=2), engine=engine) as services:
        await pool_ready(services, 2)
        warm = set(members(engine))
        rec = await services.sandboxes.create(name="warm", labels={"team": "a"})
        assert rec.container_id in warm and rec.name == "warm" and rec.labels == {"team": "a"}
        assert ("create_container", f"corral-{rec.id}") not in engine.calls[-3:]
        stored = await services.sandboxes.get("warm")
        assert (stored.status, stored.container_id) == ("running", rec.container_id)
        await pool_ready(services, 2)  # refilled in the background
        assert len(members(engine)) == 3  # two waiting, one handed over (its label stays; the pool table says)
        cold = await services.sandboxes.create(memory_mb=512)
        assert cold.container_id not in members(engine)
        # Pool members are not sandboxes: not listed, not counted, not orphans.
        assert {r.id for r in await services.sandboxes.list_all()} == {rec.id, cold.id}
        assert (await services.reconciler.plan()).orphans == []
    # Stopping the server removes what waited in its pool, not what it handed out.
    assert {c.id for c in engine.containers.values()} == {rec.container_id, cold.container_id}


async def test_no_pool_member_is_handed_to_two_callers(tmp_path: Path, engine: FakeEngine) -> None:
    made: list[Any] = []
    async with open_services(settings_for(tmp_path, pool_size=2, max_sandboxes=10), engine=engine) as services:
        await pool_ready(services, 2)
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(lambda: _append(made, services.sandboxes.create()))
    ids = [r.id for r in made]
    containers = [r.container_id for r in made]
    assert len(set(ids)) == 5 and len(set(containers)) == 5


async def _append(into: list[Any], awaitable: Any) -> None:
    into.append(await awaitable)


async def test_gc_removes_pool_members_nothing_records(tmp_path: Path, engine: FakeEngine) -> None:
    settings = settings_for(tmp_path, pool_size=1)
    async with open_services(settings, engine=engine) as services:
        await pool_ready(services, 1)
        leftover = members(engine)
        # A server that died leaves its member and row behind; drop the row as gc would find it.
        store = await Store.open(settings.db_path)
        try:
            for member in await store.pool.list():
                await store.pool.delete(member.sandbox_id)
        finally:
            await store.close()
        services.sandboxes.pool._stopped = True  # this test's server must not refill or drain it
    async with open_services(settings_for(tmp_path), engine=engine, serve=False) as services:
        plan = await services.reconciler.plan()
        await services.reconciler.apply(plan, remove_orphans=True)
        gone = [o for o in plan.orphans if o.kind == "sandbox-container"]
        assert len(gone) == len(leftover) == 1
    assert members(engine) == []


async def test_idle_lifetime_defaults_and_maxima_come_from_the_operator(tmp_path: Path, engine: FakeEngine) -> None:
    lifetimes = Lifetimes(idle_stop_after=900, max_idle_stop_after=3600, delete_after=None, max_delete_after=7200)
    async with open_services(settings_for(tmp_path, lifetimes=lifetimes), engine=engine) as services:
        default = await services.sandboxes.create()
        assert (default.idle_stop_after, default.delete_after) == (900, 7200)
        never = await services.sandboxes.create(idle_stop_after=0, delete_after=0)
        assert (never.idle_stop_after, never.delete_after) == (3600, 7200)


@pytest.mark.parametrize("row_names_container", [True, False], ids=["recorded", "killed-while-making-it"])
async def test_members_of_a_server_that_died_are_removed_by_the_next_pool(
    tmp_path: Path, engine: FakeEngine, row_names_container: bool
) -> None:
    settings = settings_for(tmp_path, pool_size=1)
    async with open_services(settings, engine=engine) as services:
        await pool_ready(services, 1)
        # That server is killed: nothing drains its pool. Its row says which process made it.
        store = await Store.open(settings.db_path)
        try:
            [member] = await store.pool.list()
            dead = member.__class__(**{**member.__dict__, "instance_id": "dead0000", "pid": 2**22 + 7})
            await store.pool.delete(member.sandbox_id)
            # Killed between the row and its container id: only the engine's label names it.
            unnamed = dead.__class__(**{**dead.__dict__, "container_id": None})
            await store.pool.insert(dead if row_names_container else unnamed)
        finally:
            await store.close()
        services.sandboxes.pool._stopped = True
    assert [c.id for c in engine.by_label(LABEL_ROLE, "pool")] == [dead.container_id]
    async with open_services(settings_for(tmp_path, pool_size=1), engine=engine) as services:
        await until(lambda: dead.container_id not in engine.containers, "the dead server's member going")
        await until(lambda: len(members(engine)) == 1, "a member of this server's own")
        pool_rows = await services.reconciler._pool.list()  # type: ignore[union-attr]
        assert dead.sandbox_id not in {m.sandbox_id for m in pool_rows}


async def test_a_pool_member_is_handed_to_a_tenant_within_its_quota_and_network_asks_go_cold(
    tmp_path: Path, engine: FakeEngine
) -> None:
    who = Caller("quota", Quota(sandboxes=1))
    async with open_services(settings_for(tmp_path, pool_size=2), engine=engine) as services:
        await pool_ready(services, 2)
        warm = set(members(engine))
        with acting_as(who):
            rec = await services.sandboxes.create(name="mine")
            assert rec.container_id in warm and rec.tenant == "quota"
            # The member has the volumes of a cold sandbox, under the id it was made with.
            assert rec.volume is not None and rec.volume in engine.volumes
            with pytest.raises(QuotaExceeded, match="quota sandboxes=1"):
                await services.sandboxes.create()
        # The refused hand-over left the member in the pool for someone else.
        await pool_ready(services, 2)
        with acting_as(Caller("other")):
            assert [r.id for r in await services.sandboxes.list_all()] == []
            # Asking for another disk size takes the cold path: pool members have the default one.
            cold = await services.sandboxes.create(disk_mb=128)
            assert cold.container_id not in members(engine)
