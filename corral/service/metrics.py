"""sandbox_metrics: what a sandbox uses now, from the engine (CPU, memory, pids, network) and from
its agent (processes, /workspace disk)."""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel, Field

from corral.config import MIB
from corral.errors import CorralError
from corral.sandbox_backend.engine import ContainerStats, Engine
from corral.service.sandboxes import SandboxService


class SandboxMetrics(BaseModel):
    sandbox: str
    status: str
    cpu_percent: float | None = Field(default=None, description="Of one core, over the last second.")
    memory_mb: float | None = None
    memory_limit_mb: float | None = None
    disk_mb: float | None = Field(default=None, description="/workspace used.")
    disk_limit_mb: float | None = None
    processes: int | None = Field(default=None, description="In the sandbox, Corral's agent included.")
    pids: int | None = Field(default=None, description="Host threads, what the pids limit counts.")
    pids_limit: int | None = None
    uptime_s: float | None = None
    net_rx_bytes: int | None = Field(default=None, description="Null: no network.")
    net_tx_bytes: int | None = None


def _mb(value: object) -> float | None:
    return round(value / MIB, 1) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def line(m: SandboxMetrics) -> str:
    """The compact form get_sandbox shows."""
    if m.status != "running":
        return m.status
    parts = [
        f"cpu {m.cpu_percent:g}%" if m.cpu_percent is not None else "cpu ?",
        f"mem {m.memory_mb:g}/{m.memory_limit_mb:g} MiB",
    ]
    if m.disk_mb is not None:
        parts.append(f"disk {m.disk_mb:g}/{m.disk_limit_mb:g} MiB")
    if m.processes is not None:
        parts.append(f"{m.processes} processes")
    if m.uptime_s is not None:
        parts.append(f"up {m.uptime_s:.0f} s")
    if m.net_rx_bytes is not None:
        parts.append(f"net rx {m.net_rx_bytes} B tx {m.net_tx_bytes} B")
    return ", ".join(parts)


class Metrics:
    def __init__(self, sandboxes: SandboxService, engine: Engine) -> None:
        self._sandboxes = sandboxes
        self._engine = engine

    async def of(self, ref: str) -> SandboxMetrics:
        """Metrics of a running sandbox (a stopped one is not started for this: only its status)."""
        rec = await self._sandboxes.get(ref)
        if rec.status != "running" or rec.container_id is None:
            return SandboxMetrics(sandbox=rec.id, status=rec.status)
        container_id = rec.container_id
        stats: list[ContainerStats | None] = []
        usage: dict[str, Any] = {}

        async def sample() -> None:
            stats.append(await self._engine.stats(container_id))

        async def ask() -> None:
            try:
                usage.update(await self._sandboxes.request(rec.id, "usage", {}, timeout=30))
            except CorralError:
                pass  # the engine's figures are still worth showing

        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            tg.start_soon(ask)
        info = await self._engine.inspect(container_id)
        s = stats[0]
        if s is None:  # it stopped meanwhile
            return SandboxMetrics(sandbox=rec.id, status="stopped")
        started = info.started_at if info is not None else None
        return SandboxMetrics(
            sandbox=rec.id,
            status="running",
            cpu_percent=s.cpu_percent,
            memory_mb=_mb(s.memory_bytes),
            memory_limit_mb=_mb(s.memory_limit or rec.memory_bytes),
            disk_mb=_mb(usage.get("disk_used")),
            disk_limit_mb=_mb(usage.get("disk_total")),
            processes=_count(usage.get("processes")),
            pids=s.pids,
            pids_limit=rec.pids_limit,
            uptime_s=None if started is None else round(max(0.0, self._sandboxes.clock.now() - started), 1),
            net_rx_bytes=s.net_rx_bytes,
            net_tx_bytes=s.net_tx_bytes,
        )
