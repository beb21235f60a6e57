"""The warm pool: started, agent-ready sandboxes of the default spec, handed out by create_sandbox.

A create that asks for the default image, limits and disk, no network and no environment takes a
member: its row is claimed and deleted by one SQLite statement, so no member is ever handed to two
callers, also with several servers on one data dir; the same transaction records it for the
caller's tenant (name, labels, lifetimes) under the id it was made with, after checking that
tenant's quota. Everything else (a network, above all) is a cold create. Members are built exactly
like a cold sandbox (service/builder.py: read-only root, agent and /workspace volumes). Members are made one at a time
in the background until there are `CORRAL_POOL_SIZE` of them, and each keeps a Python context
warm so the first run_code does not start an interpreter. They are labelled `role=pool`, recorded
in the `pool` table (never in `sandboxes`, so they count apart from the sandbox limit), removed
when the server stops, by the next server when the instance that made them is gone
(service/instances.py), and by `corral gc` once nothing records them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import anyio

from corral.config import RUNTIME_RUNC, Settings
from corral.errors import CorralError
from corral.sandbox_backend.store import PoolRecord, SandboxRecord
from corral.sandbox_backend.store.pool import PoolTable
from corral.sandbox_backend.store.sandboxes import UsageCheck
from corral.service import notes
from corral.service.agents import AgentPool
from corral.service.builder import Builder
from corral.service.clock import Clock
from corral.service.containers import Containers
from corral.service.instances import Instances, process_start
from corral.service.network import Policy

log = logging.getLogger(__name__)

RETRY_AFTER = 30.0  # seconds between attempts while members cannot be made (say, the image is missing)
WARM_CONTEXT = {"language": "python", "context": "default", "code": "pass", "timeout": 60, "max_output": 1024}


class WarmPool:
    def __init__(
        self,
        settings: Settings,
        builder: Builder,
        table: PoolTable,
        agents: AgentPool,
        containers: Containers,
        clock: Clock,
        new_id: Callable[[], str],
        instances: Instances,
    ) -> None:
        self.size = settings.pool_size
        self._settings = settings
        self._builder = builder
        self._instances = instances
        self._table = table
        self._agents = agents
        self._containers = containers
        self._clock = clock
        self._new_id = new_id
        self._instance = settings.instance_id
        self._runtime = RUNTIME_RUNC if settings.unsafe_runc else settings.runtime
        limits = settings.limits
        unlimited = settings.unsafe_no_disk_limit
        self._disk = None if unlimited else limits.disk_bytes
        self.spec = f"{settings.image}|{self._runtime}|{limits.memory_bytes}|{limits.cpus:g}|{limits.pids}|{self._disk}"
        self._wanted = anyio.Event()
        self._scope = anyio.CancelScope()
        self._stopped = False
        self._making: str | None = None  # the member _make is building (it cleans up after itself)

    def serves(self, rec: SandboxRecord) -> bool:
        limits = self._settings.limits
        return (
            rec.image == self._settings.image
            and rec.runtime == self._runtime
            and rec.memory_bytes == limits.memory_bytes
            and rec.cpus == limits.cpus
            and rec.disk_bytes == self._disk
            and rec.network == "none"
            and not rec.env
            and not rec.mounts
        )

    async def take(self, rec: SandboxRecord, check: UsageCheck | None = None) -> SandboxRecord | None:
        """Hand a ready member over as `rec` (same options; the member's id, container and volumes),
        recorded in `sandboxes` for the caller's tenant by the same transaction that takes it from
        the pool and checks the tenant's quota; None when there is none (the caller then creates
        cold). A taken name raises StoreConflict, a quota QuotaExceeded."""

        def build(member: PoolRecord) -> SandboxRecord:
            volume = None if rec.volume is None else self._containers.volume_name(member.sandbox_id)
            return rec.with_(id=member.sandbox_id, container_id=member.container_id, status="running", volume=volume)

        handed = await self._table.hand_over(self.spec, self._instance, build, check)
        self._wanted.set()
        return handed

    async def remove_orphans(self) -> list[str]:
        """Remove the members of servers that are gone (killed before they could drain their pool;
        service/instances.py tells): nobody else would ever take or remove them."""
        live, removed = await self._instances.live(), []
        for member in await self._table.list():
            if member.instance_id != self._instance and member.instance_id not in live:
                await self._discard(self._member(member.sandbox_id), member.container_id)
                removed.append(member.sandbox_id)
        return removed

    def _member(self, sandbox_id: str) -> SandboxRecord:
        now = self._clock.now()
        limits = self._settings.limits
        return SandboxRecord(
            id=sandbox_id,
            name=None,
            container_id=None,
            image=self._settings.image,
            runtime=self._runtime,
            network="none",
            memory_bytes=limits.memory_bytes,
            cpus=limits.cpus,
            pids_limit=limits.pids,
            status="creating",
            created_at=now,
            last_used_at=now,
            disk_bytes=self._disk,
            volume=None if self._disk is None else self._containers.volume_name(sandbox_id),
            created_by=self._instance,
        )

    async def run(self) -> None:
        """Keep `size` members ready (supervised by the caller); one is made at a time."""
        notes.detached()
        if self._stopped:
            return
        try:
            gone = await self.remove_orphans()
        except CorralError as exc:
            log.warning("warm pool: could not remove members of servers that died: %s", exc)
        else:
            if gone:
                log.info("warm pool: removed %d member(s) of servers that died", len(gone))
        self._scope = anyio.CancelScope()
        with self._scope:
            while True:
                if len(await self._table.list(self._instance)) < self.size:
                    try:
                        await self._make()
                    except CorralError as exc:
                        log.warning("warm pool: could not make a sandbox (%s); trying again later", exc)
                        with anyio.move_on_after(RETRY_AFTER):
                            await self._wanted.wait()
                    continue
                await self._wanted.wait()
                self._wanted = anyio.Event()

    async def _make(self) -> None:
        rec = self._member(self._new_id())
        me = os.getpid()
        member = PoolRecord(
            rec.id, None, self.spec, self._instance, False, rec.created_at, socket.gethostname(), me, process_start(me)
        )
        await self._table.insert(member)
        self._making = rec.id
        container_id = None

        async def made(new_id: str) -> None:
            nonlocal container_id
            container_id = new_id
            await self._table.set_container(rec.id, new_id)

        try:
            # The same container, volumes and agent as a cold create (service/builder.py).
            await self._builder.make(rec, Policy("none"), role="pool", on_container=made)
            assert container_id is not None
            await self._builder.start(container_id)
            rec = rec.with_(container_id=container_id, status="running")
            await self._agents.get(rec)
            await self._agents.request(rec, "code_run", dict(WARM_CONTEXT), timeout=90)
            await self._table.mark_ready(rec.id, container_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard(rec, container_id)
            raise
        finally:
            self._making = None

    async def _discard(self, rec: SandboxRecord, container_id: str | None) -> None:
        await self._builder.discard(rec, container_id)
        await self._table.delete(rec.id)

    async def drain(self) -> None:
        """Stop refilling and remove this server's members (server shutdown)."""
        self._stopped = True
        self._scope.cancel()
        with anyio.CancelScope(shield=True):
            for member in await self._table.list(self._instance):
                if member.sandbox_id == self._making:
                    continue  # the cancelled _make removes what it made itself (two removals collide)
                await self._discard(self._member(member.sandbox_id), member.container_id)
