"""Named volumes against the FakeEngine: sized like /workspace, mounted by several sandboxes,
scoped to a tenant, refused deletion while mounted, and reaped by gc without a record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.config import Quota, Settings
from corral.errors import InvalidRequest, QuotaExceeded
from corral.sandbox_backend.fake import FakeEngine
from corral.sandbox_backend.store import Store
from corral.service import Services, open_services
from corral.service.models import SandboxInfo
from corral.service.tenancy import Caller, acting_as

MIB = 1024 * 1024


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def services(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[Services]:
    async with open_services(Settings(home=tmp_path), engine=engine) as opened:
        yield opened


async def test_a_volume_is_sized_mounted_by_two_sandboxes_and_kept_until_deleted(
    services: Services, engine: FakeEngine
) -> None:
    vol = await services.volumes.create("shared", 256)
    assert engine.volumes[vol.volume].size_bytes == 256 * MIB  # the disk-quota mechanism sizes it
    mounts = await services.volumes.mounts({"shared": "/data"})
    one = await services.sandboxes.create(mounts=mounts)
    two = await services.sandboxes.create(mounts=await services.volumes.mounts({"shared": "/workspace/shared"}))
    for rec, path in ((one, "/data"), (two, "/workspace/shared")):
        assert rec.container_id is not None
        spec = engine.containers[rec.container_id].spec
        assert {m.target: m.volume for m in spec.volumes}[path] == vol.volume
    assert SandboxInfo.from_record(one).volumes == {"/data": "shared"}  # get_sandbox shows its mounts
    refused = pytest.raises(InvalidRequest, match=f"mounted by sandbox\\(es\\) {one.id}, {two.id}; delete them first")
    with refused:
        await services.volumes.delete("shared")
    await services.sandboxes.delete(one.id)
    await services.sandboxes.delete(two.id)
    assert vol.volume in engine.volumes  # it outlives the sandboxes
    assert (await services.volumes.info(vol)).mounted_by == []
    await services.volumes.delete("shared")
    assert vol.volume not in engine.volumes and await services.volumes.all() == []


BAD_PATHS = ["/", "/etc", "/workspace", "/tmp/x", "/opt/corral/agent", "/proc/1", "data", "/../etc"]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_a_volume_cannot_cover_system_or_corral_directories(services: Services, path: str) -> None:
    await services.volumes.create("v")
    with pytest.raises(InvalidRequest, match=r"mount path|cannot be mounted"):
        await services.volumes.mounts({"v": path})


async def test_another_tenants_volume_is_answered_like_a_missing_one(services: Services) -> None:
    with acting_as(Caller("alice")):
        await services.volumes.create("data")
    with acting_as(Caller("bob")):
        theirs = await _error(services.volumes.mounts({"data": "/data"}))
        missing = await _error(services.volumes.mounts({"nope": "/data"}))
        assert theirs.replace("'data'", "'X'") == missing.replace("'nope'", "'X'")
        assert await services.volumes.all() == []
        mine = await services.volumes.create("data")  # names are per tenant
    with acting_as(Caller("alice")):
        assert [v.name for v in await services.volumes.all()] == ["data"]
        assert (await services.volumes.get("data")).volume != mine.volume


async def _error(work: object) -> str:
    try:
        await work  # type: ignore[misc]
    except InvalidRequest as exc:
        return str(exc)
    raise AssertionError("no error")


async def test_gc_removes_a_named_volume_nothing_records(tmp_path: Path, engine: FakeEngine) -> None:
    settings = Settings(home=tmp_path)
    async with open_services(settings, engine=engine) as services:
        kept = await services.volumes.create("kept")
        lost = await services.volumes.create("lost")
    store = await Store.open(settings.db_path)
    try:
        await store.volumes.delete("lost", "local")  # as a crash between the two would leave it
    finally:
        await store.close()
    async with open_services(settings, engine=engine, serve=False) as services:
        plan = await services.reconciler.plan()
        await services.reconciler.apply(plan, remove_orphans=True)
    assert lost.volume not in engine.volumes and kept.volume in engine.volumes


async def test_named_volumes_count_against_the_tenants_disk_quota(services: Services) -> None:
    with acting_as(Caller("alice", quota=Quota(disk_mb=1024))):
        await services.volumes.create("big", 768)
        with pytest.raises(QuotaExceeded, match=r"disk_mb=1024\).*volumes use 768 MiB.*asks for 512 MiB"):
            await services.volumes.create("more", 512)
        with pytest.raises(QuotaExceeded, match=r"sandboxes and volumes use 768 MiB.*asks for 512 MiB"):
            await services.sandboxes.create(disk_mb=512)
        await services.volumes.create("fits", 256)  # 768 + 256 is exactly the quota
        assert sorted(v.name for v in await services.volumes.all()) == ["big", "fits"]
    with acting_as(Caller("bob", quota=Quota(disk_mb=1024))):
        await services.volumes.create("own", 1024)  # alice's volumes are not bob's use
