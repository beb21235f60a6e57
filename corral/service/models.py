"""Result types shared by the service and the MCP tools (they double as the tools' output schemas)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from corral.sandbox_backend.store import SandboxRecord
from corral.service.network import NetworkView
from corral.service.options import masked_env


class EgressCounts(BaseModel):
    allowed: int
    denied: int


class SandboxInfo(BaseModel):
    id: str = Field(description="Short id; every tool accepts it (or the name) as `sandbox`.")
    name: str | None = Field(description="Optional unique name given at creation.")
    status: Literal["creating", "running", "stopped", "lost", "error"] = Field(
        description="lost = the container vanished outside Corral; stopped ones restart on next use."
    )
    image: str
    runtime: str = Field(description="Container runtime: corral-runsc (gVisor) unless the operator forced runc.")
    isolation: Literal["gvisor", "runc-UNSAFE"] = Field(
        description="gvisor: code never touches the host kernel directly. runc-UNSAFE: operator override."
    )
    network: str = Field(description="none (no network at all), allowlist or internet.")
    allow: list[str] | None = Field(None, description="What an allowlist sandbox may reach (and the operator's list).")
    egress: EgressCounts | None = Field(None, description="Connections the egress proxy allowed and denied.")
    memory_mb: int
    cpus: float
    pids_limit: int
    disk_mb: int | None = Field(description="Size of /workspace; null = no limit (operator's choice, unsafe).")
    labels: dict[str, str]
    created_at: float
    last_used_at: float
    env: dict[str, str] = Field(default_factory=dict, description="Values of secret-looking keys hidden.")
    idle_stop_after: float | None = Field(default=None, description="Seconds idle before it is stopped (memory kept).")
    delete_after: float | None = None
    ephemeral: bool = False
    memory_saved: bool | None = Field(default=None, description="When stopped: whether its memory resumes with it.")
    forked_from: str | None = None
    volumes: dict[str, str] = Field(default_factory=dict, description="Mount path -> named volume.")
    lease: dict[str, str] | None = Field(default=None, description="stops_at / expires_at (UTC).")
    metrics: str | None = None

    @classmethod
    def from_record(
        cls,
        rec: SandboxRecord,
        network: NetworkView | None = None,
        lease: dict[str, str] | None = None,
        metrics: str | None = None,
    ) -> SandboxInfo:
        counts = None
        if network is not None and network.allowed is not None and network.denied is not None:
            counts = EgressCounts(allowed=network.allowed, denied=network.denied)
        return cls(
            id=rec.id,
            name=rec.name,
            status=rec.status,  # type: ignore[arg-type]
            image=rec.image,
            runtime=rec.runtime,
            isolation="runc-UNSAFE" if rec.runtime == "runc" else "gvisor",
            network=network.mode if network else rec.network,
            allow=list(network.allow) if network and network.allow is not None else None,
            egress=counts,
            memory_mb=rec.memory_bytes // (1024 * 1024),
            cpus=rec.cpus,
            pids_limit=rec.pids_limit,
            disk_mb=None if rec.disk_bytes is None else rec.disk_bytes // (1024 * 1024),
            labels=rec.labels,
            created_at=rec.created_at,
            last_used_at=rec.last_used_at,
            env=masked_env(rec.env),
            idle_stop_after=rec.idle_stop_after,
            delete_after=rec.delete_after,
            ephemeral=rec.ephemeral,
            memory_saved=(rec.checkpoint is not None) if rec.status == "stopped" else None,
            forked_from=rec.forked_from,
            volumes=rec.mounts,
            lease=lease,
            metrics=metrics,
        )


class ExecResult(BaseModel):
    exit_code: int | None = Field(description="Exit status; null if the process was killed by the timeout.")
    stdout: str
    stderr: str
    stdout_dropped_bytes: int = Field(0, description="Bytes cut from the middle of stdout (0 = complete).")
    stderr_dropped_bytes: int = Field(0, description="Bytes cut from the middle of stderr (0 = complete).")
    timed_out: bool
    duration_ms: float


class CodeError(BaseModel):
    ename: str
    evalue: str
    traceback: str


class CodeResult(BaseModel):
    stdout: str
    stderr: str
    stdout_dropped_bytes: int = 0
    stderr_dropped_bytes: int = 0
    value: str | None = Field(None, description="repr of the final expression (Python/JS), like a notebook.")
    error: CodeError | None = Field(None, description="The exception, with a clean traceback.")
    results: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Rich outputs: main?, text, html, markdown, svg, latex, json, chart, image (index of its "
        "image block).",
    )
    images: int = Field(0, description="How many images were returned as image content.")
    timed_out: bool = False
    interrupted: bool = False
    state_lost: bool = Field(
        False, description="True if the interpreter had to be restarted: variables and imports are gone."
    )
    notice: str | None = Field(default=None, description="Something you should know about this run's context.")
    language: str
    context: str
    duration_ms: float
