"""SandboxService: the lifecycle of sandboxes (create, use, delete), reconcile and gc.

Features that live inside a sandbox (processes, ports, contexts, ...) do not reach in here: they
subscribe to `on_delete` and get the narrow `SandboxAccess` (service/access.py) to reach a
sandbox's agent.
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

from corral.config import RUNTIME_GVISOR_NET, RUNTIME_RUNC, WORKDIR, Settings
from corral.errors import (
    BackendUnavailable,
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
from corral.sandbox_backend.store import SandboxRecord
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.service.agents import AgentPool
from corral.service.containers import LABEL_SANDBOX, Containers
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
        self.orphans: list[str] = []

    def on_delete(self, hook: DeleteHook) -> None:
        """Call `hook(sandbox_id)` while a sandbox is deleted, before its record goes."""
        self._on_delete.append(hook)

    async def start(self, tg: TaskGroup) -> None:
        """Reconcile with the engine and keep statuses current from its events (server mode)."""
        try:
            await self.reconcile()
        except BackendUnavailable as exc:
            log.warning("Docker is not reachable; sandboxes will be checked on first use: %s", exc)

        async def watch() -> None:
            await self._engine.watch_container_events(self._containers.owner_filter, self._on_container_event)

        supervise(tg, "container events", watch)

    def _lock(self, sandbox_id: str) -> anyio.Lock:
        return self._locks.setdefault(sandbox_id, anyio.Lock())

    # -- lookup ---------------------------------------------------------------------------------

    async def resolve(self, ref: str) -> SandboxRecord:
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidRequest("`sandbox` must be a sandbox id (sb-xxxxxxxx) or name")
        rec = await self._table.get(ref.strip())
        if rec is None:
            known = await self._table.list()
            listing = ", ".join(f"{r.id} ({r.name})" if r.name else r.id for r in known[:20])
            listing = listing or "none yet; create one with create_sandbox"
            raise SandboxNotFound(f"no sandbox with id or name {ref!r}. Known sandboxes: {listing}")
        return rec

    async def list_all(self) -> list[SandboxRecord]:
        return await self._table.list()

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
        labels: Mapping[str, str] | None = None,
        network: str | None = None,
        allow: Sequence[str] | None = None,
    ) -> SandboxRecord:
        settings = self.settings
        policy = self._policy(network, allow)
        if name is not None:
            check_name(name)
            if await self._table.get(name) is not None:
                raise InvalidRequest(_name_taken(name))
        image = check_image(image or settings.image)
        limits = settings.limits
        memory = limits.memory_bytes if memory_mb is None else self._check_memory(memory_mb)
        cpu = limits.cpus if cpus is None else _check_cpus(cpus)
        user_labels = check_labels(labels or {})
        if await self._table.count() >= settings.max_sandboxes:
            raise QuotaExceeded(
                f"this server allows at most {settings.max_sandboxes} sandboxes; delete one first "
                "(list_sandboxes shows them)"
            )
        runtime = RUNTIME_RUNC if settings.unsafe_runc else RUNTIME_GVISOR_NET if policy.wired else settings.runtime
        await self._check_runtime(runtime)
        await self._images.ensure(image)

        now = time.time()
        rec = SandboxRecord(
            id=f"sb-{secrets.token_hex(4)}",
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
        )
        try:
            await self._table.insert(rec)
        except StoreConflict:
            # Another call took the name between our check and our insert.
            raise InvalidRequest(_name_taken(name or rec.id)) from None
        container_id: str | None = None
        try:
            spec = self._containers.sandbox_spec(rec)
            if self._network is not None:
                spec = await self._network.attach(rec, spec, policy)
            container_id = await self._engine.create_container(spec)
            # Images other than ours have no writable home for uid 1000: add one before start.
            await self._engine.put_archive(container_id, "/", tar_directory(WORKDIR, 1000, 1000))
            if self._network is not None:
                await self._network.provision(container_id, rec)
            await self._engine.start(container_id)
            rec = rec.with_(container_id=container_id, status="running")
            await self._table.update(rec.id, container_id=container_id, status="running")
            await self._agents.get(rec)
        except BaseException:
            with anyio.CancelScope(shield=True):
                if container_id is not None:
                    await self._quiet_remove(container_id)
                await self._agents.drop(rec.id)
                if self._network is not None:
                    await self._quietly(self._network.forget_sandbox(rec.id))
                await self._table.delete(rec.id)
            raise
        return rec

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

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, ref: str) -> SandboxRecord:
        rec = await self.resolve(ref)
        async with self._lock(rec.id):
            await self._agents.drop(rec.id)
            if rec.container_id:
                await self._engine.remove(rec.container_id)
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
            await self._table.update(rec.id, status=status)
            rec = rec.with_(status=status)
        return rec

    async def _on_container_event(self, action: str, labels: Mapping[str, str]) -> None:
        """The engine told us a container changed: a stopped or restarted sandbox's agent channel
        is dead (its exec stream does not always close), so drop it and record the new status."""
        sandbox_id = labels.get(LABEL_SANDBOX)
        if not sandbox_id or action not in ("die", "stop", "kill", "destroy", "start"):
            return
        if action != "start":
            await self._agents.drop(sandbox_id)
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

    async def _touch(self, rec: SandboxRecord) -> SandboxRecord:
        now = time.time()
        # A commit per call would cost more than the call itself; minute precision is plenty.
        if now - rec.last_used_at > 60:
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

    def agent_started(self, sandbox_id: str) -> float | None:
        """When the sandbox's agent daemon started (from its hello), if connected: tells a
        restarted sandbox apart."""
        return self._agents.agent_started.get(sandbox_id)

    # -- reconciliation -----------------------------------------------------------------------------

    async def reconcile(self, *, dry_run: bool = False) -> dict[str, list[str]]:
        """Bring SQLite in line with the engine after a (re)start. Returns what changed, for the log.
        With `dry_run`, only reports: nothing is written."""
        containers = {
            c.labels.get(LABEL_SANDBOX, ""): c for c in await self._engine.list_labeled(self._containers.owner_filter)
        }
        containers.pop("", None)  # helpers carry no sandbox label
        report: dict[str, list[str]] = {"running": [], "stopped": [], "lost": [], "orphans": []}
        for rec in await self._table.list():
            info = containers.pop(rec.id, None)
            if rec.status == "creating" and info is None:
                # A create that died half-way: nothing to keep.
                if not dry_run:
                    await self._table.delete(rec.id)
                continue
            status = "lost" if info is None else ("running" if info.running else "stopped")
            if not dry_run:
                if info is not None and rec.container_id != info.id:
                    await self._table.update(rec.id, container_id=info.id)
                if status != rec.status:
                    await self._table.update(rec.id, status=status)
            report[status].append(rec.id)
        self.orphans = [c.id for c in containers.values()]
        report["orphans"] = [c.name for c in containers.values()]
        if report["lost"]:
            log.warning("sandboxes lost (container gone): %s", ", ".join(report["lost"]))
        if report["orphans"]:
            log.warning(
                "containers with Corral labels but no record (run `corral gc`): %s", ", ".join(report["orphans"])
            )
        return report

    async def gc(self) -> list[str]:
        """Remove containers that carry this data dir's labels but have no sandbox record."""
        report = await self.reconcile()
        removed = []
        for container_id, name in zip(self.orphans, report["orphans"], strict=True):
            await self._engine.remove(container_id)
            removed.append(name)
        self.orphans = []
        return removed


def _name_taken(name: str) -> str:
    return f"a sandbox named {name!r} already exists; pick another name or use it"


def _check_cpus(cpus: float) -> float:
    top = float(os.cpu_count() or 1)
    if not 0.1 <= cpus <= top:
        raise InvalidRequest(f"cpus must be between 0.1 and {top:g} on this server (got {cpus:g})")
    return float(cpus)
