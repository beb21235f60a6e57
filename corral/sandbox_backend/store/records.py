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
    env: dict[str, str] = field(default_factory=dict)
    idle_stop_after: float | None = None  # seconds; None = never stopped for idleness
    delete_after: float | None = None  # seconds after creation; None = kept until deleted
    expires_at: float | None = None
    ephemeral: bool = False
    session: str | None = None  # the client connection an ephemeral sandbox belongs to
    checkpoint: str | None = None  # memory checkpoint the next start restores
    stopped_at: float | None = None
    forked_from: str | None = None

    def with_(self, **changes: Any) -> SandboxRecord:
        return replace(self, **changes)


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
    sandbox: str | None
    outcome: str
    detail: str | None
    duration_ms: float


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


@dataclass(frozen=True)
class SnapshotRecord:
    """A sandbox's file system saved as the local image `image` (tag), `image_id` its digest."""

    name: str
    image: str
    image_id: str
    sandbox_id: str
    base_image: str
    size_bytes: int
    created_at: float
