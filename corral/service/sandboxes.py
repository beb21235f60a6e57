"""SandboxService: owns the lifecycle and policy of sandboxes; the tools call only this."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup

from corral.config import (
    LABEL_NAMESPACE,
    RUNTIME_RUNC,
    SANDBOX_USER,
    WORKDIR,
    Settings,
)
from corral.errors import (
    BackendError,
    BackendUnavailable,
    CorralError,
    ImageNotFound,
    InvalidRequest,
    QuotaExceeded,
    RuntimeMissing,
    SandboxLost,
    SandboxNotFound,
)
from corral.sandbox_backend.docker_engine import ContainerSpec, DockerEngine, tar_directory
from corral.sandbox_backend.store import AuditEntry, SandboxRecord, Store
from corral.service.channels import ChannelPool
from corral.service.ports import PortForwarder
from corral.service.validation import check_image, check_labels, check_name

log = logging.getLogger(__name__)

OnOutput = Callable[[str, str], Awaitable[None]]  # (stream, text so far chunk)


def home_label(settings: Settings) -> str:
    """Identifies which Corral data dir owns a container: two servers never reap each other's."""
    return hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:12]


class SandboxService:
    def __init__(self, settings: Settings, engine: DockerEngine, store: Store, tg: TaskGroup) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.channels = ChannelPool(engine, tg)
        self.task_group = tg  # long-lived tasks of the service (port listeners)
        self.ports = PortForwarder(self)
        self._owner = home_label(settings)
        self._locks: dict[str, anyio.Lock] = {}
        self.orphans: list[str] = []

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[SandboxService]:
        store = await Store.open(settings.db_path)
        engine = DockerEngine(settings.docker_url)
        try:
            async with anyio.create_task_group() as tg:
                service = cls(settings, engine, store, tg)
                try:
                    await service.reconcile()
                except BackendUnavailable as exc:
                    log.warning("Docker is not reachable; sandboxes will be checked on first use: %s", exc)
                try:
                    await service.ports.restore()
                except Exception:
                    log.exception("could not re-open the exposed ports")
                tg.start_soon(engine.watch_container_events, service.owner_filter, service._on_container_event)
                try:
                    yield service
                finally:
                    await service.ports.close_all()
                    await service.channels.close_all()
                    tg.cancel_scope.cancel()
        finally:
            await engine.close()
            await store.close()

    # -- labels and lookup ----------------------------------------------------------------------

    def labels_for(self, sandbox_id: str) -> dict[str, str]:
        return {
            f"{LABEL_NAMESPACE}.managed": "true",
            f"{LABEL_NAMESPACE}.sandbox": sandbox_id,
            f"{LABEL_NAMESPACE}.owner": self._owner,
            f"{LABEL_NAMESPACE}.instance": self.settings.instance_id,
        }

    @property
    def owner_filter(self) -> str:
        return f"{LABEL_NAMESPACE}.owner={self._owner}"

    def _lock(self, sandbox_id: str) -> anyio.Lock:
        return self._locks.setdefault(sandbox_id, anyio.Lock())

    async def resolve(self, ref: str) -> SandboxRecord:
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidRequest("`sandbox` must be a sandbox id (sb-xxxxxxxx) or name")
        rec = await self.store.get_sandbox(ref.strip())
        if rec is None:
            known = await self.store.list_sandboxes()
            listing = ", ".join(f"{r.id} ({r.name})" if r.name else r.id for r in known[:20])
            listing = listing or "none yet; create one with create_sandbox"
            raise SandboxNotFound(f"no sandbox with id or name {ref!r}. Known sandboxes: {listing}")
        return rec

    # -- lifecycle ------------------------------------------------------------------------------

    async def create(
        self,
        *,
        name: str | None = None,
        image: str | None = None,
        memory_mb: int | None = None,
        cpus: float | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> SandboxRecord:
        settings = self.settings
        if name is not None:
            check_name(name)
            if await self.store.get_sandbox(name) is not None:
                raise InvalidRequest(f"a sandbox named {name!r} already exists; pick another name or use it")
        image = check_image(image or settings.image)
        limits = settings.limits
        memory = limits.memory_bytes if memory_mb is None else self._check_memory(memory_mb)
        cpu = limits.cpus if cpus is None else self._check_cpus(cpus)
        user_labels = check_labels(labels or {})
        if await self.store.count_sandboxes() >= settings.max_sandboxes:
            raise QuotaExceeded(
                f"this server allows at most {settings.max_sandboxes} sandboxes; delete one first "
                "(list_sandboxes shows them)"
            )
        runtime = RUNTIME_RUNC if settings.unsafe_runc else settings.runtime
        await self._check_runtime(runtime)
        await self._ensure_image(image)

        sandbox_id = f"sb-{secrets.token_hex(4)}"
        now = time.time()
        rec = SandboxRecord(
            id=sandbox_id,
            name=name,
            container_id=None,
            image=image,
            runtime=runtime,
            network="none",
            memory_bytes=memory,
            cpus=cpu,
            pids_limit=limits.pids,
            status="creating",
            created_at=now,
            last_used_at=now,
            labels=user_labels,
        )
        await self.store.insert_sandbox(rec)
        container_id: str | None = None
        try:
            container_id = await self.engine.create_container(
                ContainerSpec(
                    name=f"corral-{sandbox_id}",
                    image=image,
                    runtime=runtime,
                    labels=self.labels_for(sandbox_id),
                    memory_bytes=memory,
                    nano_cpus=int(cpu * 1e9),
                    pids_limit=limits.pids,
                    user=SANDBOX_USER,
                    workdir=WORKDIR,
                    env={"HOME": WORKDIR, "LANG": "C.UTF-8", "MPLBACKEND": "Agg"},
                )
            )
            # Images other than ours have no writable /workspace for uid 1000: add one before start.
            await self.engine.put_archive(container_id, "/", tar_directory(WORKDIR, 1000, 1000))
            await self.engine.start(container_id)
            rec = rec.with_(container_id=container_id, status="running")
            await self.store.update_sandbox(sandbox_id, container_id=container_id, status="running")
            await self.channels.get(rec)
        except BaseException:
            with anyio.CancelScope(shield=True):
                if container_id is not None:
                    await self._quiet_remove(container_id)
                await self.store.delete_sandbox(sandbox_id)
            raise
        return rec

    def _check_memory(self, memory_mb: int) -> int:
        top = max(self.settings.limits.memory_bytes // (1024 * 1024), 128) * 8
        if not 64 <= memory_mb <= top:
            raise InvalidRequest(f"memory_mb must be between 64 and {top} (got {memory_mb})")
        return memory_mb * 1024 * 1024

    def _check_cpus(self, cpus: float) -> float:
        import os

        top = float(os.cpu_count() or 1)
        if not 0.1 <= cpus <= top:
            raise InvalidRequest(f"cpus must be between 0.1 and {top:g} on this server (got {cpus:g})")
        return float(cpus)

    async def _check_runtime(self, runtime: str) -> None:
        if runtime == RUNTIME_RUNC:
            return
        if runtime not in await self.engine.runtimes():
            raise RuntimeMissing(
                f"the gVisor runtime '{runtime}' is not registered with Docker, so no sandbox can be "
                "created safely. Fix: run scripts/setup-host.sh as root (installs runsc and registers it in "
                "/etc/docker/daemon.json), or start the server with --unsafe-runc-no-gvisor to run without "
                "gVisor (not recommended)."
            )

    async def _ensure_image(self, image: str) -> None:
        if await self.engine.image_exists(image):
            return
        try:
            await self.engine.pull_image(image)
        except BackendError as exc:
            hint = (
                "build it with `corral image build`"
                if image == self.settings.image
                else f"pull it first, or use the default image {self.settings.image!r}"
            )
            raise ImageNotFound(f"image {image!r} is not present and could not be pulled; {hint}") from exc

    async def _quiet_remove(self, container_id: str) -> None:
        try:
            await self.engine.remove(container_id)
        except CorralError as exc:
            log.warning("could not remove container %s: %s", container_id[:12], exc)

    async def delete(self, ref: str) -> SandboxRecord:
        rec = await self.resolve(ref)
        async with self._lock(rec.id):
            await self.channels.drop(rec.id)
            if rec.container_id:
                await self.engine.remove(rec.container_id)
            await self.ports.close_sandbox(rec.id)
            await self.store.delete_processes(rec.id)
            await self.store.delete_sandbox(rec.id)
            await self.store.forget_contexts(rec.id)
        self._locks.pop(rec.id, None)
        return rec

    async def list_all(self) -> list[SandboxRecord]:
        return await self.store.list_sandboxes()

    async def get(self, ref: str) -> SandboxRecord:
        rec = await self.resolve(ref)
        return await self._refresh(rec)

    async def _refresh(self, rec: SandboxRecord) -> SandboxRecord:
        if rec.container_id is None or rec.status == "creating":
            return rec
        info = await self.engine.inspect(rec.container_id)
        status = "lost" if info is None else ("running" if info.running else "stopped")
        if status != rec.status:
            await self.store.update_sandbox(rec.id, status=status)
            rec = rec.with_(status=status)
        return rec

    async def _on_container_event(self, action: str, labels: Mapping[str, str]) -> None:
        """Docker told us a container changed: a stopped or restarted sandbox's agent channel is
        dead (its exec stream does not always close), so drop it and record the new status."""
        sandbox_id = labels.get(f"{LABEL_NAMESPACE}.sandbox")
        if not sandbox_id or action not in ("die", "stop", "kill", "destroy", "start"):
            return
        if action != "start":
            await self.channels.drop(sandbox_id)
        rec = await self.store.get_sandbox(sandbox_id)
        if rec is None or rec.status == "creating":
            return
        status = {"destroy": "lost", "start": "running"}.get(action, "stopped")
        if status != rec.status:
            await self.store.update_sandbox(sandbox_id, status=status)

    async def use(self, ref: str) -> SandboxRecord:
        """Resolve and make ready: a stopped sandbox is started again; a lost one is an error.

        The fast path (a running sandbox with a live channel) costs one SQLite read: Docker's event
        stream keeps the status current, so no per-call inspect is needed.
        """
        rec = await self.resolve(ref)
        if rec.status == "running" and self.channels.is_open(rec.id):
            return await self._touch(rec)
        async with self._lock(rec.id):
            rec = await self._refresh(rec)
            if rec.status == "lost":
                raise SandboxLost(
                    f"sandbox {rec.id}{f' ({rec.name})' if rec.name else ''} was lost: its container was "
                    "removed outside Corral, and its files are gone. delete_sandbox it and create a new one."
                )
            if rec.status == "creating":
                raise InvalidRequest(f"sandbox {rec.id} is still being created; try again in a moment")
            if rec.status == "stopped" and rec.container_id:
                await self.channels.drop(rec.id)
                await self.engine.start(rec.container_id)
                await self.store.update_sandbox(rec.id, status="running")
                rec = rec.with_(status="running")
            return await self._touch(rec)

    async def _touch(self, rec: SandboxRecord) -> SandboxRecord:
        now = time.time()
        # A commit per call would cost more than the call itself; minute precision is plenty.
        if now - rec.last_used_at > 60:
            await self.store.update_sandbox(rec.id, last_used_at=now)
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
        return await self.channels.request(rec, op, params, timeout=timeout, on_event=on_event)

    # -- reconciliation -----------------------------------------------------------------------------

    async def reconcile(self) -> dict[str, list[str]]:
        """Bring SQLite in line with Docker after a (re)start. Returns what changed, for the log."""
        containers = {
            c.labels.get(f"{LABEL_NAMESPACE}.sandbox", ""): c
            for c in await self.engine.list_labeled(self.owner_filter)
        }
        report: dict[str, list[str]] = {"running": [], "stopped": [], "lost": [], "orphans": []}
        for rec in await self.store.list_sandboxes():
            info = containers.pop(rec.id, None)
            if rec.status == "creating" and info is None:
                # A create that died half-way: nothing to keep.
                await self.store.delete_sandbox(rec.id)
                continue
            status = "lost" if info is None else ("running" if info.running else "stopped")
            if info is not None and rec.container_id != info.id:
                await self.store.update_sandbox(rec.id, container_id=info.id)
            if status != rec.status:
                await self.store.update_sandbox(rec.id, status=status)
            report[status].append(rec.id)
        self.orphans = [c.id for c in containers.values()]
        report["orphans"] = [c.name for c in containers.values()]
        if report["lost"]:
            log.warning("sandboxes lost (container gone): %s", ", ".join(report["lost"]))
        if report["orphans"]:
            log.warning(
                "containers with Corral labels but no record (run `corral gc`): %s",
                ", ".join(report["orphans"]),
            )
        return report

    async def gc(self) -> list[str]:
        """Remove containers that carry this data dir's labels but have no sandbox record."""
        report = await self.reconcile()
        removed = []
        for container_id, name in zip(self.orphans, report["orphans"], strict=True):
            await self.engine.remove(container_id)
            removed.append(name)
        self.orphans = []
        return removed

    # -- audit ------------------------------------------------------------------------------------

    async def audit(
        self, tool: str, sandbox: str | None, outcome: str, detail: str | None, duration_ms: float
    ) -> None:
        try:
            await self.store.record_audit(
                AuditEntry(time.time(), tool, sandbox, outcome, (detail or "")[:500] or None, duration_ms)
            )
        except Exception:  # the audit must never turn a good call into a failure
            log.exception("could not write the audit record for %s", tool)
