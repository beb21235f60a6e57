"""Reconcile SQLite with the engine after a (re)start, and collect what nothing records (`corral gc`)."""

from __future__ import annotations

import logging

from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store.pool import PoolTable
from corral.sandbox_backend.store.sandboxes import SandboxTable
from corral.service.containers import LABEL_SANDBOX, Containers

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, engine: Engine, table: SandboxTable, containers: Containers, pool: PoolTable | None) -> None:
        self._engine = engine
        self._table = table
        self._containers = containers
        self._pool = pool
        self.orphans: list[str] = []

    async def reconcile(self, *, dry_run: bool = False) -> dict[str, list[str]]:
        """Bring SQLite in line with the engine after a (re)start. Returns what changed, for the log.
        With `dry_run`, only reports: nothing is written."""
        containers = {
            c.labels.get(LABEL_SANDBOX, ""): c for c in await self._engine.list_labeled(self._containers.owner_filter)
        }
        containers.pop("", None)  # helpers carry no sandbox label
        if self._pool is not None:
            # Warm sandboxes waiting in any server's pool: recorded there, not orphans.
            for member in await self._pool.list():
                containers.pop(member.sandbox_id, None)
        report: dict[str, list[str]] = {"running": [], "stopped": [], "lost": [], "orphans": []}
        for rec in await self._table.list():
            info = containers.pop(rec.id, None)
            if rec.status == "creating" and info is None:
                # A create that died half-way: nothing to keep.
                if not dry_run:
                    await self._table.delete(rec.id)
                continue
            status = "lost" if info is None else ("running" if info.running else "stopped")
            if not dry_run:
                if info is not None and rec.container_id != info.id:
                    await self._table.update(rec.id, container_id=info.id)
                if status != rec.status:
                    await self._table.update(rec.id, status=status)
            report[status].append(rec.id)
        self.orphans = [c.id for c in containers.values()]
        report["orphans"] = [c.name for c in containers.values()]
        if report["lost"]:
            log.warning("sandboxes lost (container gone): %s", ", ".join(report["lost"]))
        if report["orphans"]:
            log.warning(
                "containers with Corral labels but no record (run `corral gc`): %s", ", ".join(report["orphans"])
            )
        return report

    async def gc(self) -> list[str]:
        """Remove containers that carry this data dir's labels but have no sandbox record."""
        report = await self.reconcile()
        removed = []
        for container_id, name in zip(self.orphans, report["orphans"], strict=True):
            await self._engine.remove(container_id)
            removed.append(name)
        self.orphans = []
        return removed
