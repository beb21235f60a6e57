"""Stop/start with memory, automatic resume, fork, env and options: the service's logic against
the in-memory FakeEngine (the real engine's behaviour is in tests/integration/test_lifecycle_live.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from corral.config import DEFAULT_IMAGE, Limits, Settings
from corral.errors import CheckpointUnavailable, InvalidRequest, SandboxBusy
from corral.sandbox_backend.fake import FakeEngine
from corral.sandbox_backend.store import ProcessRecord, SandboxRecord, Store
from corral.server import build_server
from corral.service import Services, open_services
from corral.service.forks import fork_image
from tests.helpers import call_error, call_noted, call_ok


def idle_ops() -> dict[str, Any]:
    return {"proc_list": lambda p: {"procs": []}, "context_list": lambda p: {"contexts": []}}


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(agent_ops=idle_ops())


@pytest.fixture
async def services(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[Services]:
    settings = Settings(home=tmp_path, limits=Limits(max_memory_bytes=2048 * 1024 * 1024, max_cpus=2.0))
    async with open_services(settings, engine=engine) as opened:
        yield opened


def container(engine: FakeEngine, rec: SandboxRecord) -> Any:
    assert rec.container_id is not None
    return engine.containers[rec.container_id]


async def test_stop_saves_memory_and_start_restores_it_with_the_same_agent(
    services: Services, engine: FakeEngine
) -> None:
    rec = await services.sandboxes.create()
    started = container(engine, rec).started_at
    stopped = await services.sandboxes.stop(rec.id)
    assert (stopped.memory, stopped.reason, stopped.rec.status) == (True, None, "stopped")
    assert container(engine, rec).status == "exited" and stopped.rec.checkpoint in container(engine, rec).checkpoints
    assert (await services.sandboxes.get(rec.id)).checkpoint == stopped.rec.checkpoint
    again = await services.sandboxes.stop(rec.id)
    assert again.changed is False and again.memory is True

    resumed = await services.sandboxes.start(rec.id)
    assert (resumed.memory, resumed.reason, resumed.rec.status) == (True, None, "running")
    # The restored agent daemon keeps its start time: contexts are not reported lost.
    assert container(engine, rec).started_at == started
    assert container(engine, rec).checkpoints == {}  # a used checkpoint is removed
    assert (await services.sandboxes.get(rec.id)).checkpoint is None


async def test_without_checkpoints_stop_keeps_files_and_says_why(tmp_path: Path) -> None:
    engine = FakeEngine(agent_ops=idle_ops(), checkpoint=False)
    async with open_services(Settings(home=tmp_path), engine=engine) as services:
        rec = await services.sandboxes.create()
        stopped = await services.sandboxes.stop(rec.id)
        assert stopped.memory is False and "cannot save a sandbox's memory" in str(stopped.reason)
        assert container(engine, rec).status == "exited"
        started = await services.sandboxes.start(rec.id)
        assert started.memory is False and started.reason == "it was stopped without its memory"


async def test_a_failed_restore_falls_back_to_a_plain_start_with_the_reason(
    services: Services, engine: FakeEngine
) -> None:
    rec = await services.sandboxes.create()
    before = container(engine, rec).started_at
    await services.sandboxes.stop(rec.id)
    engine.fail_next("start", CheckpointUnavailable("the engine could not restore the checkpoint: bad fd"))
    started = await services.sandboxes.start(rec.id)
    assert started.memory is False and started.reason is not None and "bad fd" in started.reason
    assert container(engine, rec).status == "running" and container(engine, rec).started_at != before
    assert container(engine, rec).checkpoints == {}


async def test_stop_without_memory_when_asked(services: Services, engine: FakeEngine) -> None:
    rec = await services.sandboxes.create()
    stopped = await services.sandboxes.stop(rec.id, memory=False)
    assert stopped.memory is False and stopped.reason == "memory=false was asked"
    assert container(engine, rec).checkpoints == {}


async def test_stop_is_refused_while_a_call_runs(services: Services, engine: FakeEngine) -> None:
    release = anyio.Event()

    async def slow(params: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {}

    engine.agent_ops["slow"] = slow
    rec = await services.sandboxes.create()
    async with anyio.create_task_group() as tg:
        tg.start_soon(services.sandboxes.request, rec.id, "slow", {})
        with anyio.fail_after(10):
            while not services.sandboxes.active(rec.id):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        with pytest.raises(SandboxBusy, match="running 1 call"):
            await services.sandboxes.stop(rec.id)
        release.set()
    assert (await services.sandboxes.stop(rec.id)).memory is True


async def test_any_tool_resumes_a_stopped_sandbox_and_says_so(tmp_path: Path) -> None:
    engine = FakeEngine(agent_ops=idle_ops())
    async with Client(build_server(Settings(home=tmp_path), engine=engine), raise_exceptions=False) as client:
        created = await call_ok(client, "create_sandbox", name="napper")
        stopped = await call_ok(client, "stop_sandbox", sandbox="napper")
        assert stopped["memory_kept"] is True and stopped["status"] == "stopped"
        listed = await call_noted(client, "list_contexts", sandbox="napper")
        assert listed["notices"] == [
            f"sandbox {created['id']} was stopped and has been resumed with its memory (variables and processes kept)"
        ]
        assert set(listed["lease"]) == {"stops_at"}
        quiet = await call_noted(client, "list_contexts", sandbox="napper")
        assert "notices" not in quiet  # said once, when it happened
        engine.capabilities = type(engine.capabilities)(checkpoint=False)
        await call_ok(client, "stop_sandbox", sandbox="napper")
        listed = await call_noted(client, "list_contexts", sandbox="napper")
        assert "resumed without its memory" in listed["notices"][0] and "state_lost" in listed["notices"][0]


async def test_fork_copies_memory_files_and_processes_then_both_run(services: Services, engine: FakeEngine) -> None:
    rec = await services.sandboxes.create(env={"MODE": "x"}, labels={"team": "a"})
    await services.processes._table.insert(  # a background process the source runs
        ProcessRecord("p-aaaaaa", rec.id, "agent-1", 12, "sleep 100", "/workspace", time.time())
    )
    forked = await services.forks.fork(rec.id, "twin")
    child, source = forked.rec, forked.source
    assert forked.memory is True and forked.reason is None
    assert (child.name, child.forked_from, child.image) == ("twin", rec.id, fork_image(child.id))
    assert child.env == {"MODE": "x"}
    # docker commit leaves volumes out: the fork's /workspace is a copy of the source's, and its
    # agent volume a new one.
    assert child.volume is not None and child.volume != rec.volume
    assert engine.volumes[child.volume].copy_of == rec.volume
    assert engine.volumes[child.volume].size_bytes == rec.disk_bytes
    agent_volumes = {m.volume for m in container(engine, child).spec.volumes} - {child.volume}
    assert len(agent_volumes) == 1 and agent_volumes.isdisjoint({m.volume for m in container(engine, rec).spec.volumes})
    assert container(engine, child).status == "running" and source.status == "running"
    assert container(engine, rec).status == "running"
    # Both resumed from the same checkpoint: the same agent, now running twice.
    assert container(engine, child).started_at == container(engine, rec).started_at
    assert fork_image(child.id) in engine.images
    assert [p.sandbox_id for p in await services.processes._table.list(child.id)] == [child.id]
    await services.sandboxes.delete("twin")
    assert fork_image(child.id) not in engine.images  # the fork's own image goes with it
    assert child.volume not in engine.volumes and rec.volume in engine.volumes


async def test_fork_without_copying_memory_keeps_files_and_says_why(tmp_path: Path) -> None:
    engine = FakeEngine(agent_ops=idle_ops(), checkpoint_copy=False)
    async with open_services(Settings(home=tmp_path), engine=engine) as services:
        rec = await services.sandboxes.create()
        forked = await services.forks.fork(rec.id)
        assert forked.memory is False and "needs root" in str(forked.reason)
        assert container(engine, forked.rec).status == "running" and container(engine, rec).status == "running"


async def test_forking_a_stopped_sandbox_leaves_it_stopped(services: Services, engine: FakeEngine) -> None:
    rec = await services.sandboxes.create()
    await services.sandboxes.stop(rec.id)
    forked = await services.forks.fork(rec.id)
    assert forked.memory is True and container(engine, forked.rec).status == "running"
    assert (await services.sandboxes.get(rec.id)).status == "stopped"
    assert (await services.sandboxes.start(rec.id)).memory is True


async def test_env_reaches_the_container_and_secrets_are_masked(tmp_path: Path) -> None:
    engine = FakeEngine(agent_ops=idle_ops())
    async with Client(build_server(Settings(home=tmp_path), engine=engine), raise_exceptions=False) as client:
        env = {"API_TOKEN": "s3cret", "MODE": "dev"}
        created = await call_ok(client, "create_sandbox", env=env)
        assert created["env"] == {"API_TOKEN": "***", "MODE": "dev"}
        spec = next(iter(engine.containers.values())).spec
        assert spec.env["API_TOKEN"] == "s3cret" and spec.env["HOME"] == "/workspace"
        refused = await call_error(client, "create_sandbox", env={"LD_PRELOAD": "/x.so", "PATH": "/x"})
        assert "LD_PRELOAD, PATH cannot be set for a whole sandbox" in refused


async def test_options_past_the_maxima_are_clamped_and_reported(services: Services) -> None:
    with pytest.raises(InvalidRequest, match="cpus must be a positive number"):
        await services.sandboxes.create(cpus=0)
    async with Client(build_server(services.settings, engine=FakeEngine()), raise_exceptions=False) as client:
        made = await call_noted(client, "create_sandbox", memory_mb=100000, cpus=8, idle_stop_after=5, delete_after=0)
    assert (made["memory_mb"], made["cpus"], made["idle_stop_after"], made["delete_after"]) == (2048, 2.0, 60, None)
    assert made["notices"] == [
        "memory_mb: asked 100000, set 2048 (this server's maximum)",
        "cpus: asked 8, set 2 (this server's maximum)",
        "idle_stop_after: asked 5 s, set 60 s (the minimum)",
    ]


async def test_lifetimes_must_be_finite_and_huge_ones_mean_ten_years(services: Services) -> None:
    for bad in (float("inf"), float("nan"), -1):
        with pytest.raises(InvalidRequest, match="must be a number of seconds >= 0"):
            await services.sandboxes.create(idle_stop_after=bad)
    rec = await services.sandboxes.create()
    huge = await services.sandboxes.update(rec.id, idle_stop_after=1e300, delete_after=1e300)
    assert huge.idle_stop_after == huge.delete_after == 10 * 365 * 86400.0
    assert services.sandboxes.lease(huge) is not None  # its dates can be written


async def test_labels_filter_the_list_and_update_merges_them(services: Services) -> None:
    a = await services.sandboxes.create(labels={"team": "a", "tier": "x"})
    await services.sandboxes.create(labels={"team": "b"})
    assert [r.id for r in await services.sandboxes.list_all({"team": "a"})] == [a.id]
    updated = await services.sandboxes.update(a.id, labels={"tier": "", "owner": "me"})
    assert updated.labels == {"team": "a", "owner": "me"}
    assert [r.id for r in await services.sandboxes.list_all({"owner": "me", "team": "a"})] == [a.id]
    assert await services.sandboxes.list_all({"team": "c"}) == []


async def test_snapshots_make_sandboxes_are_recorded_limited_and_collected(tmp_path: Path) -> None:
    engine = FakeEngine(agent_ops=idle_ops())
    settings = Settings(home=tmp_path, max_snapshots=1)
    async with Client(build_server(settings, engine=engine), raise_exceptions=False) as client:
        source = await call_ok(client, "create_sandbox", name="origin")
        snap = await call_ok(client, "snapshot_sandbox", sandbox="origin", name="v1")
        assert (snap["name"], snap["sandbox"], snap["base_image"]) == ("v1", source["id"], DEFAULT_IMAGE)
        assert "already exists" in await call_error(client, "snapshot_sandbox", sandbox="origin", name="v1")
        assert "at most 1 snapshots" in await call_error(client, "snapshot_sandbox", sandbox="origin", name="v2")
        child = await call_ok(client, "create_sandbox", from_snapshot="v1")
        assert child["image"].endswith("-v1") and DEFAULT_IMAGE in engine.images  # the base is untouched
        refused = await call_error(client, "delete_snapshot", name="v1")
        assert f"in use by sandbox(es) {child['id']}" in refused
        assert "no snapshot named 'v9'" in await call_error(client, "create_sandbox", from_snapshot="v9")
        await call_ok(client, "delete_sandbox", sandbox=child["id"])
        assert (await call_ok(client, "delete_snapshot", name="v1"))["name"] == "v1"
        assert (await call_ok(client, "list_snapshots"))["snapshots"] == []
        assert child["image"] not in engine.images
        # An image nothing records (its server died before recording it) goes at the next gc.
        await call_ok(client, "snapshot_sandbox", sandbox="origin", name="v3")
    store = await Store.open(settings.db_path)
    try:
        await store.snapshots.delete("v3", "local")
    finally:
        await store.close()
    async with open_services(settings, engine=engine, serve=False) as services:
        [tag] = await services.snapshots.gc()
    assert tag.endswith("-v3") and tag not in engine.images


async def test_a_snapshot_that_cannot_keep_memory_says_the_sandbox_lost_it(tmp_path: Path) -> None:
    engine = FakeEngine(agent_ops=idle_ops(), checkpoint=False)
    async with Client(build_server(Settings(home=tmp_path), engine=engine), raise_exceptions=False) as client:
        created = await call_ok(client, "create_sandbox", name="snapped")
        taken = await call_noted(client, "snapshot_sandbox", sandbox="snapped", name="s1")
        assert any("could not keep its memory" in n and "state_lost" in n for n in taken["notices"]), taken
        # /workspace was copied while it was stopped; it runs again afterwards.
        assert (await call_ok(client, "get_sandbox", sandbox=created["id"]))["status"] == "running"
