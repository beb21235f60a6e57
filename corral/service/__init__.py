"""The sandbox service: lifecycle and policy between the MCP tools and the backend.

`open_services(settings)` is the composition root: it opens the store and the engine, builds every
feature with only the dependencies it needs, wires the delete hooks, and yields `Services`, the
one API the tools call (`services.files.read_file(...)`, `services.sandboxes.create(...)`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from corral.config import Settings
from corral.errors import BackendUnavailable, CorralError
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import Store
from corral.service import tenancy
from corral.service.agents import AgentPool
from corral.service.audit import Auditor
from corral.service.clock import Clock
from corral.service.containers import Containers
from corral.service.execution import Execution
from corral.service.files import Files
from corral.service.forks import Forks
from corral.service.git import Git
from corral.service.instances import Instances
from corral.service.inventory import Inventory
from corral.service.metrics import Metrics
from corral.service.network import NetworkService
from corral.service.pool import WarmPool
from corral.service.ports import Ports
from corral.service.processes import Processes
from corral.service.reaper import Reaper
from corral.service.reconcile import Reconciler
from corral.service.sandboxes import SandboxService, new_sandbox_id
from corral.service.snapshots import Snapshots
from corral.service.supervisor import supervise
from corral.service.tenants import Tenants
from corral.service.volumes import Volumes

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
    instances: Instances
    reconciler: Reconciler
    tenants: Tenants
    inventory: Inventory
    network: NetworkService
    forks: Forks
    metrics: Metrics
    snapshots: Snapshots
    volumes: Volumes


def _default_engine(settings: Settings) -> Engine:
    from corral.sandbox_backend.docker import DockerEngine

    return DockerEngine(settings.docker_url, disk_dir=settings.home / "disks")


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
    background task starts and nothing is restored or reaped: the command only reads or does what
    it says; `read_only` opens the database so that it cannot write at all.

    Each opening is one server instance with an id of its own (the containers it makes carry it);
    in serve mode it registers, reconciles (rolling back creates and reaping helpers that dead
    instances left), takes over the exposed ports nobody serves, and runs supervised background
    tasks: engine events, a heartbeat, the lifetimes reaper and the warm pool. None of them can take
    the server down. `clock` drives lifetimes (tests pass a ManualClock)."""
    settings = settings.with_(instance_id=secrets.token_hex(4))
    store = await Store.open(settings.db_path, read_only=read_only)
    engine = engine or _default_engine(settings)
    instances = Instances(store.instances, settings.instance_id)
    try:
        async with anyio.create_task_group() as tg:
            containers = Containers(settings, engine, store.helpers)
            agents = AgentPool(engine, tg, containers.agent_volume)

            async def sandbox_ids() -> set[str]:
                return {rec.id for rec in await store.sandboxes.list()}

            network = NetworkService(
                settings, engine, containers, store.egress, sandbox_ids=sandbox_ids, serve=serve and not read_only
            )
            sandboxes = SandboxService(settings, engine, store.sandboxes, agents, containers, network, clock=clock)
            execution = Execution(sandboxes, store.contexts, settings.exec)
            processes = Processes(sandboxes, store.processes, settings.exec)
            forks = Forks(sandboxes, engine, containers)
            services = Services(
                settings=settings,
                sandboxes=sandboxes,
                execution=execution,
                files=Files(sandboxes, settings.exec, settings.host_dirs),
                processes=processes,
                ports=Ports(sandboxes, engine, store.ports, tg, settings.port_host, instances),
                git=Git(sandboxes, engine, containers, settings, store.git_remotes, network),
                audit=Auditor(store.audit, settings.audit_days),
                instances=instances,
                reconciler=Reconciler(
                    engine, store.sandboxes, store.helpers, instances, containers,
                    pool=store.pool, snapshots=store.snapshots, volumes=store.volumes,
                ),
                tenants=Tenants(store.tokens, settings),
                inventory=Inventory(engine, store.sandboxes, containers),
                network=network,
                forks=forks,
                metrics=Metrics(sandboxes, engine),
                snapshots=Snapshots(sandboxes, engine, containers, store.snapshots, settings.max_snapshots, forks),
                volumes=Volumes(settings, engine, containers, store.volumes, store.sandboxes),
            )
            sandboxes.on_delete(services.ports.close_sandbox)
            sandboxes.on_delete(services.processes.forget_sandbox)
            sandboxes.on_delete(services.execution.forget_sandbox)
            sandboxes.on_delete(services.git.forget_sandbox)
            sandboxes.on_delete(network.forget_sandbox)
            sandboxes.on_gone(services.ports.stop_listening)
            forks.on_fork(processes.copy_sandbox)
            forks.on_fork(execution.copy_sandbox)
            pool = None
            if serve:
                # The server's own work (reconcile, events, restored ports) acts for every tenant.
                with tenancy.acting_as(tenancy.OPERATOR):
                    await instances.register()
                    try:
                        await services.reconciler.apply(await services.reconciler.plan(), remove_orphans=False)
                    except BackendUnavailable as exc:
                        log.warning("Docker is not reachable; sandboxes will be checked on first use: %s", exc)
                    except Exception:
                        log.exception("could not reconcile with the engine")
                    try:
                        await services.ports.restore()
                    except Exception:
                        log.exception("could not re-open the exposed ports")
                    try:
                        await services.audit.prune()
                    except CorralError as exc:
                        log.warning("could not prune old audit records: %s", exc)
                    sandboxes.watch_events(tg)
                    await network.start(tg)
                    instances.on_heartbeat(services.ports.restore)
                    supervise(tg, "heartbeat", instances.run)
                    supervise(tg, "lifetimes", Reaper(sandboxes, engine, agents, containers.owner).run)
                    if settings.pool_size > 0 and not read_only:
                        pool = WarmPool(
                            settings,
                            sandboxes.builder,
                            store.pool,
                            agents,
                            containers,
                            sandboxes.clock,
                            new_sandbox_id,
                            instances,
                        )
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
                    await instances.unregister()
                    await network.close()
                tg.cancel_scope.cancel()
    finally:
        await engine.close()
        await store.close()
