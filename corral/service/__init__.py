"""The sandbox service: lifecycle and policy between the MCP tools and the backend.

`open_services(settings)` is the composition root: it opens the store and the engine, builds every
feature with only the dependencies it needs, wires the delete hooks, and yields `Services`, the
one API the tools call (`services.files.read_file(...)`, `services.sandboxes.create(...)`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from corral.config import Settings
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import Store
from corral.service.agents import AgentPool
from corral.service.audit import Auditor
from corral.service.clock import Clock
from corral.service.containers import Containers
from corral.service.execution import Execution
from corral.service.files import Files
from corral.service.forks import Forks
from corral.service.git import Git
from corral.service.metrics import Metrics
from corral.service.pool import WarmPool
from corral.service.ports import Ports
from corral.service.processes import Processes
from corral.service.reaper import Reaper
from corral.service.sandboxes import SandboxService, new_sandbox_id
from corral.service.snapshots import Snapshots
from corral.service.supervisor import supervise

log = logging.getLogger(__name__)

__all__ = ["SandboxService", "Services", "open_services"]


@dataclass(frozen=True)
class Services:
    settings: Settings
    sandboxes: SandboxService
    execution: Execution
    files: Files
    processes: Processes
    ports: Ports
    git: Git
    audit: Auditor
    forks: Forks
    metrics: Metrics
    snapshots: Snapshots


def _default_engine(settings: Settings) -> Engine:
    from corral.sandbox_backend.docker import DockerEngine

    return DockerEngine(settings.docker_url)


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    engine: Engine | None = None,
    serve: bool = True,
    read_only: bool = False,
    clock: Clock | None = None,
) -> AsyncIterator[Services]:
    """Open everything a server needs. With `serve=False` (CLI commands next to a live server) no
    background task starts and nothing is restored: the command only reads or does what it says;
    `read_only` opens the database so that it cannot write at all. `clock` drives lifetimes
    (tests pass a ManualClock)."""
    store = await Store.open(settings.db_path, read_only=read_only)
    engine = engine or _default_engine(settings)
    try:
        async with anyio.create_task_group() as tg:
            containers = Containers(settings)
            agents = AgentPool(engine, tg)
            sandboxes = SandboxService(
                settings, engine, store.sandboxes, agents, containers, clock=clock, pool_table=store.pool
            )
            execution = Execution(sandboxes, store.contexts, settings.exec)
            processes = Processes(sandboxes, store.processes, settings.exec)
            services = Services(
                settings=settings,
                sandboxes=sandboxes,
                execution=execution,
                files=Files(sandboxes, settings.exec, settings.host_dirs),
                processes=processes,
                ports=Ports(sandboxes, engine, store.ports, tg, settings.port_host),
                git=Git(sandboxes, engine, containers, settings, store.git_remotes),
                audit=Auditor(store.audit),
                forks=Forks(sandboxes, engine, containers),
                metrics=Metrics(sandboxes, engine),
                snapshots=Snapshots(sandboxes, engine, containers, store.snapshots, settings.max_snapshots),
            )
            sandboxes.on_delete(services.ports.close_sandbox)
            sandboxes.on_delete(services.processes.forget_sandbox)
            sandboxes.on_delete(services.execution.forget_sandbox)
            sandboxes.on_delete(services.git.forget_sandbox)
            services.forks.on_fork(processes.copy_sandbox)
            services.forks.on_fork(execution.copy_sandbox)
            pool = None
            if serve:
                await sandboxes.serve(tg)
                try:
                    await services.ports.restore(await sandboxes.list_all())
                except Exception:
                    log.exception("could not re-open the exposed ports")
                supervise(tg, "lifetimes", Reaper(sandboxes, engine, agents, containers.owner).run)
                if settings.pool_size > 0 and not read_only:
                    pool = WarmPool(settings, engine, store.pool, agents, containers, sandboxes.clock, new_sandbox_id)
                    sandboxes.pool = pool
                    supervise(tg, "warm pool", pool.run, restart=False)
            try:
                yield services
            finally:
                with anyio.CancelScope(shield=True):
                    if pool is not None:
                        await pool.drain()
                    if serve:
                        await sandboxes.end_sessions_of_this_server()
                    await services.ports.close_all()
                    await agents.close_all()
                tg.cancel_scope.cancel()
    finally:
        await engine.close()
        await store.close()
