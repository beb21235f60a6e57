"""The one place container specs and labels are made: sandboxes and the helpers that serve them.

Every container Corral makes carries the namespace label, the owner (which data dir made it, so
two servers on two data dirs never reap each other's) and the instance (which server process), in
the spirit of testcontainers' reaper labels; `role` tells sandboxes from helpers.

What a sandbox can write, and where it ends up (nothing reaches the host's disk unbounded):
- /workspace: a volume of its own with the sandbox's disk limit (`disk_bytes`); kept across
  restarts and removed with the sandbox. ENOSPC inside when full.
- /tmp, /var/tmp, /dev/shm: memory (tmpfs), each a fraction of the memory limit, so filling one
  gives ENOSPC before it can run the sandbox out of memory; emptied by a restart.
- /opt/corral: the agent's code, installed root-owned before start; not writable by the sandbox.
- everything else: the image, read-only.
Helpers get a sized volume at their working directory, where the data they fetch lands.
Helpers are also recorded in SQLite (`create_helper` / `remove_helper`) so a server that died
mid-operation leaves nothing running that the next start cannot find.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Mapping

import anyio

from corral.agent.bundle import AGENT_MOUNT
from corral.config import LABEL_NAMESPACE, MIB, SANDBOX_USER, WORKDIR, Settings
from corral.errors import CorralError
from corral.sandbox_backend.engine import ContainerSpec, Engine, TmpfsMount, VolumeMount, VolumeSpec
from corral.sandbox_backend.store import HelperRecord, SandboxRecord
from corral.sandbox_backend.store.instances import HelperTable

log = logging.getLogger(__name__)

LABEL_MANAGED = f"{LABEL_NAMESPACE}.managed"
LABEL_SANDBOX = f"{LABEL_NAMESPACE}.sandbox"
LABEL_OWNER = f"{LABEL_NAMESPACE}.owner"
LABEL_INSTANCE = f"{LABEL_NAMESPACE}.instance"
LABEL_ROLE = f"{LABEL_NAMESPACE}.role"
LABEL_HELPER_FOR = f"{LABEL_NAMESPACE}.helper-for"

SANDBOX_ENV = {"HOME": WORKDIR, "LANG": "C.UTF-8", "MPLBACKEND": "Agg"}
SANDBOX_UID = 1000


def memory_mounts(memory_bytes: int) -> tuple[tuple[TmpfsMount, ...], int]:
    """The tmpfs mounts of a sandbox and its /dev/shm size: together well under its memory limit."""
    tmpfs = (TmpfsMount("/tmp", memory_bytes // 4), TmpfsMount("/var/tmp", memory_bytes // 16))
    return tmpfs, min(64 * MIB, memory_bytes // 16)


def home_label(settings: Settings) -> str:
    """Identifies which Corral data dir owns a container."""
    return hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:12]


class Containers:
    def __init__(self, settings: Settings, engine: Engine | None = None, helpers: HelperTable | None = None) -> None:
        self.settings = settings
        self.owner = home_label(settings)
        self._engine = engine
        self._helpers = helpers

    @property
    def owner_filter(self) -> str:
        return f"{LABEL_OWNER}={self.owner}"

    def _labels(self) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_OWNER: self.owner,
            LABEL_INSTANCE: self.settings.instance_id,
        }

    def network_labels(self, role: str) -> dict[str, str]:
        return {**self._labels(), LABEL_ROLE: role}

    def sandbox_labels(self, sandbox_id: str, role: str = "sandbox") -> dict[str, str]:
        return {**self._labels(), LABEL_SANDBOX: sandbox_id, LABEL_ROLE: role}

    def image_labels(self, sandbox_id: str, role: str) -> dict[str, str]:
        """Labels of an image Corral makes (a fork's file system, a snapshot): ours, and for whom."""
        return {**self._labels(), LABEL_SANDBOX: sandbox_id, LABEL_ROLE: role}

    def volume_name(self, sandbox_id: str, role: str = "workspace") -> str:
        # Docker's volume names are global: the owner keeps two data dirs' volumes apart.
        middle = sandbox_id if role == "workspace" else f"{role}-{sandbox_id}"
        return f"corral-{self.owner}-{middle}"

    def named_volume(self, tenant: str, name: str) -> str:
        """The engine's name of a tenant's named volume (two tenants may use one name)."""
        digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
        return self.volume_name(f"{digest}-{name}", "named")

    def agent_volume(self, sandbox_id: str) -> str:
        """The volume that holds the agent's code: root-owned, so only the host writes it. Named and
        labelled (not anonymous), so it is found and removed even if its container is removed by
        hand."""
        return self.volume_name(sandbox_id, "agent")

    def volume_spec(self, name: str, sandbox_id: str, role: str, disk_bytes: int | None) -> VolumeSpec:
        labels = {**self._labels(), LABEL_SANDBOX: sandbox_id, LABEL_ROLE: role}
        return VolumeSpec(name=name, labels=labels, size_bytes=disk_bytes, uid=SANDBOX_UID, gid=SANDBOX_UID)

    def sandbox_spec(self, rec: SandboxRecord, *, role: str = "sandbox") -> ContainerSpec:
        """The container of `rec`. `role` is "pool" for a warm sandbox not yet handed out (Docker
        cannot change a label later: the pool table, not the label, says whether it was).
        Without a volume (the operator turned disk limits off) /workspace lives in the writable
        root file system, as in a plain container: nothing bounds it."""
        tmpfs, shm = memory_mounts(rec.memory_bytes)
        # The image's own /opt/corral (files, and an owner that could be the sandbox user) never
        # gets into the agent's volume: only what the host installs is there.
        agent = VolumeMount(AGENT_MOUNT, self.agent_volume(rec.id), copy_image_files=False)
        volumes = (agent, *((VolumeMount(WORKDIR, rec.volume),) if rec.volume else ()))
        for path, name in sorted(rec.mounts.items()):  # named volumes (service/volumes.py)
            volumes = (*volumes, VolumeMount(path, self.named_volume(rec.tenant, name)))
        return ContainerSpec(
            name=f"corral-{rec.id}",
            image=rec.image,
            runtime=rec.runtime,
            labels=self.sandbox_labels(rec.id, role),
            memory_bytes=rec.memory_bytes,
            nano_cpus=int(rec.cpus * 1e9),
            pids_limit=rec.pids_limit,
            user=SANDBOX_USER,
            workdir=WORKDIR,
            # The container's environment reaches every exec, so every command, interpreter and
            # background process the agent starts; the user's never replaces what the agent needs.
            env={**rec.env, **SANDBOX_ENV},
            read_only_root=rec.volume is not None,
            volumes=volumes,
            tmpfs=tmpfs,
            shm_bytes=shm,
            init=True,
        )

    def probe_spec(self, runtime: str, image: str) -> ContainerSpec:
        """A tiny, short-lived container that only proves a runtime works (`corral doctor`)."""
        return ContainerSpec(
            name=f"corral-doctor-{secrets.token_hex(4)}",
            image=image,
            runtime=runtime,
            labels={**self._labels(), LABEL_ROLE: "doctor"},
            memory_bytes=128 * 1024 * 1024,
            nano_cpus=int(0.5 * 1e9),
            pids_limit=256,
            user=SANDBOX_USER,
            workdir="/tmp",
            command=("sleep", "60"),
            hostname="corral-doctor",
        )

    def helper_spec(
        self,
        rec: SandboxRecord,
        *,
        role: str,
        runtime: str,
        network: str | None,
        env: Mapping[str, str],
        workdir: str = "/tmp",
    ) -> ContainerSpec:
        """A short-lived container of the sandbox's image and limits that works for it (e.g. a git
        fetch with network). It does not carry the sandbox label: reconcile maps that label to the
        sandbox's own container."""
        labels = {**self._labels(), LABEL_ROLE: role, LABEL_HELPER_FOR: rec.id}
        return ContainerSpec(
            name=f"corral-{role}-{rec.id}-{secrets.token_hex(3)}",
            image=rec.image,
            runtime=runtime,
            labels=labels,
            memory_bytes=rec.memory_bytes,
            nano_cpus=int(rec.cpus * 1e9),
            pids_limit=rec.pids_limit,
            user=SANDBOX_USER,
            workdir=workdir,
            env=dict(env),
            network=network,
            hostname=f"corral-{role}",
        )

    # -- helper containers: made, recorded, removed ------------------------------------------------

    async def create_helper(self, spec: ContainerSpec, rec: SandboxRecord) -> str:
        """Create (not start) the helper `spec` describes, with a volume of the sandbox's disk size
        at its working directory (where what it fetches lands), and record it. Returns its id."""
        engine = self._require_engine()
        role = spec.labels.get(LABEL_ROLE, "helper")
        volume: str | None = None
        if not self.settings.unsafe_no_disk_limit:
            volume = self.volume_name(f"{rec.id}-{secrets.token_hex(3)}", role)
            disk = rec.disk_bytes or self.settings.limits.disk_bytes
            await engine.create_volume(self.volume_spec(volume, rec.id, role, disk))
            spec = dataclasses.replace(spec, volumes=(*spec.volumes, VolumeMount(spec.workdir, volume)))
        try:
            container_id = await engine.create_container(spec)
        except BaseException:
            if volume is not None:
                with anyio.CancelScope(shield=True):
                    await self._quietly(engine.remove_volume(volume))
            raise
        if self._helpers is not None:
            record = HelperRecord(container_id, role, rec.id, self.settings.instance_id, volume, time.time())
            with anyio.CancelScope(shield=True):
                await self._helpers.insert(record)
        return container_id

    async def remove_helper(self, container_id: str) -> None:
        """Remove a helper made by `create_helper`, its volume and its record."""
        engine = self._require_engine()
        volume = None
        if self._helpers is not None:
            volume = next((h.volume for h in await self._helpers.list() if h.container_id == container_id), None)
        await engine.remove(container_id)
        if volume:
            await engine.remove_volume(volume)
        if self._helpers is not None:
            await self._helpers.delete(container_id)

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("this Containers was made without an engine")
        return self._engine

    @staticmethod
    async def _quietly(operation: Awaitable[None]) -> None:
        try:
            await operation
        except CorralError as exc:
            log.warning("cleanup failed: %s", exc)
