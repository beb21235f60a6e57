"""The `contexts` table: which agent daemon each interpreter context last ran in."""

from __future__ import annotations

from corral.sandbox_backend.store.db import Database


class ContextTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def swap_agent(self, sandbox_id: str, language: str, name: str, agent_started: float) -> float | None:
        """Record that the context now lives in the daemon started at `agent_started`; return the
        daemon it lived in before (None if the context is new)."""
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT agent_started FROM contexts WHERE sandbox_id = ? AND language = ? AND name = ?",
                (sandbox_id, language, name),
            ) as cur:
                row = await cur.fetchone()
            await conn.execute(
                "INSERT OR REPLACE INTO contexts VALUES (?, ?, ?, ?)", (sandbox_id, language, name, agent_started)
            )
        return float(row[0]) if row else None

    async def copy(self, source_id: str, target_id: str) -> None:
        """Give a fork the contexts of its source (same daemon, same memory)."""
        await self._db.execute(
            "INSERT OR REPLACE INTO contexts "
            "SELECT ?, language, name, agent_started FROM contexts WHERE sandbox_id = ?",
            (target_id, source_id),
        )

    async def forget(self, sandbox_id: str, language: str | None = None, name: str | None = None) -> None:
        if language is None or name is None:
            await self._db.execute("DELETE FROM contexts WHERE sandbox_id = ?", (sandbox_id,))
        else:
            await self._db.execute(
                "DELETE FROM contexts WHERE sandbox_id = ? AND language = ? AND name = ?", (sandbox_id, language, name)
            )
