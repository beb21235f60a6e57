"""A sandbox's memory across a stop: saved as an engine checkpoint, restored on the next start.

Saving: the in-sandbox agent first makes every process holding a host descriptor exit (the
relays of `docker exec`; gVisor cannot restore them), then the engine checkpoints the container,
which stops it. Restoring: the engine starts the container from the checkpoint; the agent daemon
comes back with its interpreter contexts and background processes, and keeps its start time (so
execution's "the sandbox restarted" notice rightly stays silent). Wherever that is impossible the
sandbox is stopped or started plainly, files kept, and the reason is returned for the result.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from corral.errors import AgentFailure, AgentRefused, CheckpointUnavailable, CorralError
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord
from corral.service.agents import AgentPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PowerChange:
    """What stop / start (or an automatic resume) did with a sandbox's memory."""

    rec: SandboxRecord
    memory: bool  # stop: memory saved; start: memory restored
    reason: str | None = None  # why not, when it was not
    changed: bool = True  # False: it already was in that state


def resumed_notice(change: PowerChange) -> str:
    rec = change.rec
    if change.memory:
        return f"sandbox {rec.id} was stopped and has been resumed with its memory (variables and processes kept)"
    return (
        f"sandbox {rec.id} was stopped and has been resumed without its memory ({change.reason}): files are "
        "kept; interpreter variables and background processes are gone (state_lost)"
    )


def checkpoint_name() -> str:
    return f"corral-{secrets.token_hex(4)}"


class Memory:
    def __init__(self, engine: Engine, agents: AgentPool) -> None:
        self._engine = engine
        self._agents = agents

    async def save(self, rec: SandboxRecord, name: str) -> str | None:
        """Checkpoint the running sandbox as `name` and stop it. Returns None when its memory was
        saved; otherwise it is stopped plainly (files kept) and the reason is returned."""
        assert rec.container_id is not None
        reason = None
        if not self._engine.capabilities.checkpoint:
            reason = "this container engine cannot save a sandbox's memory"
        elif rec.network != "none":
            # Its connections, addresses and proxy identity belong to the live network; runsc
            # 20221219 restores network namespaces unreliably, so such a sandbox keeps its files only.
            reason = "a sandbox with network keeps its files but not its memory across a stop"
        else:
            try:
                await self._agents.release_host(rec)
                await self._engine.checkpoint(rec.container_id, name)
                return None
            except (CheckpointUnavailable, AgentFailure, AgentRefused) as exc:
                reason = str(exc)
        log.info("sandbox %s: memory not saved (%s); stopping it plainly", rec.id, reason)
        await self._agents.drop(rec.id)
        info = await self._engine.inspect(rec.container_id)
        if info is not None and info.running:
            await self._engine.stop(rec.container_id)
        return reason

    async def restore(self, rec: SandboxRecord, name: str) -> str | None:
        """Start the stopped sandbox from checkpoint `name`. Returns None when its memory came back;
        otherwise it is started plainly (files kept, memory lost) and the reason is returned."""
        assert rec.container_id is not None
        await self._agents.drop(rec.id)
        try:
            await self._engine.start(rec.container_id, checkpoint=name)
            reason = None
        except CheckpointUnavailable as exc:
            reason = str(exc)
            log.warning("sandbox %s: memory not restored (%s); starting it plainly", rec.id, reason)
            await self._engine.start(rec.container_id)
        await self.forget(rec, name)
        return reason

    async def forget(self, rec: SandboxRecord, name: str) -> None:
        if rec.container_id is None:
            return
        try:
            await self._engine.remove_checkpoint(rec.container_id, name)
        except CorralError as exc:
            log.info("sandbox %s: could not remove checkpoint %s: %s", rec.id, name, exc)
