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

    def with_(self, **changes: Any) -> SandboxRecord:
        return replace(self, **changes)


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
    instance_id: str | None = None  # the server listening for it

    def with_owner(self, instance_id: str) -> PortRecord:
        return replace(self, instance_id=instance_id)


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
