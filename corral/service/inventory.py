"""What exists right now, for the operator's `corral ls` and `corral top`: every sandbox with its
live status from the engine and its resource use. Reads only; writes nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from corral.errors import BackendError
from corral.sandbox_backend.engine import ContainerStats, Engine
from corral.sandbox_backend.store import SandboxRecord
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.service import leases
from corral.service.containers import LABEL_SANDBOX, Containers


@dataclass(frozen=True)
class SandboxRow:
    record: SandboxRecord
    status: str  # live from the engine when it answered, else as recorded
    stats: ContainerStats | None = None

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        rec, stats = self.record, self.stats
        return {
            "id": rec.id,
            "name": rec.name,
            "tenant": rec.tenant,
            "status": self.status,
            "image": rec.image,
            "runtime": rec.runtime,
            "network": rec.network,
            "cpus": rec.cpus,
            "cpu_percent": None if stats is None or stats.cpu_percent is None else round(stats.cpu_percent, 1),
            "memory_used_mb": None if stats is None else round(stats.memory_bytes / 2**20, 1),
            "memory_limit_mb": rec.memory_bytes // 2**20,
            "disk_limit_mb": None if rec.disk_bytes is None else rec.disk_bytes // 2**20,
            "created_at": rec.created_at,
            "last_used_at": rec.last_used_at,
            "age_s": round(now - rec.created_at, 1),
            "idle_s": round(now - rec.last_used_at, 1),
            "lease": leases.compact(rec, rec.last_used_at),
        }


class Inventory:
    def __init__(self, engine: Engine, table: SandboxTable, containers: Containers) -> None:
        self._engine = engine
        self._table = table
        self._containers = containers
        self.engine_error: str | None = None

    async def rows(self, *, stats: bool = True) -> list[SandboxRow]:
        """Every tenant's sandboxes. If the engine does not answer, statuses are as recorded and
        `engine_error` says why."""
        records = await self._table.list()
        self.engine_error = None
        try:
            live = {
                c.labels.get(LABEL_SANDBOX): c for c in await self._engine.list_labeled(self._containers.owner_filter)
            }
        except BackendError as exc:
            self.engine_error = str(exc)
            return [SandboxRow(rec, rec.status) for rec in records]
        rows: list[SandboxRow] = []
        for rec in records:
            info = live.get(rec.id)
            status = rec.status if rec.status == "creating" else "lost" if info is None else (
                "running" if info.running else "stopped"
            )
            rows.append(SandboxRow(rec, status))
        if stats:
            rows = await self._with_stats(rows)
        return rows

    async def _with_stats(self, rows: list[SandboxRow]) -> list[SandboxRow]:
        sampled: dict[str, ContainerStats | None] = {}

        async def sample(row: SandboxRow) -> None:
            if row.record.container_id is None:
                return
            try:
                sampled[row.record.id] = await self._engine.stats(row.record.container_id)
            except BackendError:
                sampled[row.record.id] = None

        async with anyio.create_task_group() as tg:  # ~1 s per sample: take them together
            for row in rows:
                if row.status == "running":
                    tg.start_soon(sample, row)
        return [SandboxRow(r.record, r.status, sampled.get(r.record.id)) for r in rows]
