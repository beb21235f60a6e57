"""The `egress` table: a networked sandbox's mode, allow list and connection counts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from corral.sandbox_backend.store.db import Database


@dataclass(frozen=True)
class EgressRecord:
    sandbox_id: str
    mode: str
    allow: tuple[str, ...]
    allowed: int = 0
    denied: int = 0


def _decode(row: Any) -> EgressRecord:
    return EgressRecord(str(row[0]), str(row[1]), tuple(json.loads(row[2])), int(row[3]), int(row[4]))


class EgressTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, sandbox_id: str, mode: str, allow: tuple[str, ...]) -> None:
        """Set the policy (the counts stay)."""
        await self._db.execute(
            "INSERT INTO egress (sandbox_id, mode, allow) VALUES (?, ?, ?) "
            "ON CONFLICT(sandbox_id) DO UPDATE SET mode = excluded.mode, allow = excluded.allow",
            (sandbox_id, mode, json.dumps(list(allow))),
        )

    async def get(self, sandbox_id: str) -> EgressRecord | None:
        row = await self._db.fetchone(
            "SELECT sandbox_id, mode, allow, allowed, denied FROM egress WHERE sandbox_id = ?", (sandbox_id,)
        )
        return _decode(row) if row else None

    async def list(self) -> list[EgressRecord]:
        rows = await self._db.fetchall("SELECT sandbox_id, mode, allow, allowed, denied FROM egress")
        return [_decode(row) for row in rows]

    async def add_counts(self, counts: Mapping[str, tuple[int, int]]) -> None:
        for sandbox_id, (allowed, denied) in counts.items():
            await self._db.execute(
                "UPDATE egress SET allowed = allowed + ?, denied = denied + ? WHERE sandbox_id = ?",
                (allowed, denied, sandbox_id),
            )

    async def forget(self, sandbox_id: str) -> None:
        await self._db.execute("DELETE FROM egress WHERE sandbox_id = ?", (sandbox_id,))
