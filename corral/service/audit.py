"""The audit trail: one record per tool call, which must never turn a good call into a failure."""

from __future__ import annotations

import logging
import time

from corral.sandbox_backend.store.audit import AuditTable
from corral.sandbox_backend.store.records import AuditEntry

log = logging.getLogger(__name__)

MAX_DETAIL = 500


class Auditor:
    def __init__(self, table: AuditTable) -> None:
        self._table = table

    async def record(
        self, tool: str, sandbox: str | None, outcome: str, detail: str | None, duration_ms: float
    ) -> None:
        entry = AuditEntry(time.time(), tool, sandbox, outcome, (detail or "")[:MAX_DETAIL] or None, duration_ms)
        try:
            await self._table.record(entry)
        except Exception:
            log.exception("could not write the audit record for %s", tool)

    async def entries(self, *, sandbox: str | None = None, limit: int = 100) -> list[AuditEntry]:
        return await self._table.entries(sandbox=sandbox, limit=limit)
