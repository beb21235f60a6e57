"""The `git_remotes` table: the origin (scheme://host:port) a tool call named for a sandbox
repository's remote, so credentials go there and nowhere the sandbox points its config at."""

from __future__ import annotations

import time

from corral.sandbox_backend.store.db import Database


class GitRemoteTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def remember(self, sandbox_id: str, repo: str, remote: str, origin: str) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO git_remotes VALUES (?, ?, ?, ?, ?)",
            (sandbox_id, repo, remote, origin, time.time()),
        )

    async def origin(self, sandbox_id: str, repo: str, remote: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT origin FROM git_remotes WHERE sandbox_id = ? AND repo = ? AND remote = ?",
            (sandbox_id, repo, remote),
        )
        return str(row[0]) if row else None

    async def forget(self, sandbox_id: str) -> None:
        await self._db.execute("DELETE FROM git_remotes WHERE sandbox_id = ?", (sandbox_id,))
