"""The one way a sandbox's container is made: for a cold create, a warm pool member, a fork and a
sandbox made from a snapshot alike.

A sandbox is a container plus two volumes: the agent's code (root-owned, installed by the host
before start: the root file system is read-only) and /workspace with the disk limit (a copy of
another's for forks and snapshots; `docker commit` leaves volumes out). A networked sandbox is put
on the fenced network with its proxy settings and trusted CAs. `make` creates all of that without
starting it; whatever fails half-way is removed again, so the caller only has its record to drop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

import anyio

from corral.config import RUNTIME_RUNC, WORKDIR
from corral.errors import CorralError, RuntimeMissing
from corral.sandbox_backend.archive import tar_directory
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord
from corral.service.agents import AgentPool
from corral.service.containers import SANDBOX_UID, Containers
from corral.service.network import NetworkService, Policy

log = logging.getLogger(__name__)

ContainerMade = Callable[[str], Awaitable[None]]  # gets the new container's id (to record it at once)


class Builder:
    def __init__(
        self, engine: Engine, agents: AgentPool, containers: Containers, network: NetworkService | None
    ) -> None:
        self._engine = engine
        self._agents = agents
        self._containers = containers
        self._network = network

    _runtimes: set[str] | None = None

    async def check_runtime(self, runtime: str) -> None:
        if runtime == RUNTIME_RUNC:
            return
        if self._runtimes is None or runtime not in self._runtimes:
            self._runtimes = await self._engine.runtimes()
        if runtime not in self._runtimes:
            raise RuntimeMissing(
                f"the gVisor runtime '{runtime}' is not registered with Docker, so no sandbox can be "
                "created safely. Fix: run scripts/setup-host.sh as root (installs runsc and registers it in "
                "/etc/docker/daemon.json), or start the server with --unsafe-runc-no-gvisor to run without "
                "gVisor (not recommended)."
            )

    async def policy_of(self, rec: SandboxRecord) -> Policy:
        """The network policy `rec` runs under (a fork gets the same)."""
        if self._network is None or rec.network == "none":
            return Policy("none")
        return await self._network.policy_of(rec)

    def volumes(self, rec: SandboxRecord) -> list[str]:
        """The sandbox's volumes: the agent's code, and /workspace unless disk limits are off."""
        return [self._containers.agent_volume(rec.id), *([rec.volume] if rec.volume else [])]

    async def make(
        self,
        rec: SandboxRecord,
        policy: Policy,
        *,
        role: str = "sandbox",
        copy_of: str | None = None,
        on_container: ContainerMade | None = None,
    ) -> str:
        """Create the volumes (/workspace a copy of volume `copy_of` when given) and the container
        of `rec`, with the agent installed and the network attached; not started. Returns the
        container's id. On failure nothing of it is left."""
        container_id: str | None = None
        made: list[str] = []
        try:
            agent_volume = self._containers.agent_volume(rec.id)
            await self._engine.create_volume(self._containers.volume_spec(agent_volume, rec.id, "agent", None))
            made.append(agent_volume)
            if rec.volume is not None:
                spec = self._containers.volume_spec(rec.volume, rec.id, "workspace", rec.disk_bytes)
                if copy_of is not None:
                    spec = dataclasses.replace(spec, copy_of=copy_of)
                await self._engine.create_volume(spec)
                made.append(rec.volume)
            container = self._containers.sandbox_spec(rec, role=role)
            if self._network is not None:
                container = await self._network.attach(rec, container, policy)
            container_id = await self._engine.create_container(container)
            if on_container is not None:
                await on_container(container_id)
            if rec.volume is None and copy_of is None:
                # A writable root file system: images other than ours have no home for uid 1000.
                await self._engine.put_archive(container_id, "/", tar_directory(WORKDIR, SANDBOX_UID, SANDBOX_UID))
            await self._agents.install(container_id, agent_volume)
            if self._network is not None:
                await self._network.provision(container_id, rec)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.discard(rec, container_id, made)
            raise
        return container_id

    async def start(self, container_id: str, *, checkpoint: str | None = None) -> None:
        await self._engine.start(container_id, checkpoint=checkpoint)

    async def discard(self, rec: SandboxRecord, container_id: str | None, volumes: list[str] | None = None) -> None:
        """Remove what `make` made for `rec` (its container, volumes and network policy), quietly."""
        await self._agents.drop(rec.id)
        if container_id is not None:
            await self._quietly(self._engine.remove(container_id))
        for volume in self.volumes(rec) if volumes is None else volumes:
            await self._quietly(self._engine.remove_volume(volume))
        if self._network is not None:
            await self._quietly(self._network.forget_sandbox(rec.id))

    @staticmethod
    async def _quietly(work: Awaitable[None]) -> None:
        try:
            await work
        except CorralError as exc:
            log.warning("cleanup failed: %s", exc)
