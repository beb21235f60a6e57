"""The rows Corral keeps, as immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class SandboxRecord:
    id: str
    name: str | None
    container_id: str | None
    image: str
    runtime: str
    network: str
    memory_bytes: int
    cpus: float
    pids_limit: int
    status: str  # creating | running | stopped | lost | error
    created_at: float
    last_used_at: float
    labels: dict[str, str] = field(default_factory=dict)
    disk_bytes: int | None = None  # the size of its /workspace; None: no limit (operator's choice)
    volume: str | None = None  # the volume that holds /workspace
    created_by: str | None = None  # the server instance that created it
    tenant: str = "local"  # who owns it: a token's name, an OAuth subject, "local" (stdio)
    env: dict[str, str] = field(default_factory=dict)
    idle_stop_after: float | None = None  # seconds; None = never stopped for idleness
    delete_after: float | None = None  # seconds after creation; None = kept until deleted
    expires_at: float | None = None
    ephemeral: bool = False
    session: str | None = None  # the client connection an ephemeral sandbox belongs to
    checkpoint: str | None = None  # memory checkpoint the next start restores
    stopped_at: float | None = None
    forked_from: str | None = None
    mounts: dict[str, str] = field(default_factory=dict)  # mount path -> named volume (the tenant's)

    def with_(self, **changes: Any) -> SandboxRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class SandboxUsage:
    """What a set of sandboxes holds: how many, and their memory and disk limits added up."""

    count: int = 0
    memory_bytes: int = 0
    disk_bytes: int = 0


@dataclass(frozen=True)
class PoolRecord:
    """A warm sandbox of the default spec; `sandbox_id` is the id it gets when handed over."""

    sandbox_id: str
    container_id: str | None
    spec: str
    instance_id: str
    ready: bool
    created_at: float
    host: str = ""
    pid: int = 0
    pid_start: int | None = None


@dataclass(frozen=True)
class AuditEntry:
    ts: float
    tool: str
    sandbox: str | None  # the resolved id, never the name as typed
    outcome: str  # ok | error | crash
    detail: str | None
    duration_ms: float
    tenant: str | None = None
    summary: str | None = None  # what was asked, without secrets or file contents


@dataclass(frozen=True)
class TokenRecord:
    """An HTTP tenant's bearer token: only its SHA-256 is stored."""

    name: str
    hash: str
    created_at: float
    last_used_at: float | None = None
    max_sandboxes: int | None = None
    max_memory_mb: int | None = None
    max_disk_mb: int | None = None
    max_executions: int | None = None


@dataclass(frozen=True)
class ProcessRecord:
    """A background process: `id` (p-xxxxxx) is what the model sees, `agent_id` the agent's."""

    id: str
    sandbox_id: str
    agent_id: str
    pid: int | None
    command: str
    cwd: str | None
    started_at: float
    cursor: int = 0  # where process_output continues when no `since` is given
    running: bool = True
    exit_code: int | None = None
    ended_at: float | None = None

    def with_(self, **changes: Any) -> ProcessRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class PortRecord:
    """A sandbox port forwarded from host:host_port."""

    sandbox_id: str
    port: int
    host: str
    host_port: int
    created_at: float
    instance_id: str | None = None  # the server listening for it

    def with_owner(self, instance_id: str) -> PortRecord:
        return replace(self, instance_id=instance_id)


@dataclass(frozen=True)
class SnapshotRecord:
    """A sandbox's file system saved as the local image `image` (tag), `image_id` its digest;
    `volume` holds a copy of its /workspace (Docker's commit leaves volumes out)."""

    name: str
    image: str
    image_id: str
    sandbox_id: str
    base_image: str
    size_bytes: int
    created_at: float
    tenant: str = "local"
    volume: str | None = None
    disk_bytes: int | None = None


@dataclass(frozen=True)
class InstanceRecord:
    """A server process running on this data dir."""

    id: str
    host: str
    pid: int
    pid_start: int | None
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True)
class HelperRecord:
    """A short-lived helper container working for a sandbox (e.g. a git fetch with network)."""

    container_id: str
    role: str
    sandbox_id: str | None
    instance_id: str
    volume: str | None
    created_at: float


@dataclass(frozen=True)
class VolumeRecord:
    """A named volume of a tenant; `volume` is the engine's name of it."""

    name: str
    volume: str
    size_bytes: int | None
    created_at: float
    tenant: str = "local"
    created_by: str | None = None
