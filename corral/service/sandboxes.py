"""SandboxService: the lifecycle of sandboxes (create, use, delete) and their engine events.

Features that live inside a sandbox (processes, ports, contexts, ...) do not reach in here: they
subscribe to `on_delete` and get the narrow `SandboxAccess` (service/access.py) to reach a
sandbox's agent. Reconciliation with the engine and gc are in service/reconcile.py.

A sandbox is a container plus its /workspace volume (with the disk limit), made and removed
together: a create that fails half-way removes both, and so does the next server start after a
create that crashed (the record stays `creating` until the sandbox is complete).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup

from corral.config import MIB, RUNTIME_GVISOR_NET, RUNTIME_RUNC, WORKDIR, Limits, Quota, Settings
from corral.errors import (
    CorralError,
    InvalidRequest,
    QuotaExceeded,
    RuntimeMissing,
    SandboxBusy,
    SandboxLost,
    SandboxNotFound,
    StoreConflict,
)
from corral.sandbox_backend.archive import tar_directory
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord, SandboxUsage
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.service import tenancy
from corral.service.agents import AgentPool
from corral.service.containers import LABEL_ROLE, LABEL_SANDBOX, SANDBOX_UID, Containers
from corral.service.images import ImagePolicy
from corral.service.network import NetworkService, Policy
from corral.service.supervisor import supervise
from corral.service.validation import check_image, check_labels, check_name

log = logging.getLogger(__name__)

DeleteHook = Callable[[str], Awaitable[None]]  # gets the id of a sandbox being deleted


class SandboxService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        table: SandboxTable,
        agents: AgentPool,
        containers: Containers,
        network: NetworkService | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._network = network
        self._table = table
        self._agents = agents
        self._containers = containers
        self._images = ImagePolicy(settings, engine)
        self._locks: dict[str, anyio.Lock] = {}
        self._on_delete: list[DeleteHook] = []
        self._on_gone: list[DeleteHook] = []

    def on_gone(self, hook: DeleteHook) -> None:
        """Call `hook(sandbox_id)` when the engine reports a sandbox's container removed (by this
        process or any other), to drop in-memory state; the records are the deleter's business."""
        self._on_gone.append(hook)

    def on_delete(self, hook: DeleteHook) -> None:
        """Call `hook(sandbox_id)` while a sandbox is deleted, before its record goes."""
        self._on_delete.append(hook)

    def watch_events(self, tg: TaskGroup) -> None:
        """Keep statuses current from the engine's events (server mode), supervised: a failing
        event is logged and the next one handled, a failing watch restarted."""

        async def handle(action: str, labels: Mapping[str, str]) -> None:
            try:
                await self._on_container_event(action, labels)
            except Exception:
                log.exception("could not handle the engine event %s", action)

        async def watch() -> None:
            await self._engine.watch_container_events(self._containers.owner_filter, handle)

        supervise(tg, "container events", watch)

    def _lock(self, sandbox_id: str) -> anyio.Lock:
        return self._locks.setdefault(sandbox_id, anyio.Lock())

    # -- lookup ---------------------------------------------------------------------------------

    async def resolve(self, ref: str) -> SandboxRecord:
        """The caller's sandbox with this id or name. Another tenant's sandbox is answered exactly
        like a missing one, and the hint lists only the caller's own."""
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidRequest("`sandbox` must be a sandbox id (sb-xxxxxxxx) or name")
        who = tenancy.caller()
        found = await self._table.find(ref.strip(), who.tenant)
        if not found:
            known = await self._table.list(who.tenant)
            listing = ", ".join(f"{r.id} ({r.name})" if r.name else r.id for r in known[:20])
            listing = listing or "none yet; create one with create_sandbox"
            raise SandboxNotFound(f"no sandbox with id or name {ref!r}. Known sandboxes: {listing}")
        if len(found) > 1:  # only the operator sees several tenants' names at once
            owners = ", ".join(f"{r.id} (tenant {r.tenant})" for r in found)
            raise InvalidRequest(f"several tenants have a sandbox named {ref!r}: {owners}; use the id")
        tenancy.note_sandbox(found[0].id)
        return found[0]

    async def list_all(self) -> list[SandboxRecord]:
        """The caller's sandboxes (every tenant's for the operator)."""
        return await self._table.list(tenancy.caller().tenant)

    async def get(self, ref: str) -> SandboxRecord:
        return await self._refresh(await self.resolve(ref))

    # -- create ---------------------------------------------------------------------------------

    async def create(
        self,
        *,
        name: str | None = None,
        image: str | None = None,
        memory_mb: int | None = None,
        cpus: float | None = None,
        disk_mb: int | None = None,
        labels: Mapping[str, str] | None = None,
        network: str | None = None,
        allow: Sequence[str] | None = None,
    ) -> SandboxRecord:
        settings = self.settings
        who = tenancy.caller()
        tenant = who.tenant or tenancy.LOCAL
        policy = self._policy(network, allow)
        if name is not None:
            check_name(name)
            if await self._table.get(name, tenant) is not None:
                raise InvalidRequest(_name_taken(name))
        image = check_image(image or settings.image)
        limits = settings.limits
        memory = limits.memory_bytes if memory_mb is None else self._check_memory(memory_mb)
        cpu = limits.cpus if cpus is None else _check_cpus(cpus)
        disk = _check_disk(limits, disk_mb)
        user_labels = check_labels(labels or {})
        unlimited = settings.unsafe_no_disk_limit
        quota = Quotas(settings.max_sandboxes, tenant, who.quota, memory, 0 if unlimited else disk)
        # Refuse early, before pulling anything; the insert below checks again atomically.
        quota.check(await self._table.usage(), await self._table.usage(tenant))
        runtime = RUNTIME_RUNC if settings.unsafe_runc else RUNTIME_GVISOR_NET if policy.wired else settings.runtime
        await self._check_runtime(runtime)
        await self._images.ensure(image)

        now = time.time()
        sandbox_id = f"sb-{secrets.token_hex(4)}"
        rec = SandboxRecord(
            id=sandbox_id,
            name=name,
            container_id=None,
            image=image,
            runtime=runtime,
            network=policy.mode,
            memory_bytes=memory,
            cpus=cpu,
            pids_limit=limits.pids,
            status="creating",
            created_at=now,
            last_used_at=now,
            labels=user_labels,
            disk_bytes=None if unlimited else disk,
            volume=None if unlimited else self._containers.volume_name(sandbox_id),
            created_by=settings.instance_id,
            tenant=tenant,
        )
        try:
            await self._table.insert(rec, quota.check)
        except StoreConflict:
            # Another call took the name between our check and our insert.
            raise InvalidRequest(_name_taken(name or rec.id)) from None
        container_id: str | None = None
        volumes = self._volumes(rec)
        try:
            # The agent's code gets a volume of its own: the root file system is read-only.
            await self._engine.create_volume(self._containers.volume_spec(volumes[0], rec.id, "agent", None))
            if rec.volume is not None:
                await self._engine.create_volume(
                    self._containers.volume_spec(rec.volume, rec.id, "workspace", rec.disk_bytes)
                )
            spec = self._containers.sandbox_spec(rec)
            if self._network is not None:
                spec = await self._network.attach(rec, spec, policy)
            container_id = await self._engine.create_container(spec)
            await self._table.update(rec.id, container_id=container_id)
            if rec.volume is None:
                # A writable root file system: images other than ours have no home for uid 1000.
                await self._engine.put_archive(container_id, "/", tar_directory(WORKDIR, SANDBOX_UID, SANDBOX_UID))
            await self._agents.install(container_id)
            if self._network is not None:
                await self._network.provision(container_id, rec)
            await self._engine.start(container_id)
            rec = rec.with_(container_id=container_id, status="running")
            await self._agents.get(rec)
            await self._table.update(rec.id, status="running")
            tenancy.note_sandbox(rec.id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._agents.drop(rec.id)
                if container_id is not None:
                    await self._quiet_remove(container_id)
                for volume in volumes:
                    await self._quiet_remove_volume(volume)
                if self._network is not None:
                    await self._quietly(self._network.forget_sandbox(rec.id))
                await self._table.delete(rec.id)
            raise
        return rec

    def _volumes(self, rec: SandboxRecord) -> list[str]:
        """The sandbox's volumes: the agent's code, and /workspace unless disk limits are off."""
        return [self._containers.agent_volume(rec.id), *([rec.volume] if rec.volume else [])]

    def _policy(self, network: str | None, allow: Sequence[str] | None) -> Policy:
        if self._network is not None:
            return self._network.prepare(network, allow)
        if network not in (None, "none") or allow is not None:
            raise InvalidRequest("this server offers no network for sandboxes (network='none' only)")
        return Policy("none")

    async def update_network(self, ref: str, network: str | None, allow: Sequence[str] | None) -> SandboxRecord:
        """Change a live sandbox's network policy; it applies to the next connection, and open ones
        the new policy does not allow are cut."""
        rec = await self.resolve(ref)
        if self._network is None:
            self._policy(network, allow)
            return rec
        async with self._lock(rec.id):
            policy = await self._network.update(rec, network, allow)
            if policy.mode != rec.network:
                await self._table.update(rec.id, network=policy.mode)
                rec = rec.with_(network=policy.mode)
        return rec

    async def _quietly(self, work: Awaitable[None]) -> None:
        try:
            await work
        except CorralError as exc:
            log.warning("cleanup failed: %s", exc)

    def _check_memory(self, memory_mb: int) -> int:
        top = max(self.settings.limits.memory_bytes // (1024 * 1024), 128) * 8
        if not 64 <= memory_mb <= top:
            raise InvalidRequest(f"memory_mb must be between 64 and {top} (got {memory_mb})")
        return memory_mb * 1024 * 1024

    async def _check_runtime(self, runtime: str) -> None:
        if runtime == RUNTIME_RUNC:
            return
        if runtime not in await self._engine.runtimes():
            raise RuntimeMissing(
                f"the gVisor runtime '{runtime}' is not registered with Docker, so no sandbox can be "
                "created safely. Fix: run scripts/setup-host.sh as root (installs runsc and registers it in "
                "/etc/docker/daemon.json), or start the server with --unsafe-runc-no-gvisor to run without "
                "gVisor (not recommended)."
            )

    async def _quiet_remove(self, container_id: str) -> None:
        try:
            await self._engine.remove(container_id)
        except CorralError as exc:
            log.warning("could not remove container %s: %s", container_id[:12], exc)

    async def _quiet_remove_volume(self, volume: str) -> None:
        try:
            await self._engine.remove_volume(volume)
        except CorralError as exc:
            log.warning("could not remove volume %s: %s", volume, exc)

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, ref: str) -> SandboxRecord:
        rec = await self.resolve(ref)
        async with self._lock(rec.id):
            await self._agents.drop(rec.id)
            if rec.container_id:
                await self._engine.remove(rec.container_id)
            for volume in self._volumes(rec):
                await self._engine.remove_volume(volume)
            for hook in self._on_delete:
                await hook(rec.id)
            await self._table.delete(rec.id)
        self._locks.pop(rec.id, None)
        return rec

    # -- status -----------------------------------------------------------------------------------

    async def _refresh(self, rec: SandboxRecord) -> SandboxRecord:
        if rec.container_id is None or rec.status == "creating":
            return rec
        info = await self._engine.inspect(rec.container_id)
        status = "lost" if info is None else ("running" if info.running else "stopped")
        if status != rec.status:
            if not self._table.read_only:  # a looking-only command reports, the server records
                await self._table.update(rec.id, status=status)
            rec = rec.with_(status=status)
        return rec

    async def _on_container_event(self, action: str, labels: Mapping[str, str]) -> None:
        """The engine told us a container changed: a stopped or restarted sandbox's agent channel
        is dead (its exec stream does not always close), so drop it and record the new status."""
        sandbox_id = labels.get(LABEL_SANDBOX)
        if not sandbox_id or labels.get(LABEL_ROLE, "sandbox") != "sandbox":
            return
        if action not in ("die", "stop", "kill", "destroy", "start"):
            return
        if action != "start":
            await self._agents.drop(sandbox_id)
        if action == "destroy":
            # Whoever removed it (this server, `corral rm`, another server, someone with docker),
            # what this process holds for it in memory (port listeners) is of no use any more.
            for hook in self._on_gone:
                await hook(sandbox_id)
        rec = await self._table.get(sandbox_id)
        if rec is None or rec.status == "creating":
            return
        status = {"destroy": "lost", "start": "running"}.get(action, "stopped")
        if status != rec.status:
            await self._table.update(sandbox_id, status=status)

    async def use(self, ref: str) -> SandboxRecord:
        """Resolve and make ready: a stopped sandbox is started again; a lost one is an error.

        The fast path (a running sandbox with a live channel) costs one SQLite read: the engine's
        event stream keeps the status current, so no per-call inspect is needed.
        """
        rec = await self.resolve(ref)
        if rec.status == "running" and self._agents.is_open(rec.id):
            return await self._touch(rec)
        async with self._lock(rec.id):
            rec = await self._refresh(rec)
            if rec.status == "lost":
                raise SandboxLost(
                    f"sandbox {rec.id}{f' ({rec.name})' if rec.name else ''} was lost: its container was "
                    "removed outside Corral, and its files are gone. delete_sandbox it and create a new one."
                )
            if rec.status == "creating":
                raise SandboxBusy(f"sandbox {rec.id} is still being created; try again in a moment")
            if rec.status == "stopped" and rec.container_id:
                await self._agents.drop(rec.id)
                await self._engine.start(rec.container_id)
                await self._table.update(rec.id, status="running")
                rec = rec.with_(status="running")
            return await self._touch(rec)

    async def stop(self, ref: str) -> SandboxRecord:
        """Stop the sandbox's container (its files stay; the next use starts it again)."""
        rec = await self.resolve(ref)
        async with self._lock(rec.id):
            rec = await self._refresh(rec)
            if rec.status == "lost" or rec.container_id is None:
                raise SandboxLost(f"sandbox {rec.id} has no container to stop (status {rec.status})")
            await self._agents.drop(rec.id)
            await self._engine.stop(rec.container_id)
            await self._table.update(rec.id, status="stopped")
            return rec.with_(status="stopped")

    async def start_again(self, ref: str) -> SandboxRecord:
        """Start a stopped sandbox's container (an operator's `corral start`)."""
        rec = await self.resolve(ref)
        async with self._lock(rec.id):
            rec = await self._refresh(rec)
            if rec.status == "lost" or rec.container_id is None:
                raise SandboxLost(f"sandbox {rec.id} has no container to start (status {rec.status}); delete it")
            if rec.status != "running":
                await self._agents.drop(rec.id)
                await self._engine.start(rec.container_id)
                await self._table.update(rec.id, status="running")
            return rec.with_(status="running")

    async def _touch(self, rec: SandboxRecord) -> SandboxRecord:
        now = time.time()
        # A commit per call would cost more than the call itself; minute precision is plenty.
        # An operator looking (`corral logs`, read-only) is not a use.
        if now - rec.last_used_at > 60 and not self._table.read_only:
            await self._table.update(rec.id, last_used_at=now)
            return rec.with_(last_used_at=now)
        return rec

    async def request(
        self,
        ref: str,
        op: str,
        params: dict[str, Any],
        *,
        timeout: float | None = None,
        on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Send one request to the sandbox's agent (connecting or reconnecting as needed)."""
        rec = await self.use(ref)
        return await self._agents.request(rec, op, params, timeout=timeout, on_event=on_event)

    def agent_argv(self, rec: SandboxRecord, mode: str, *args: str) -> list[str]:
        """The command line that runs the sandbox's installed agent in `mode` (e.g. tcp-relay)."""
        return self._agents.argv(rec, mode, *args)

    def agent_started(self, sandbox_id: str) -> float | None:
        """When the sandbox's agent daemon started (from its hello), if connected: tells a
        restarted sandbox apart."""
        return self._agents.agent_started.get(sandbox_id)

class Quotas:
    """The limits one create must stay within: the server's and its tenant's."""

    def __init__(self, server_max: int, tenant: str, quota: Quota, memory_bytes: int, disk_bytes: int = 0) -> None:
        self.server_max = server_max
        self.tenant = tenant
        self.quota = quota
        self.memory_mb = memory_bytes // MIB
        self.disk_mb = disk_bytes // MIB

    def check(self, server: SandboxUsage, mine: SandboxUsage) -> None:
        if server.count >= self.server_max:
            raise QuotaExceeded(
                f"this server allows at most {self.server_max} sandboxes and holds {server.count}; delete one "
                "first (list_sandboxes shows yours)"
            )
        q, who = self.quota, f"tenant {self.tenant!r}"
        if q.sandboxes is not None and mine.count >= q.sandboxes:
            raise QuotaExceeded(
                f"{who} may keep {q.sandboxes} sandbox(es) (quota sandboxes={q.sandboxes}) and has {mine.count}; "
                "delete one first (list_sandboxes shows them)"
            )
        used = mine.memory_bytes // MIB
        if q.memory_mb is not None and used + self.memory_mb > q.memory_mb:
            raise QuotaExceeded(
                f"{who} may use {q.memory_mb} MiB of memory in all (quota memory_mb={q.memory_mb}); its sandboxes "
                f"use {used} MiB and this one asks for {self.memory_mb} MiB. Ask for less memory_mb or delete one"
            )
        used = mine.disk_bytes // MIB
        if q.disk_mb is not None and used + self.disk_mb > q.disk_mb:
            raise QuotaExceeded(
                f"{who} may use {q.disk_mb} MiB of disk in all (quota disk_mb={q.disk_mb}); its sandboxes use "
                f"{used} MiB and this one asks for {self.disk_mb} MiB"
            )


def _name_taken(name: str) -> str:
    return f"a sandbox named {name!r} already exists; pick another name or use it"


def _check_disk(limits: Limits, disk_mb: int | None) -> int:
    if disk_mb is None:
        return limits.disk_bytes
    top = limits.max_disk_bytes // MIB
    if isinstance(disk_mb, bool) or not isinstance(disk_mb, int) or not Limits.MIN_DISK_MB <= disk_mb <= top:
        raise InvalidRequest(
            f"disk_mb must be between {Limits.MIN_DISK_MB} and {top} on this server (got {disk_mb!r}); "
            f"the default is {limits.disk_bytes // MIB}"
        )
    return disk_mb * MIB


def _check_cpus(cpus: float) -> float:
    top = float(os.cpu_count() or 1)
    if not 0.1 <= cpus <= top:
        raise InvalidRequest(f"cpus must be between 0.1 and {top:g} on this server (got {cpus:g})")
    return float(cpus)
