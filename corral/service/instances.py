"""The servers running on one data dir, and which of them are alive.

Several Corral servers may share a data dir (every Claude Code window starts its own stdio server
on the default CORRAL_HOME). Each one that serves registers itself in the `instances` table and
refreshes a heartbeat; every container and exposed port it makes carries its id. Whatever a live
instance made is never reaped by another server or by `corral gc`; what a dead one left behind is
(a create it did not finish, a helper container it did not remove, ports it listened on).

Liveness: an instance on this host is alive while its process is (pid and the process's start
time, so a reused pid does not count); one on another host while its heartbeat is fresh.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

import anyio

from corral.errors import CorralError
from corral.sandbox_backend.store.instances import InstanceTable
from corral.sandbox_backend.store.records import InstanceRecord

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0
STALE_AFTER = 60.0  # a heartbeat older than this, from another host, means that server is gone

Hook = Callable[[], Awaitable[None]]


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks (Linux), or None if unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        return int(text[text.rfind(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, start: int | None) -> bool:
    if os.path.isdir("/proc/self"):
        now = process_start(pid)
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def is_alive(rec: InstanceRecord, now: float, host: str) -> bool:
    if rec.host == host:
        return pid_alive(rec.pid, rec.pid_start)
    return now - rec.heartbeat_at < STALE_AFTER


class Instances:
    def __init__(self, table: InstanceTable, instance_id: str) -> None:
        self._table = table
        self.id = instance_id
        self.host = socket.gethostname()
        self.registered = False
        self._hooks: list[Hook] = []

    def on_heartbeat(self, hook: Hook) -> None:
        """Call `hook` after every heartbeat (e.g. to take over what a dead server left)."""
        self._hooks.append(hook)

    async def register(self) -> None:
        now = time.time()
        pid = os.getpid()
        await self._table.upsert(InstanceRecord(self.id, self.host, pid, process_start(pid), now, now))
        self.registered = True

    async def unregister(self) -> None:
        if self.registered:
            self.registered = False
            with anyio.CancelScope(shield=True):
                try:
                    await self._table.delete(self.id)
                except CorralError as exc:  # the process is about to end: its pid says it is gone
                    log.warning("could not unregister this server: %s", exc)

    async def live(self) -> set[str]:
        """Ids of the instances alive now (this one included, while registered)."""
        now = time.time()
        alive = {rec.id for rec in await self._table.list() if is_alive(rec, now, self.host)}
        if self.registered:
            alive.add(self.id)
        return alive

    async def run(self) -> None:
        """The heartbeat loop (supervised by the caller): refresh, forget dead instances, call hooks."""
        while True:
            now = time.time()
            if not await self._table.beat(self.id, now):
                await self.register()  # another server took us for dead and dropped our row
            for rec in await self._table.list():
                if rec.id != self.id and not is_alive(rec, now, self.host) and now - rec.heartbeat_at > STALE_AFTER:
                    await self._table.delete(rec.id)
            for hook in self._hooks:
                try:
                    await hook()
                except Exception:
                    log.exception("heartbeat hook failed")
            await anyio.sleep(HEARTBEAT_EVERY)
