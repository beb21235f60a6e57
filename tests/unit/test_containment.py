"""Containment logic without Docker: disk sizes, crash reports, hostile agent replies, the Docker
exec stream's framing, servers sharing a data dir (instances, reconcile), supervised tasks."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from corral.config import Settings
from corral.errors import DiskQuotaUnavailable, InvalidRequest, SandboxCrashed, StoreError
from corral.sandbox_backend.docker.exec_stream import DockerExecStream
from corral.sandbox_backend.engine import ContainerInfo, ContainerSpec
from corral.sandbox_backend.fake import FakeEngine
from corral.sandbox_backend.store import InstanceRecord, SandboxRecord, Store
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.server import build_server
from corral.service import Services, open_services
from corral.service.agents import crash_error
from corral.service.containers import LABEL_HELPER_FOR, LABEL_INSTANCE
from corral.service.instances import STALE_AFTER, is_alive, process_start
from corral.service.models import ExecResult
from corral.service.replies import RESULT_BUDGET, fit
from tests.helpers import call_error, call_ok


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def services(settings: Settings, engine: FakeEngine) -> AsyncIterator[Services]:
    async with open_services(settings, engine=engine) as opened:
        yield opened


# -- disks ------------------------------------------------------------------------------------------


async def test_disk_size_is_the_operators_default_or_a_checked_request(services: Services, engine: FakeEngine) -> None:
    rec = await services.sandboxes.create(disk_mb=128)
    assert rec.disk_bytes == 128 << 20 and rec.volume is not None
    assert engine.volumes[rec.volume].size_bytes == 128 << 20
    assert (await services.sandboxes.create()).disk_bytes == 10 << 30
    for bad in (10, 10**9, True):
        with pytest.raises(InvalidRequest, match=r"disk_mb must be between 64 and 51200 .*default is 10240"):
            await services.sandboxes.create(disk_mb=bad)  # type: ignore[arg-type]


async def test_where_disk_limits_cannot_be_enforced_create_refuses_unless_the_operator_opts_out(
    settings: Settings,
) -> None:
    engine = FakeEngine()
    engine.disk_quota_problem = "Corral is not running as root"
    async with open_services(settings, engine=engine) as services:
        with pytest.raises(DiskQuotaUnavailable, match="not running as root"):
            await services.sandboxes.create()
        assert engine.containers == {} and engine.volumes == {} and await services.sandboxes.list_all() == []
    async with open_services(settings.with_(unsafe_no_disk_limit=True), engine=engine) as services:
        rec = await services.sandboxes.create()
        assert rec.disk_bytes is None and rec.volume is None
        spec = engine.containers[str(rec.container_id)].spec
        assert not spec.read_only_root and "/workspace" not in {m.target for m in spec.volumes}


async def test_everything_a_sandbox_can_write_in_memory_stays_well_under_its_memory(services: Services) -> None:
    for memory_mb in (64, 256, 1024, 8192):
        rec = SandboxRecord("sb-00000001", None, None, "img", "corral-runsc", "none", memory_mb << 20, 1.0, 2048,
                            "creating", 0.0, 0.0, volume="v")
        spec = services.sandboxes._containers.sandbox_spec(rec)
        assert spec.read_only_root and spec.init
        assert [m.copy_image_files for m in spec.volumes if m.target == "/opt/corral"] == [False]
        assert sum(t.size_bytes for t in spec.tmpfs) + (spec.shm_bytes or 0) <= spec.memory_bytes * 3 // 8


# -- crashes ------------------------------------------------------------------------------------------


def test_a_crash_is_reported_with_its_cause_the_limit_and_what_to_do() -> None:
    rec = SandboxRecord("sb-00000001", "box", "c", "img", "corral-runsc", "none", 256 << 20, 1.0, 2048,
                        "running", 0.0, 0.0)
    info = ContainerInfo("c", "corral-sb", "exited", {}, "corral-runsc", "img", oom_killed=True, exit_code=137)
    oom = crash_error(rec, "code_run", info)
    assert oom.oom and "ran out of memory during code_run" in str(oom) and "256 MiB" in str(oom)
    assert "OOMKilled" in str(oom) and "memory_mb" in str(oom) and "starts again on the next call" in str(oom)
    bomb = crash_error(rec, "exec", ContainerInfo("c", "n", "exited", {}, "r", "i", exit_code=2))
    assert not bomb.oom and "fork bomb" in str(bomb) and "2048" in str(bomb)


async def test_a_sandbox_that_dies_under_a_call_says_so_and_restarts_on_the_next(
    services: Services, engine: FakeEngine
) -> None:
    rec = await services.sandboxes.create()

    async def oom(params: dict[str, Any]) -> dict[str, Any]:
        engine.containers[str(rec.container_id)].status = "exited"  # as the kernel's OOM killer does
        engine.containers[str(rec.container_id)].oom_killed = True
        await services.sandboxes._agents.drop(rec.id)  # what the engine's "die" event does
        return {}

    engine.agent_ops["code_run"] = oom
    with anyio.fail_after(30), pytest.raises(SandboxCrashed, match="ran out of memory during code_run"):
        await services.sandboxes.request(rec.id, "code_run", {})
    engine.agent_ops["exec"] = lambda params: {"exit_code": 0, "stdout": "ok\n"}
    assert (await services.sandboxes.request(rec.id, "exec", {}))["stdout"] == "ok\n"
    assert engine.containers[str(rec.container_id)].status == "running"


# -- hostile replies -----------------------------------------------------------------------------------


async def test_malformed_replies_are_refused_and_huge_ones_cut(settings: Settings) -> None:
    engine = FakeEngine(
        agent_ops={
            "read_file": lambda p: {"data_b64": "aGk=", "size": "12", "truncated": False},
            "read_lines": lambda p: {"bytes": b"hi\n", "size": "12", "first_line": 1, "last_line": 1},
            "stat": lambda p: {"exists": True, "type": "file", "size": 1, "mtime": 0, "mode": "0644"},
            "exec": lambda p: {"exit_code": 0, "stdout": "\x01" * (2 << 20), "stderr": '"' * (1 << 20)},
            "proc_start": lambda p: {"proc_id": "../../etc", "pid": 7},
        }
    )
    async with Client(build_server(settings.with_(host_dirs=(settings.home,)), engine=engine)) as client:
        box = (await call_ok(client, "create_sandbox"))["id"]
        for tool, args in (
            ("read_file", {"path": "x"}),
            ("download", {"path": "x", "host_path": "x"}),
            ("start_process", {"command": "true"}),
        ):
            message = await call_error(client, tool, sandbox=box, **args)
            assert "malformed reply" in message and "unexpectedly" not in message, (tool, message)
        result = await client.call_tool("run_command", {"sandbox": box, "command": "x"})
        assert not result.is_error
        assert len(json.dumps(result.model_dump(mode="json", by_alias=True))) < 1_000_000


def test_a_result_fits_in_one_event_whatever_its_text_holds() -> None:
    for text in ("\x01" * 300_000, '"' * 300_000, "é" * 300_000, "x" * 300_000):
        result = ExecResult(exit_code=0, stdout=text, stderr=text, stdout_dropped_bytes=0, stderr_dropped_bytes=0,
                            timed_out=False, duration_ms=1)
        fit(result, ("stdout", "stderr"))
        assert len(result.model_dump_json()) <= RESULT_BUDGET
        assert result.stdout.startswith(text[:1000]) and result.stdout.endswith(text[-1000:])


async def test_docker_errors_in_the_exec_stream_are_never_read_as_agent_data() -> None:
    host, docker_side = socket.socketpair()
    with docker_side:
        stream = await DockerExecStream.open(host, "exec-1")
        out = b"\x00\x00\x00\x05hello"
        docker_side.sendall(struct.pack(">BxxxL", 1, len(out)) + out + struct.pack(">BxxxL", 2, 4) + b"oops")
        with anyio.fail_after(10):
            assert await stream.receive() == out  # stdout, and only stdout
        docker_side.sendall(b"OCI runtime exec failed: exec failed: unable to start container process\r\n")
        with anyio.fail_after(10), pytest.raises(anyio.BrokenResourceError, match="OCI runtime exec failed"):
            await stream.receive()
        await stream.aclose()


# -- servers sharing a data dir ---------------------------------------------------------------------------


def test_an_instance_is_alive_while_its_process_runs_or_its_heartbeat_is_fresh() -> None:
    now = time.time()
    me = InstanceRecord("a", "here", os.getpid(), process_start(os.getpid()), now, now - 3600)
    assert is_alive(me, now, "here")
    assert not is_alive(me.__class__("b", "here", os.getpid(), 1, now, now), now, "here")  # a reused pid
    assert not is_alive(me.__class__("c", "here", 2**22 + 1, None, now, now), now, "here")
    assert is_alive(me.__class__("d", "elsewhere", 1, None, now, now - 5), now, "here")
    assert not is_alive(me.__class__("e", "elsewhere", 1, None, now, now - STALE_AFTER - 1), now, "here")


def helper_spec(services: Services, rec: SandboxRecord, name: str, instance: str | None = None) -> ContainerSpec:
    """A container labelled like a git helper working for `rec`."""
    containers = services.sandboxes._containers
    labels = {**containers.network_labels("git"), LABEL_HELPER_FOR: rec.id}
    if instance is not None:
        labels[LABEL_INSTANCE] = instance
    return dataclasses.replace(containers.sandbox_spec(rec), name=name, labels=labels)


async def test_reconcile_leaves_what_a_live_server_makes_and_reaps_what_a_dead_one_left(
    settings: Settings, engine: FakeEngine
) -> None:
    async with open_services(settings, engine=engine) as first:
        rec = await first.sandboxes.create(name="done")
        # `first` is in the middle of a create, and runs a helper.
        half = rec.with_(id="sb-0000half", name="half", container_id=None, status="creating", volume=None,
                         created_by=first.settings.instance_id)
        store = await Store.open(settings.db_path)
        try:
            await store.sandboxes.insert(half)
        finally:
            await store.close()
        helper = await engine.create_container(helper_spec(first, rec, "helper"))
        async with open_services(settings, engine=engine) as second:  # starts next to the live one
            plan = await second.reconciler.plan()
            assert plan.rollbacks == [] and plan.dead_helpers == [] and plan.orphans == []
            assert {k.id for k in plan.kept} == {helper}
            assert helper in engine.containers and await second.sandboxes.resolve("half")
    # `first` is gone without finishing: the next start rolls its create back and reaps its helper.
    async with open_services(settings, engine=engine) as third:
        assert [r.name for r in await third.sandboxes.list_all()] == ["done"]
        assert helper not in engine.containers and str(rec.container_id) in engine.containers


async def test_a_disk_image_left_without_its_volume_is_found_and_removed_by_gc(
    settings: Settings, engine: FakeEngine
) -> None:
    async with open_services(settings, engine=engine, serve=False) as services:
        kept = await services.sandboxes.create()
        stray = services.sandboxes._containers.volume_name("sb-0000dead")
        engine.stray_disks.add(stray)  # a crash between making the image and making the volume
        plan = await services.reconciler.plan()
        assert [(o.kind, o.id) for o in plan.orphans] == [("volume", stray)]
        await services.reconciler.apply(plan, remove_orphans=True)
        assert engine.stray_disks == set() and kept.volume in engine.volumes


async def test_orphan_helpers_are_one_entry_each(settings: Settings, engine: FakeEngine) -> None:
    async with open_services(settings, engine=engine, serve=False) as services:
        rec = await services.sandboxes.create()
        made = {await engine.create_container(helper_spec(services, rec, f"h{i}", "gone")) for i in range(3)}
        plan = await services.reconciler.plan()
        assert {o.id for o in plan.orphans if o.kind == "helper"} == made


# -- supervision --------------------------------------------------------------------------------------------


async def test_a_failing_event_handler_never_takes_the_server_down(
    settings: Settings, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def locked(*args: object, **kwargs: object) -> None:
        raise StoreError("write the state database: database is locked")

    async with Client(build_server(settings, engine=engine), raise_exceptions=False) as client:
        box = (await call_ok(client, "create_sandbox"))["id"]
        container_id = next(iter(engine.containers))
        monkeypatch.setattr(SandboxTable, "update", locked)
        await engine.stop_container(container_id)  # its handler cannot record the stop: logged, not fatal
        monkeypatch.undo()
        await engine.emit(container_id, "die")  # and the next event is handled
        assert (await call_ok(client, "get_sandbox", sandbox=box))["status"] == "stopped"
        assert [s["id"] for s in (await call_ok(client, "list_sandboxes"))["sandboxes"]] == [box]
