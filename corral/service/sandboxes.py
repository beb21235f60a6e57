"""SandboxService: the lifecycle of sandboxes (create, use, stop/start, delete) and their engine events.

Features that live inside a sandbox (processes, ports, contexts, ...) subscribe to `on_delete` /
`on_fork` and get the narrow `SandboxAccess` (service/access.py). Reconcile and gc: service/
reconcile.py; containers and volumes: service/builder.py; memory across a stop: service/memory.py
(any use of a stopped sandbox resumes it, and the result says so). A create that fails half-way
removes all it made; one that crashed stays `creating` and the next server start rolls it back.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup

from corral.config import RUNTIME_GVISOR_NET, RUNTIME_RUNC, Settings
from corral.errors import (
    CorralError,
    InvalidRequest,
    SandboxBusy,
    SandboxLost,
    SandboxNotFound,
    StoreConflict,
)
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord, SnapshotRecord
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.service import leases, notes, options, tenancy
from corral.service.agents import AgentPool
from corral.service.builder import Builder
from corral.service.clock import Clock, SystemClock
from corral.service.containers import LABEL_ROLE, LABEL_SANDBOX, Containers
from corral.service.images import ImagePolicy
from corral.service.memory import Memory, PowerChange, checkpoint_name, resumed_notice
from corral.service.network import NetworkService, Policy
from corral.service.quotas import Quotas, check_disk, name_taken
from corral.service.supervisor import supervise
from corral.service.validation import check_image, check_labels, check_name

log = logging.getLogger(__name__)

DeleteHook = Callable[[str], Awaitable[None]]  # gets the id of a sandbox being deleted
SANDBOX_ROLES = ("sandbox", "pool")  # a pool member's container keeps its label once handed over


def new_sandbox_id() -> str:
    return f"sb-{secrets.token_hex(4)}"


class SandboxService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        table: SandboxTable,
        agents: AgentPool,
        containers: Containers,
        network: NetworkService | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._network = network
        self._table = table
        self._agents = agents
        self._containers = containers
        self.builder = Builder(engine, agents, containers, network)
        self.clock: Clock = clock or SystemClock()
        self.memory = Memory(engine, agents)
        self.pool: Any = None  # service.pool.WarmPool, set by open_services when CORRAL_POOL_SIZE > 0
        self._images = ImagePolicy(settings, engine)
        self._locks: dict[str, anyio.Lock] = {}
        self._on_delete: list[DeleteHook] = []
        self._on_gone: list[DeleteHook] = []
        self._inflight: dict[str, int] = {}  # agent requests running now, per sandbox
        self._last_used: dict[str, float] = {}  # exact time of the last call (SQLite keeps it coarser)
        self.leases_changed = anyio.Event()  # wakes the reaper

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

    def lock(self, sandbox_id: str) -> anyio.Lock:
        """Held while a sandbox changes state (start, stop, fork, snapshot, delete)."""
        return self._locks.setdefault(sandbox_id, anyio.Lock())

    def _leases_moved(self) -> None:
        self.leases_changed.set()
        self.leases_changed = anyio.Event()

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
        self._note_lease(found[0])
        return found[0]

    async def list_all(self, labels: Mapping[str, str] | None = None) -> list[SandboxRecord]:
        """The caller's sandboxes (every tenant's for the operator), or those carrying all of
        `labels` (key and value)."""
        records = await self._table.list(tenancy.caller().tenant)
        if labels:
            wanted = check_labels(labels).items()
            records = [r for r in records if all(r.labels.get(k) == v for k, v in wanted)]
        return records

    async def get(self, ref: str) -> SandboxRecord:
        return await self.refresh(await self.resolve(ref))

    async def find(self, ref: str) -> SandboxRecord | None:
        """The caller's sandbox with this id or name, or None (no lease noted, nothing started)."""
        found = await self._table.find(ref, tenancy.caller().tenant)
        return found[0] if found else None

    async def record(self, sandbox_id: str, **changes: Any) -> None:
        """Write fields of a sandbox's record (for the lifecycle's own collaborators)."""
        await self._table.update(sandbox_id, **changes)

    async def connect(self, rec: SandboxRecord) -> None:
        """Open the sandbox's agent channel now (a new sandbox is ready once its agent answers)."""
        await self._agents.get(rec)

    async def forget(self, sandbox_id: str) -> None:
        """Drop a half-made sandbox's channel and record (its container is the caller's to remove)."""
        await self._agents.drop(sandbox_id)
        await self._table.delete(sandbox_id)

    def last_used(self, rec: SandboxRecord) -> float:
        return max(rec.last_used_at, self._last_used.get(rec.id, 0.0))

    def lease(self, rec: SandboxRecord) -> dict[str, str] | None:
        return leases.compact(rec, self.last_used(rec))

    def _note_lease(self, rec: SandboxRecord) -> None:
        notes.lease(rec.id, self.lease(rec))
        warning = leases.expiry_warning(rec, self.clock.now())
        if warning:
            notes.notice(warning)

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
        env: Mapping[str, str] | None = None,
        idle_stop_after: float | None = None,
        delete_after: float | None = None,
        ephemeral: bool = False,
        session: str | None = None,
        snapshot: SnapshotRecord | None = None,
        mounts: Mapping[str, str] | None = None,
    ) -> SandboxRecord:
        """A new running sandbox: from the warm pool when it asks for the default spec, else cold.
        Memory and cpus past the operator's maxima are clamped and the call's notes say so. A
        `snapshot` (one Corral made, service/snapshots.py) brings its image and /workspace;
        `mounts` ({path: named volume}) are checked by service/volumes.py."""
        settings = self.settings
        who = tenancy.caller()
        tenant = who.tenant or tenancy.LOCAL
        policy = self._policy(network, allow)
        if name is not None:
            check_name(name)
            if await self._table.get(name, tenant) is not None:
                raise InvalidRequest(name_taken(name))
        image = check_image(snapshot.image if snapshot else image or settings.image)
        opts = options.resolve(
            settings,
            memory_mb=memory_mb,
            cpus=cpus,
            env=env,
            labels=labels,
            idle_stop_after=idle_stop_after,
            delete_after=delete_after,
            ephemeral=ephemeral,
        )
        if ephemeral and not session:
            raise InvalidRequest("ephemeral=true needs a client connection to tie the sandbox to")
        disk = check_disk(settings.limits, disk_mb)
        if snapshot is not None and snapshot.disk_bytes is not None:
            if disk_mb is not None and disk != snapshot.disk_bytes:
                size = snapshot.disk_bytes >> 20
                raise InvalidRequest(f"a snapshot's /workspace keeps its size ({size} MiB); omit disk_mb")
            disk = snapshot.disk_bytes
        unlimited = settings.unsafe_no_disk_limit
        quota = Quotas(settings.max_sandboxes, tenant, who.quota, opts.memory_bytes, 0 if unlimited else disk)
        # Refuse early, before pulling anything; the insert below checks again atomically.
        quota.check(await self._table.usage(), await self._table.usage(tenant))
        for option, text in opts.adjusted.items():
            notes.notice(f"{option}: {text}")
        runtime = RUNTIME_RUNC if settings.unsafe_runc else RUNTIME_GVISOR_NET if policy.wired else settings.runtime
        await self.builder.check_runtime(runtime)
        now = self.clock.now()
        sandbox_id = new_sandbox_id()
        rec = SandboxRecord(
            id=sandbox_id,
            name=name,
            container_id=None,
            image=image,
            runtime=runtime,
            network=policy.mode,
            memory_bytes=opts.memory_bytes,
            cpus=opts.cpus,
            pids_limit=settings.limits.pids,
            status="creating",
            created_at=now,
            last_used_at=now,
            labels=opts.labels,
            disk_bytes=None if unlimited else disk,
            volume=None if unlimited else self._containers.volume_name(sandbox_id),
            created_by=settings.instance_id,
            tenant=tenant,
            env=opts.env,
            idle_stop_after=opts.idle_stop_after,
            delete_after=opts.delete_after,
            expires_at=None if opts.delete_after is None else now + opts.delete_after,
            ephemeral=opts.ephemeral,
            session=session if opts.ephemeral else None,
            mounts=dict(mounts or {}),
        )
        if self.pool is not None and snapshot is None and not policy.wired and self.pool.serves(rec):
            warm = await self._take_warm(rec, quota)
            if warm is not None:
                return self.created(warm)
        if snapshot is None:
            await self._images.ensure(image)
        elif not await self._engine.image_exists(image):
            raise InvalidRequest(f"the image of this snapshot ({image}) is gone; delete_snapshot it")
        copy_of = snapshot.volume if snapshot is not None and rec.volume is not None else None
        return self.created(await self.create_cold(rec, policy, quota, copy_of=copy_of))

    async def _take_warm(self, rec: SandboxRecord, quota: Quotas) -> SandboxRecord | None:
        try:
            warm: SandboxRecord | None = await self.pool.take(rec, quota.check)
        except StoreConflict:
            raise InvalidRequest(name_taken(rec.name or rec.id)) from None
        if warm is None or self._agents.is_open(warm.id):
            return warm
        # It died while it waited (its channel went with it): never hand out a broken sandbox.
        log.warning("pool member %s was no longer usable; creating cold instead", warm.id)
        with anyio.CancelScope(shield=True):
            await self.builder.discard(warm, warm.container_id)
            await self._table.delete(warm.id)
        return None

    def created(self, rec: SandboxRecord) -> SandboxRecord:
        tenancy.note_sandbox(rec.id)
        self._last_used[rec.id] = rec.last_used_at
        self._leases_moved()
        self._note_lease(rec)
        return rec

    async def create_cold(
        self, rec: SandboxRecord, policy: Policy, quota: Quotas | None = None, *, copy_of: str | None = None
    ) -> SandboxRecord:
        """Make, start and connect the sandbox of `rec` (inserted as `creating` first, under the
        quota; rolled back completely if anything fails)."""
        await self.insert(rec, quota)
        container_id: str | None = None

        async def made(new_id: str) -> None:
            nonlocal container_id
            container_id = new_id
            await self._table.update(rec.id, container_id=new_id)

        try:
            await self.builder.make(rec, policy, copy_of=copy_of, on_container=made)
            assert container_id is not None
            await self._engine.start(container_id)
            rec = rec.with_(container_id=container_id, status="running")
            await self._agents.started(rec)
            await self._table.update(rec.id, status="running")
        except BaseException:
            with anyio.CancelScope(shield=True):
                if container_id is not None:
                    await self.builder.discard(rec, container_id)
                await self._table.delete(rec.id)
            raise
        return rec

    async def insert(self, rec: SandboxRecord, quota: Quotas | None = None) -> None:
        try:
            await self._table.insert(rec, quota.check if quota is not None else None)
        except StoreConflict:
            # Another call took the name between our check and our insert.
            raise InvalidRequest(name_taken(rec.name or rec.id)) from None

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
        async with self.lock(rec.id):
            policy = await self._network.update(rec, network, allow)
            if policy.mode != rec.network:
                await self._table.update(rec.id, network=policy.mode)
                rec = rec.with_(network=policy.mode)
        return rec

    # -- update and delete ------------------------------------------------------------------------

    async def update(
        self,
        ref: str,
        *,
        labels: Mapping[str, str] | None = None,
        idle_stop_after: float | None = None,
        delete_after: float | None = None,
    ) -> SandboxRecord:
        """Merge `labels` (an empty value removes that key); set new lifetimes (delete_after counts
        from now; 0 = never, where the operator allows it). Clamped values are noted."""
        rec = await self.resolve(ref)
        changes: dict[str, Any] = {}
        if labels is not None:
            merged = {**rec.labels, **labels}
            changes["labels"] = check_labels({k: v for k, v in merged.items() if v != ""})
        adjusted: dict[str, str] = {}
        lifetimes = self.settings.lifetimes
        now = self.clock.now()
        if idle_stop_after is not None:
            changes["idle_stop_after"] = options.lifetime_seconds(
                "idle_stop_after", idle_stop_after, lifetimes.max_idle_stop_after, adjusted
            )
        if delete_after is not None:
            lifetime = options.lifetime_seconds("delete_after", delete_after, lifetimes.max_delete_after, adjusted)
            changes["delete_after"] = lifetime
            changes["expires_at"] = None if lifetime is None else now + lifetime
        for option, text in adjusted.items():
            notes.notice(f"{option}: {text}")
        if changes:
            await self._table.update(rec.id, **changes)
            rec = rec.with_(**changes)
            self._last_used[rec.id] = now
            self._leases_moved()
            self._note_lease(rec)
        return rec

    async def delete(self, ref: str) -> SandboxRecord:
        rec = await self.resolve(ref)
        async with self.lock(rec.id):
            await self._agents.drop(rec.id)
            if rec.container_id:
                await self._engine.remove(rec.container_id)
            for volume in self.builder.volumes(rec):
                await self._engine.remove_volume(volume)
            for hook in self._on_delete:
                await hook(rec.id)
            await self._table.delete(rec.id)
        self._locks.pop(rec.id, None)
        self._last_used.pop(rec.id, None)
        notes.lease(rec.id, None)
        return rec

    def session_id(self, connection: str) -> str:
        """The session an ephemeral sandbox belongs to: this server and one client connection."""
        return f"{self.settings.instance_id}:{connection}"

    async def end_sessions_of_this_server(self) -> list[str]:
        """Delete the ephemeral sandboxes of every client of this server (it is stopping)."""
        return await self.end_session(self.session_id(""), prefix=True)

    async def end_session(self, session: str, *, prefix: bool = False) -> list[str]:
        """Delete the ephemeral sandboxes of a client connection that ended (whoever's they are:
        the session is this server's own)."""
        gone = []
        with tenancy.acting_as(tenancy.OPERATOR):
            for rec in await self._table.list():
                mine = rec.session is not None and (
                    rec.session.startswith(session) if prefix else rec.session == session
                )
                if rec.ephemeral and mine:
                    try:
                        await self.delete(rec.id)
                        gone.append(rec.id)
                    except CorralError as exc:
                        log.warning("ephemeral sandbox %s: could not delete it: %s", rec.id, exc)
        return gone

    # -- stop and start ---------------------------------------------------------------------------

    async def stop(self, ref: str, *, memory: bool = True) -> PowerChange:
        """Stop a sandbox. Its files stay; with `memory` (and an engine that can) its memory too:
        interpreter contexts and background processes resume where they were on the next start."""
        rec = await self.resolve(ref)
        async with self.lock(rec.id):
            rec = await self.check_usable(await self.refresh(rec))
            if rec.status == "stopped":
                return PowerChange(rec, memory=rec.checkpoint is not None, changed=False)
            if self._inflight.get(rec.id):
                raise SandboxBusy(
                    f"sandbox {rec.id} is running {self._inflight[rec.id]} call(s) now; stop it once they end"
                )
            assert rec.container_id is not None
            name = checkpoint_name()
            if memory:
                reason = await self.memory.save(rec, name)
            else:
                reason = "memory=false was asked"
                await self._agents.drop(rec.id)
                await self._engine.stop(rec.container_id)
            saved = reason is None
            changes = {"status": "stopped", "checkpoint": name if saved else None, "stopped_at": self.clock.now()}
            await self._table.update(rec.id, **changes)
            rec = rec.with_(**changes)
        self._leases_moved()
        self._note_lease(rec)
        return PowerChange(rec, memory=saved, reason=reason)

    async def start(self, ref: str) -> PowerChange:
        """Start a stopped sandbox, restoring its memory when it was saved."""
        rec = await self.resolve(ref)
        async with self.lock(rec.id):
            rec = await self.check_usable(await self.refresh(rec))
            if rec.status == "running":
                return PowerChange(rec, memory=True, changed=False)
            change = await self.resume(rec)
        self._note_lease(change.rec)
        return change

    async def resume(self, rec: SandboxRecord) -> PowerChange:
        """Start `rec` (stopped; its lock held): from its checkpoint when there is one."""
        assert rec.container_id is not None
        await self._agents.drop(rec.id)
        if rec.checkpoint is not None:
            reason = await self.memory.restore(rec, rec.checkpoint)
        else:
            reason = "it was stopped without its memory"
            await self._engine.start(rec.container_id)
        now = self.clock.now()
        changes = {"status": "running", "checkpoint": None, "stopped_at": None, "last_used_at": now}
        await self._table.update(rec.id, **changes)
        self._last_used[rec.id] = now
        self._leases_moved()
        return PowerChange(rec.with_(**changes), memory=reason is None, reason=reason)

    async def check_usable(self, rec: SandboxRecord) -> SandboxRecord:
        if rec.status == "lost":
            raise SandboxLost(
                f"sandbox {rec.id}{f' ({rec.name})' if rec.name else ''} was lost: its container was "
                "removed outside Corral, and its files are gone. delete_sandbox it and create a new one."
            )
        if rec.status == "creating" or rec.container_id is None:
            raise SandboxBusy(f"sandbox {rec.id} is still being created; try again in a moment")
        return rec

    # -- status -----------------------------------------------------------------------------------

    async def refresh(self, rec: SandboxRecord) -> SandboxRecord:
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
        if not sandbox_id or labels.get(LABEL_ROLE, "sandbox") not in SANDBOX_ROLES:
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
        """Resolve and make ready: a stopped sandbox is resumed (the call's notes say how); a lost
        one is an error. Renews the idle lease.

        The fast path (a running sandbox with a live channel) costs one SQLite read: the engine's
        event stream keeps the status current, so no per-call inspect is needed.
        """
        rec = await self.resolve(ref)
        if rec.status == "running" and self._agents.is_open(rec.id):
            return await self._touch(rec)
        async with self.lock(rec.id):
            rec = await self.check_usable(await self.refresh(rec))
            if rec.status == "stopped":
                change = await self.resume(rec)
                rec = change.rec
                notes.notice(resumed_notice(change))
            return await self._touch(rec)

    async def _touch(self, rec: SandboxRecord) -> SandboxRecord:
        now = self.clock.now()
        self._last_used[rec.id] = now
        # A commit per call would cost more than the call itself: SQLite gets the time when it is
        # a tenth of the idle lease (at most a minute) old, which is all the reaper needs. An
        # operator looking (`corral logs`, read-only) is not a use.
        precision = min(60.0, (rec.idle_stop_after or 600.0) / 10)
        if now - rec.last_used_at > precision and not self._table.read_only:
            await self._table.update(rec.id, last_used_at=now)
            rec = rec.with_(last_used_at=now)
        self._note_lease(rec)
        return rec

    def active(self, sandbox_id: str) -> bool:
        """Whether a call is running in the sandbox now."""
        return self._inflight.get(sandbox_id, 0) > 0

    def renew(self, rec: SandboxRecord) -> None:
        """Start the idle lease again from now (the sandbox was busy at its deadline)."""
        self._last_used[rec.id] = self.clock.now()

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
        self._inflight[rec.id] = self._inflight.get(rec.id, 0) + 1
        try:
            return await self._agents.request(rec, op, params, timeout=timeout, on_event=on_event)
        finally:
            self._inflight[rec.id] -= 1
            self._last_used[rec.id] = self.clock.now()

    def agent_argv(self, rec: SandboxRecord, mode: str, *args: str) -> list[str]:
        """The command line that runs the sandbox's installed agent in `mode` (e.g. tcp-relay)."""
        return self._agents.argv(rec, mode, *args)

    def agent_started(self, sandbox_id: str) -> float | None:
        """When the sandbox's agent daemon started (from its hello), if connected: tells a
        restarted sandbox apart."""
        return self._agents.agent_started.get(sandbox_id)
