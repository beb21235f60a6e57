"""The service's lifecycle, reconcile and rollback logic against the in-memory FakeEngine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from corral.config import Settings
from corral.errors import (
    AgentFailure,
    AgentRefused,
    BackendError,
    BackendUnavailable,
    InvalidRequest,
    PayloadTooLarge,
    QuotaExceeded,
    RuntimeMissing,
    SandboxBusy,
    SandboxLost,
    SandboxNotFound,
)
from corral.sandbox_backend.agent_channel import AgentError
from corral.sandbox_backend.fake import FakeAgentError, FakeEngine
from corral.sandbox_backend.store import SandboxRecord, Store
from corral.server import build_server
from corral.service import Services, open_services
from corral.service.agents import translate
from corral.service.containers import LABEL_OWNER, LABEL_SANDBOX, home_label
from tests.helpers import call_error, call_noted, call_ok


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, max_sandboxes=4)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def services(settings: Settings, engine: FakeEngine) -> AsyncIterator[Services]:
    async with open_services(settings, engine=engine) as opened:
        yield opened


def container_of(engine: FakeEngine, rec: SandboxRecord) -> str:
    assert rec.container_id is not None and rec.container_id in engine.containers
    return rec.container_id


async def test_create_starts_a_labelled_container_and_records_it(services: Services, engine: FakeEngine) -> None:
    rec = await services.sandboxes.create(name="box", labels={"team": "a"})
    container = engine.containers[container_of(engine, rec)]
    assert container.status == "running" and container.spec.runtime == "corral-runsc"
    assert container.spec.labels[LABEL_SANDBOX] == rec.id
    assert container.spec.labels[LABEL_OWNER] == home_label(services.settings)
    assert container.spec.network is None and container.spec.user == "1000:1000"
    # Nothing but its own volume (the disk limit), memory and the agent's root-owned code is
    # writable, and PID 1 reaps orphans.
    spec = container.spec
    assert spec.read_only_root and spec.init
    agent_volume = services.sandboxes._containers.agent_volume(rec.id)
    assert {m.target: m.volume for m in spec.volumes} == {"/workspace": rec.volume, "/opt/corral": agent_volume}
    assert engine.volumes[agent_volume].size_bytes is None  # root-owned: only the host writes there
    assert rec.volume is not None and engine.volumes[rec.volume].size_bytes == 10 * 1024**3 == rec.disk_bytes
    assert {t.target for t in spec.tmpfs} == {"/tmp", "/var/tmp"}
    assert sum(t.size_bytes for t in spec.tmpfs) + (spec.shm_bytes or 0) < spec.memory_bytes // 2
    assert "/opt/corral" in container.files  # the agent, installed before start
    stored = await services.sandboxes.get("box")
    assert (stored.id, stored.status, stored.labels) == (rec.id, "running", {"team": "a"})


@pytest.mark.parametrize("failing", ["create_volume", "create_container", "put_archive", "start", "open_exec_stream"])
async def test_a_create_that_fails_half_way_leaves_nothing_behind(
    services: Services, engine: FakeEngine, failing: str
) -> None:
    engine.images.add("python:3.12-slim")  # present, and an image that needs a /workspace copied in (put_archive)
    engine.fail_next(failing, BackendError(f"{failing}: Docker refused: boom"))
    with pytest.raises(BackendError, match="boom"):
        await services.sandboxes.create(name="half")
    assert engine.containers == {} and engine.volumes == {}
    assert await services.sandboxes.list_all() == []
    # The name is free again.
    assert (await services.sandboxes.create(name="half", image="python:3.12-slim")).name == "half"


async def test_concurrent_creates_with_one_name_give_one_sandbox_and_clear_errors(services: Services) -> None:
    outcomes: list[object] = []

    async def create() -> None:
        try:
            outcomes.append(await services.sandboxes.create(name="same"))
        except InvalidRequest as exc:
            outcomes.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(create)
    made = [o for o in outcomes if isinstance(o, SandboxRecord)]
    refused = [o for o in outcomes if isinstance(o, InvalidRequest)]
    assert len(made) == 1 and len(refused) == 2
    assert all("a sandbox named 'same' already exists" in str(e) for e in refused)
    assert [r.name for r in await services.sandboxes.list_all()] == ["same"]


async def test_the_sandbox_limit_is_enforced(services: Services) -> None:
    for _ in range(4):
        await services.sandboxes.create()
    with pytest.raises(QuotaExceeded, match="at most 4 sandboxes"):
        await services.sandboxes.create()


async def test_missing_runtime_and_image_say_how_to_fix(settings: Settings) -> None:
    async with open_services(settings, engine=FakeEngine(runtimes=("runc",))) as services:
        with pytest.raises(RuntimeMissing, match=r"setup-host\.sh"):
            await services.sandboxes.create()
    async with open_services(settings, engine=FakeEngine(images=())) as services:
        with pytest.raises(BackendError, match="corral image build"):
            await services.sandboxes.create()
        with pytest.raises(InvalidRequest, match="CORRAL_IMAGES"):
            await services.sandboxes.create(image="python:3.12-slim")
    pulls = settings.with_(images=("python:*",), image_pull=("python:*",))
    async with open_services(pulls, engine=FakeEngine(pullable=("python:3.12-slim",))) as services:
        assert (await services.sandboxes.create(image="python:3.12-slim")).image == "python:3.12-slim"
        with pytest.raises(BackendError, match=r"could not pull image 'python:3\.11'.*pull access denied"):
            await services.sandboxes.create(image="python:3.11")


async def test_reconcile_marks_lost_and_stopped_drops_dead_creates_and_finds_orphans(
    settings: Settings, engine: FakeEngine
) -> None:
    async with open_services(settings, engine=engine, serve=False) as services:
        kept = await services.sandboxes.create(name="kept")
        stopped = await services.sandboxes.create(name="stopped")
        lost = await services.sandboxes.create(name="lost")
        orphan = await services.sandboxes.create(name="orphan")
    store = await Store.open(settings.db_path)
    try:
        # A create that crashed half-way (its creator is gone): rolled back at the next start.
        dead = kept.with_(id="sb-0000dead", name="dead", container_id=None, status="creating", volume="v-dead")
        await store.sandboxes.insert(dead)
        await store.sandboxes.delete(orphan.id)
    finally:
        await store.close()
    engine.containers[container_of(engine, stopped)].status = "exited"
    engine.containers.pop(container_of(engine, lost))

    async with open_services(settings, engine=engine) as services:
        listed = {r.name: r.status for r in await services.sandboxes.list_all()}
        assert listed == {"kept": "running", "stopped": "stopped", "lost": "lost"}
        plan = await services.reconciler.plan()
        agent_volume = services.sandboxes._containers.agent_volume(orphan.id)
        assert {(o.kind, o.id) for o in plan.orphans} == {
            ("sandbox-container", orphan.container_id),
            ("volume", orphan.volume),
            ("volume", agent_volume),
        }
        await services.reconciler.apply(plan, remove_orphans=True)
        assert orphan.container_id not in engine.containers
        assert orphan.volume not in engine.volumes and agent_volume not in engine.volumes
        assert kept.volume in engine.volumes
        with pytest.raises(SandboxLost, match="delete_sandbox it and create a new one"):
            await services.sandboxes.use("lost")
        # A stopped sandbox starts again on its next use.
        assert (await services.sandboxes.use("stopped")).status == "running"
        assert engine.containers[container_of(engine, stopped)].status == "running"


async def test_a_dry_run_reconcile_changes_nothing(settings: Settings, engine: FakeEngine) -> None:
    async with open_services(settings, engine=engine, serve=False) as services:
        rec = await services.sandboxes.create()
    engine.containers.pop(container_of(engine, rec))
    async with open_services(settings, engine=engine, serve=False, read_only=True) as services:
        assert (await services.reconciler.plan()).lost == [rec.id]
        assert (await services.sandboxes.list_all())[0].status == "running"


async def test_engine_events_keep_statuses_current(services: Services, engine: FakeEngine) -> None:
    rec = await services.sandboxes.create()
    await engine.stop_container(container_of(engine, rec))
    assert (await services.sandboxes.resolve(rec.id)).status == "stopped"
    await engine.vanish(container_of(engine, rec))
    assert (await services.sandboxes.resolve(rec.id)).status == "lost"


async def test_a_sandbox_being_created_is_busy(services: Services, engine: FakeEngine) -> None:
    rec = await services.sandboxes.create()
    store = await Store.open(services.settings.db_path)
    try:
        await store.sandboxes.update(rec.id, status="creating")
    finally:
        await store.close()
    await services.sandboxes._agents.drop(rec.id)
    with pytest.raises(SandboxBusy, match="still being created"):
        await services.sandboxes.use(rec.id)


async def test_delete_removes_the_container_and_calls_every_hook(services: Services, engine: FakeEngine) -> None:
    rec = await services.sandboxes.create(name="gone")
    seen: list[str] = []

    async def hook(sandbox_id: str) -> None:
        seen.append(sandbox_id)

    services.sandboxes.on_delete(hook)
    await services.sandboxes.delete("gone")
    assert seen == [rec.id] and engine.containers == {}
    with pytest.raises(SandboxNotFound, match="none yet"):
        await services.sandboxes.resolve("gone")


async def test_not_found_lists_the_known_sandboxes(services: Services) -> None:
    rec = await services.sandboxes.create(name="known")
    with pytest.raises(SandboxNotFound, match=rf"no sandbox with id or name 'ghost'.*{rec.id} \(known\)"):
        await services.sandboxes.resolve("ghost")


async def test_a_server_starts_while_docker_is_down_and_says_so_per_call(settings: Settings) -> None:
    engine = FakeEngine()
    engine.reachable = False
    async with open_services(settings, engine=engine) as services:
        with pytest.raises(BackendUnavailable, match="not reachable"):
            await services.sandboxes.create()
        engine.reachable = True
        assert (await services.sandboxes.create()).status == "running"


async def test_agent_error_kinds_reach_the_caller_without_text_matching(services: Services, engine: FakeEngine) -> None:
    def refuse(params: dict[str, object]) -> dict[str, object]:
        raise FakeAgentError("not_running", "process has exited")

    engine.agent_ops["proc_input"] = refuse
    rec = await services.sandboxes.create()
    with pytest.raises(AgentRefused) as caught:
        await services.sandboxes.request(rec.id, "proc_input", {"proc_id": "x"})
    assert caught.value.kind == "not_running"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("not_found", AgentRefused),
        ("permission", AgentRefused),
        ("too_large", PayloadTooLarge),
        ("busy", SandboxBusy),
        ("internal", AgentFailure),
        ("cancelled", AgentFailure),
    ],
)
def test_agent_errors_translate_into_the_tree(kind: str, expected: type[Exception]) -> None:
    error = translate(AgentError(kind, "message", field="cwd"))
    assert type(error) is expected and str(error) == "message"
    if isinstance(error, AgentRefused):
        assert (error.kind, error.field) == (kind, "cwd")


async def test_tools_over_mcp_against_the_fake_engine(settings: Settings) -> None:
    async with Client(build_server(settings, engine=FakeEngine()), raise_exceptions=False) as client:
        created = await call_ok(client, "create_sandbox", name="mcp-box", memory_mb=256)
        assert created["memory_mb"] == 256 and created["isolation"] == "gvisor"
        assert [s["id"] for s in (await call_ok(client, "list_sandboxes"))["sandboxes"]] == [created["id"]]
        clamped = await call_noted(client, "create_sandbox", memory_mb=1)
        assert clamped["memory_mb"] == 64 and clamped["notices"] == ["memory_mb: asked 1, set 64 (the minimum)"]
        assert "memory_mb must be a positive number" in await call_error(client, "create_sandbox", memory_mb=-5)
        await call_ok(client, "delete_sandbox", sandbox=clamped["id"])
        assert "invalid sandbox name" in await call_error(client, "create_sandbox", name="Bad Name!")
        assert (await call_ok(client, "delete_sandbox", sandbox="mcp-box"))["deleted"] is True
        assert "no sandbox with id or name 'mcp-box'" in await call_error(client, "get_sandbox", sandbox="mcp-box")


async def test_a_cold_create_of_an_image_run_before_returns_while_its_agent_starts(
    services: Services, engine: FakeEngine
) -> None:
    await services.sandboxes.create()  # the server has now run the agent in this image
    engine.hello_gate = anyio.Event()
    engine.agent_ops["exec"] = lambda params: {"exit_code": 0, "stdout": "ok\n"}
    with anyio.fail_after(10):
        rec = await services.sandboxes.create()  # its agent holds its hello
        await engine.hello_held.wait()
    assert (await services.sandboxes.get(rec.id)).status == "running"
    answers: list[str] = []

    async def first_call() -> None:
        result = await services.execution.run_command(rec.id, "echo ok")
        answers.append(result.stdout)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_call)
            await anyio.wait_all_tasks_blocked()
            assert answers == []  # the first call waits for the agent, then runs
            engine.hello_gate.set()
    assert answers == ["ok\n"]


async def test_a_cold_create_of_an_image_never_run_here_waits_for_its_agent(
    services: Services, engine: FakeEngine
) -> None:
    engine.hello_gate = anyio.Event()
    created: list[SandboxRecord] = []

    async def create() -> None:
        created.append(await services.sandboxes.create())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await engine.hello_held.wait()
            await anyio.wait_all_tasks_blocked()
            assert created == []  # a missing python3 would fail this create, with the reason
            engine.hello_gate.set()
    assert created[0].status == "running"
