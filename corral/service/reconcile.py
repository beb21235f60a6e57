"""Bringing SQLite and the engine back in line: at every server start, and for `corral gc`.

What the engine holds that carries this data dir's owner label is compared with the records:
- a sandbox whose container is gone is `lost`, one whose container stopped is `stopped`;
- a record still `creating` whose creator (a server instance) is gone is a create that crashed
  half-way: the client never got its id, so it is rolled back, container and volume included,
  whether or not the container exists;
- a helper container (e.g. the networked git helper) whose instance is gone is removed, with its
  volume and its record: nobody will ever finish its operation;
- a warm pool member (service/pool.py) is recorded in the pool table, not in `sandboxes`: a live
  server's is its own to hand out or remove; a dead server's is removed (container, volumes, row)
  at the next start, whether or not that server keeps a pool;
- a snapshot's copy of /workspace is claimed by its snapshot record, a named volume by its own;
- a container or volume no record claims is an orphan: listed, and removed by `corral gc`.
Nothing a live instance made is ever removed (see service/instances.py): another server may be in
the middle of creating it. Every orphan is its own entry, keyed by container id (or volume name).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from corral.errors import CorralError
from corral.sandbox_backend.engine import ContainerInfo, Engine
from corral.sandbox_backend.store import SandboxRecord
from corral.sandbox_backend.store.instances import HelperTable
from corral.sandbox_backend.store.pool import PoolTable
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.sandbox_backend.store.snapshots import SnapshotTable
from corral.sandbox_backend.store.volumes import VolumeTable
from corral.service.containers import LABEL_HELPER_FOR, LABEL_INSTANCE, LABEL_ROLE, LABEL_SANDBOX, Containers
from corral.service.instances import Instances

log = logging.getLogger(__name__)

STRAY_GRACE = 120.0  # seconds a volume with no record is left alone (a live create may be making it)


@dataclass(frozen=True)
class Leftover:
    kind: str  # sandbox-container | helper | volume | create | pool-member
    id: str  # container id, volume name, or sandbox id for a create
    name: str
    reason: str

    def describe(self) -> str:
        ident = self.id[:12] if self.kind in ("sandbox-container", "helper") else self.id
        return f"{self.kind} {self.name} ({ident}): {self.reason}"


@dataclass
class Plan:
    statuses: dict[str, str] = field(default_factory=dict)  # sandbox id -> status it really has
    container_ids: dict[str, str] = field(default_factory=dict)
    rollbacks: list[tuple[SandboxRecord, list[str]]] = field(default_factory=list)  # + its containers
    dead_helpers: list[tuple[str, str | None]] = field(default_factory=list)  # (container id or "", volume)
    stale_helper_rows: list[str] = field(default_factory=list)
    orphans: list[Leftover] = field(default_factory=list)  # removed by gc
    kept: list[Leftover] = field(default_factory=list)  # belong to a live server
    lost: list[str] = field(default_factory=list)
    dead_members: list[tuple[str, list[str]]] = field(default_factory=list)  # pool (sandbox id, containers)

    @property
    def removable(self) -> list[Leftover]:
        """Everything gc removes: crashed creates, dead helpers, orphans."""
        creates = [
            Leftover("create", rec.id, rec.name or rec.id, "a create that never finished") for rec, _ in self.rollbacks
        ]
        return creates + self.orphans


class Reconciler:
    def __init__(
        self,
        engine: Engine,
        sandboxes: SandboxTable,
        helpers: HelperTable,
        instances: Instances,
        containers: Containers,
        pool: PoolTable | None = None,
        snapshots: SnapshotTable | None = None,
        volumes: VolumeTable | None = None,
    ) -> None:
        self._volumes = volumes
        self._pool = pool
        self._snapshots = snapshots
        self._engine = engine
        self._sandboxes = sandboxes
        self._helpers = helpers
        self._instances = instances
        self._containers = containers

    async def plan(self) -> Plan:
        """What is out of line, without changing anything."""
        plan = Plan()
        owner = self._containers.owner_filter
        live = await self._instances.live()
        infos = await self._engine.list_labeled(owner)
        records = await self._sandboxes.list()
        helper_rows = {h.container_id: h for h in await self._helpers.list()}
        pool_rows = await self._pool.list() if self._pool is not None else []
        members = {m.sandbox_id for m in pool_rows}
        for member in pool_rows:
            if member.instance_id not in live:
                # Its row may not name the container yet (the server died while making it): the
                # engine's label does.
                found = {i.id for i in infos if i.labels.get(LABEL_SANDBOX) == member.sandbox_id}
                containers = sorted(found | ({member.container_id} if member.container_id else set()))
                plan.dead_members.append((member.sandbox_id, containers))
                reason = "a warm pool member; its server is gone"
                plan.orphans.append(Leftover("pool-member", member.sandbox_id, member.sandbox_id, reason))

        by_sandbox: dict[str, list[ContainerInfo]] = {}
        helpers: list[ContainerInfo] = []
        for info in infos:
            sandbox_id = info.labels.get(LABEL_SANDBOX)
            if sandbox_id in members:
                continue  # a warm pool member: the pool's
            if info.labels.get(LABEL_ROLE, "sandbox") in ("sandbox", "pool") and sandbox_id:
                by_sandbox.setdefault(sandbox_id, []).append(info)
            elif info.labels.get(LABEL_HELPER_FOR) or info.labels.get(LABEL_ROLE) not in (None, "sandbox"):
                helpers.append(info)

        for rec in records:
            mine = by_sandbox.pop(rec.id, [])
            if rec.status == "creating":
                if rec.created_by is not None and rec.created_by in live:
                    continue  # a create in progress (here or in another server)
                if any(other.volume == rec.volume for other in records if other.id != rec.id):
                    rec = rec.with_(volume=None)  # never another sandbox's volume
                plan.rollbacks.append((rec, [c.id for c in mine]))
                continue
            current = next((c for c in mine if c.id == rec.container_id), mine[0] if mine else None)
            for extra in mine:
                if extra is not current:
                    plan.orphans.append(_container(extra, "a second container for one sandbox"))
            status = "lost" if current is None else ("running" if current.running else "stopped")
            if current is not None and current.id != rec.container_id:
                plan.container_ids[rec.id] = current.id
            if status != rec.status:
                plan.statuses[rec.id] = status
            if status == "lost":
                plan.lost.append(rec.id)

        for sandbox_id, stray in by_sandbox.items():
            for info in stray:
                leftover = _container(info, f"no sandbox record for {sandbox_id}")
                (plan.kept if info.labels.get(LABEL_INSTANCE) in live else plan.orphans).append(leftover)

        for info in helpers:
            row = helper_rows.pop(info.id, None)
            instance = row.instance_id if row else info.labels.get(LABEL_INSTANCE)
            leftover = Leftover("helper", info.id, info.name, f"{info.labels.get(LABEL_ROLE, 'helper')} helper")
            if instance in live:
                plan.kept.append(leftover)
            else:
                plan.dead_helpers.append((info.id, row.volume if row else None))
                plan.orphans.append(Leftover("helper", info.id, info.name, "its server is gone"))
        for row in helper_rows.values():  # recorded, but the container is already gone
            if row.instance_id not in live:
                plan.stale_helper_rows.append(row.container_id)
                if row.volume:
                    plan.dead_helpers.append(("", row.volume))

        await self._plan_volumes(plan, records, live, members)
        return plan

    async def _plan_volumes(self, plan: Plan, records: list[SandboxRecord], live: set[str], members: set[str]) -> None:
        claimed = {rec.volume for rec in records if rec.volume}
        owned = {rec.id for rec in records} | members
        claimed |= {self._containers.agent_volume(sandbox_id) for sandbox_id in owned}
        claimed |= {self._containers.volume_name(sandbox_id) for sandbox_id in members}
        if self._snapshots is not None:
            claimed |= {snap.volume for snap in await self._snapshots.list() if snap.volume}
        if self._volumes is not None:
            claimed |= {named.volume for named in await self._volumes.list()}
        claimed |= {volume for _, volume in plan.dead_helpers if volume}
        claimed |= {h.volume for h in await self._helpers.list() if h.volume}
        now = time.time()
        for volume in await self._engine.list_volumes(self._containers.owner_filter):
            if volume.name in claimed or not volume.name.startswith(f"corral-{self._containers.owner}-"):
                continue
            instance = volume.labels.get(LABEL_INSTANCE)
            role = volume.labels.get(LABEL_ROLE)
            # Snapshot copies and named volumes outlive any server: without a record they are plain orphans.
            if role not in (None, "workspace", "agent", "snapshot", "named") and instance not in live:
                # A helper's work volume whose server is gone: reaped like the helper itself.
                plan.dead_helpers.append(("", volume.name))
                reason = f"a {role} helper's; its server is gone"
                plan.orphans.append(Leftover("volume", volume.name, volume.name, reason))
                continue
            young = volume.created_at is not None and now - volume.created_at < STRAY_GRACE
            leftover = Leftover("volume", volume.name, volume.name, "no sandbox or helper uses it")
            (plan.kept if instance in live or young else plan.orphans).append(leftover)

    async def apply(self, plan: Plan, *, remove_orphans: bool) -> None:
        """Record the real statuses, roll back crashed creates, reap dead helpers; with
        `remove_orphans` (gc) also remove every orphan."""
        for sandbox_id, container_id in plan.container_ids.items():
            await self._sandboxes.update(sandbox_id, container_id=container_id)
        for sandbox_id, status in plan.statuses.items():
            await self._sandboxes.update(sandbox_id, status=status)
        for rec, container_ids in plan.rollbacks:
            log.warning("rolling back sandbox %s: its create never finished (the server died)", rec.id)
            for container_id in {*container_ids, *([rec.container_id] if rec.container_id else [])}:
                await self._quietly(self._engine.remove(container_id))
            for volume in (self._containers.agent_volume(rec.id), rec.volume):
                if volume:
                    await self._quietly(self._engine.remove_volume(volume))
            await self._sandboxes.delete(rec.id)
        for container_id, volume in plan.dead_helpers:
            if container_id:
                log.warning("removing helper container %s: the server that ran it is gone", container_id[:12])
                await self._quietly(self._engine.remove(container_id))
                await self._helpers.delete(container_id)
            if volume:
                await self._quietly(self._engine.remove_volume(volume))
        for container_id in plan.stale_helper_rows:
            await self._helpers.delete(container_id)
        for sandbox_id, member_containers in plan.dead_members:
            log.warning("removing warm pool member %s: the server that made it is gone", sandbox_id)
            for container_id in member_containers:
                await self._quietly(self._engine.remove(container_id))
            for volume in (self._containers.agent_volume(sandbox_id), self._containers.volume_name(sandbox_id)):
                await self._quietly(self._engine.remove_volume(volume))
            if self._pool is not None:
                await self._pool.delete(sandbox_id)
        if remove_orphans:
            for leftover in plan.orphans:
                if leftover.kind == "sandbox-container":
                    await self._quietly(self._engine.remove(leftover.id))
            reaped = {volume for _, volume in plan.dead_helpers}
            for leftover in plan.orphans:
                if leftover.kind == "volume" and leftover.id not in reaped:
                    await self._quietly(self._engine.remove_volume(leftover.id))
        if plan.lost:
            log.warning("sandboxes lost (container gone): %s", ", ".join(plan.lost))
        reaped = {volume for _, volume in plan.dead_helpers}
        # Helpers and pool members of dead servers are gone already.
        left = [o for o in plan.orphans if o.kind not in ("helper", "pool-member") and o.id not in reaped]
        if left and not remove_orphans:
            log.warning("left by earlier runs, not in use (run `corral gc`): %s", "; ".join(o.describe() for o in left))

    @staticmethod
    async def _quietly(operation: Awaitable[None]) -> None:
        try:
            await operation
        except CorralError as exc:
            log.warning("cleanup step failed: %s", exc)


def _container(info: ContainerInfo, reason: str) -> Leftover:
    return Leftover("sandbox-container", info.id, info.name, reason)
