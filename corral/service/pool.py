"""The warm pool: started, agent-ready sandboxes of the default spec, handed out by create_sandbox.

A create that asks for the default image and limits (and no environment) takes a member: its row
is claimed and deleted by one SQLite statement, so no member is ever handed to two callers, also
with several servers on one data dir; it then gets the caller's record (name, labels, lifetimes)
under the id it was made with. Everything else is a cold create. Members are made one at a time
in the background until there are `CORRAL_POOL_SIZE` of them, and each keeps a Python context
warm so the first run_code does not start an interpreter. They are labelled `role=pool`, recorded
in the `pool` table (never in `sandboxes`, so they count apart from the sandbox limit), removed
when the server stops, and removed by `corral gc` once nothing records them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import anyio

from corral.config import DEFAULT_IMAGE, RUNTIME_RUNC, WORKDIR, Settings
from corral.errors import CorralError
from corral.sandbox_backend.archive import tar_directory
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import PoolRecord, SandboxRecord
from corral.sandbox_backend.store.pool import PoolTable
from corral.service import notes
from corral.service.agents import AgentPool
from corral.service.clock import Clock
from corral.service.containers import Containers

log = logging.getLogger(__name__)


def started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        return int(text[text.rfind(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(member: PoolRecord) -> bool:
    now = started(member.pid) if member.pid > 0 else None
    return now is not None and (member.pid_start is None or now == member.pid_start)

RETRY_AFTER = 30.0  # seconds between attempts while members cannot be made (say, the image is missing)
WARM_CONTEXT = {"language": "python", "context": "default", "code": "pass", "timeout": 60, "max_output": 1024}


class WarmPool:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        table: PoolTable,
        agents: AgentPool,
        containers: Containers,
        clock: Clock,
        new_id: Callable[[], str],
    ) -> None:
        self.size = settings.pool_size
        self._settings = settings
        self._engine = engine
        self._table = table
        self._agents = agents
        self._containers = containers
        self._clock = clock
        self._new_id = new_id
        self._instance = settings.instance_id
        self._runtime = RUNTIME_RUNC if settings.unsafe_runc else settings.runtime
        limits = settings.limits
        self.spec = f"{settings.image}|{self._runtime}|{limits.memory_bytes}|{limits.cpus:g}|{limits.pids}"
        self._wanted = anyio.Event()
        self._scope = anyio.CancelScope()
        self._stopped = False

    def serves(self, rec: SandboxRecord) -> bool:
        limits = self._settings.limits
        return (
            rec.image == self._settings.image
            and rec.runtime == self._runtime
            and rec.memory_bytes == limits.memory_bytes
            and rec.cpus == limits.cpus
            and not rec.env
        )

    async def take(self, rec: SandboxRecord) -> SandboxRecord | None:
        """Hand a ready member over as `rec` (same options; the member's id and container), recorded
        in `sandboxes` by the same transaction that takes it from the pool; None when there is none
        (the caller then creates cold). A taken name raises StoreConflict."""
        handed = await self._table.hand_over(
            self.spec,
            self._instance,
            lambda member: rec.with_(id=member.sandbox_id, container_id=member.container_id, status="running"),
        )
        self._wanted.set()
        return handed

    async def remove_orphans(self) -> list[str]:
        """Remove the members of servers on this host whose process is gone (killed before they
        could drain their pool): nobody else would ever take or remove them."""
        host, removed = socket.gethostname(), []
        for member in await self._table.list():
            if member.instance_id != self._instance and member.host == host and not alive(member):
                await self._discard(member.sandbox_id, member.container_id)
                removed.append(member.sandbox_id)
        return removed

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
        now = self._clock.now()
        limits = self._settings.limits
        rec = SandboxRecord(
            id=self._new_id(),
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
        )
        me = os.getpid()
        member = PoolRecord(rec.id, None, self.spec, self._instance, False, now, socket.gethostname(), me, started(me))
        await self._table.insert(member)
        container_id = None
        try:
            container_id = await self._engine.create_container(self._containers.sandbox_spec(rec, role="pool"))
            await self._table.set_container(rec.id, container_id)
            if rec.image != DEFAULT_IMAGE:
                await self._engine.put_archive(container_id, "/", tar_directory(WORKDIR, 1000, 1000))
            await self._engine.start(container_id)
            rec = rec.with_(container_id=container_id, status="running")
            await self._agents.get(rec)
            await self._agents.request(rec, "code_run", dict(WARM_CONTEXT), timeout=90)
            await self._table.mark_ready(rec.id, container_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard(rec.id, container_id)
            raise

    async def _discard(self, sandbox_id: str, container_id: str | None) -> None:
        await self._agents.drop(sandbox_id)
        if container_id is not None:
            try:
                await self._engine.remove(container_id)
            except CorralError as exc:
                # At shutdown a member being made is removed by its maker and by drain at once.
                level = logging.DEBUG if "already in progress" in str(exc) else logging.WARNING
                log.log(level, "warm pool: could not remove %s: %s", container_id[:12], exc)
        await self._table.delete(sandbox_id)

    async def drain(self) -> None:
        """Stop refilling and remove this server's members (server shutdown)."""
        self._stopped = True
        self._scope.cancel()
        with anyio.CancelScope(shield=True):
            for member in await self._table.list(self._instance):
                await self._discard(member.sandbox_id, member.container_id)
