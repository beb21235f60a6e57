"""The reaper: enforces sandbox lifetimes from the deadlines kept in SQLite.

- `delete_after`: past `expires_at` a sandbox is deleted, whatever it is doing.
- `idle_stop_after`: past `stops_at` (last tool call + idle_stop_after) a sandbox is stopped, with
  its memory where possible, never deleted; unless a call is still running in it, a background
  process (start_process) still runs or an interpreter context is busy, which renews the lease.

Deadlines live in SQLite, so they survive restarts: the first sweep of a new server catches up
with whatever came due while none ran. The reaper only acts on sandboxes this data dir records,
through their recorded container, after checking that the container carries our owner label:
it never touches a container that is not ours. Time comes from the injected clock.
"""

from __future__ import annotations

import logging

from corral.errors import CorralError
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord
from corral.service import leases, notes
from corral.service.agents import AgentPool
from corral.service.containers import LABEL_OWNER
from corral.service.sandboxes import SandboxService

log = logging.getLogger(__name__)

MAX_NAP = 3600.0  # sweep at least this often, also with no deadline in sight


class Reaper:
    def __init__(self, sandboxes: SandboxService, engine: Engine, agents: AgentPool, owner: str) -> None:
        self._sandboxes = sandboxes
        self._engine = engine
        self._agents = agents
        self._owner = owner
        self._clock = sandboxes.clock

    async def run(self) -> None:
        notes.detached()
        while True:
            wakeup = self._sandboxes.leases_changed
            upcoming = await self.sweep()
            now = self._clock.now()
            await self._clock.wait(min(upcoming or now + MAX_NAP, now + MAX_NAP), wakeup)

    async def sweep(self) -> float | None:
        """Act on every deadline that has passed; return the next one (None: there is none)."""
        upcoming: list[float] = []
        for rec in await self._sandboxes.list_all():
            try:
                deadline = await self._check(rec)
            except CorralError as exc:
                log.warning("lifetime of sandbox %s: %s", rec.id, exc)
                deadline = self._clock.now() + 60
            if deadline is not None:
                upcoming.append(deadline)
        return min(upcoming, default=None)

    async def _check(self, rec: SandboxRecord) -> float | None:
        now = self._clock.now()
        if rec.expires_at is not None and rec.expires_at <= now:
            if await self.owns(rec):
                log.info("sandbox %s reached its delete_after lifetime; deleting it", rec.id)
                await self._sandboxes.delete(rec.id)
            return None
        stop = leases.stops_at(rec, self._sandboxes.last_used(rec))
        if stop is not None and stop <= now:
            if await self.busy(rec):
                self._sandboxes.renew(rec)
                stop = now + (rec.idle_stop_after or 0)
            elif await self.owns(rec):
                log.info("sandbox %s idle for %g s; stopping it", rec.id, rec.idle_stop_after or 0)
                change = await self._sandboxes.stop(rec.id)
                if not change.memory and change.reason:
                    log.info("sandbox %s stopped without its memory: %s", rec.id, change.reason)
                stop = None
            else:
                stop = None
        return min((t for t in (stop, rec.expires_at) if t is not None), default=None)

    async def busy(self, rec: SandboxRecord) -> bool:
        """Whether the sandbox is doing something though nobody called it lately: a call still
        running, a background process (start_process) alive, an interpreter context mid-run.
        Asking does not renew its lease."""
        if self._sandboxes.active(rec.id):
            return True
        if rec.status != "running":
            return False
        try:
            procs = await self._agents.request(rec, "proc_list", {}, timeout=30)
            contexts = await self._agents.request(rec, "context_list", {}, timeout=30)
        except CorralError as exc:
            log.info("sandbox %s: could not ask its agent whether it is busy (%s)", rec.id, exc)
            return False
        running = [p for p in procs.get("procs") or [] if isinstance(p, dict) and p.get("running") is True]
        working = [c for c in contexts.get("contexts") or [] if isinstance(c, dict) and c.get("busy") is True]
        return bool(running or working)

    async def owns(self, rec: SandboxRecord) -> bool:
        """Whether the sandbox's container carries this data dir's owner label: what the reaper
        checks before it stops or deletes anything. A record without a container is ours."""
        if rec.container_id is None:
            return True
        info = await self._engine.inspect(rec.container_id)
        if info is None:
            return True  # nothing left to touch; the record is ours to clean up
        if info.labels.get(LABEL_OWNER) != self._owner:
            log.warning("sandbox %s: container %s is not ours; leaving it alone", rec.id, rec.container_id[:12])
            return False
        return True
