"""Exposing a port inside a sandbox as a URL on the host, without giving the sandbox a network.

For each exposed port the server listens on the host (127.0.0.1 by default, `Settings.port_host`).
Every accepted connection starts a fresh `docker exec` of the agent in `tcp-relay 127.0.0.1 PORT`
mode, which connects to the port inside the sandbox and copies bytes between it and its stdio; the
server pumps bytes between the host connection and that exec stream. Traffic goes through Docker's
API, never through a network interface of the sandbox, so it works for sandboxes with no network.

Exposed ports are recorded in SQLite with the server instance that listens for them: `list_ports`
shows them, and a port whose server is gone (stopped, crashed) is taken over by the next live
server on the data dir, on the same host port when it is free. A server never opens a port another
live server listens on. Listeners run in the server's task group, guarded: a failing connection
is logged and dropped, never fatal to the listener or the server. They are closed when their
sandbox is deleted, their port closed (by any server; the owner notices within a heartbeat) or
the server stops.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream, TaskGroup
from pydantic import BaseModel, Field

from corral.config import SANDBOX_USER
from corral.errors import CorralError, InvalidRequest, QuotaExceeded, SandboxNotFound
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import PortRecord
from corral.sandbox_backend.store.processes import PortTable
from corral.service import tenancy
from corral.service.access import SandboxAccess
from corral.service.instances import Instances

log = logging.getLogger(__name__)

MAX_PORTS = 16  # per sandbox
MAX_CONNECTIONS = 64  # concurrent, per exposed port
TARGET_HOST = "127.0.0.1"  # inside the sandbox
_STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class PortInfo(BaseModel):
    sandbox: str
    port: int = Field(description="The port inside the sandbox.")
    url: str = Field(description="http://host:port/ on the server's machine that reaches it.")
    host: str
    host_port: int
    active: bool = Field(description="True while the server is listening on host_port.")


def port_info(rec: PortRecord, active: bool) -> PortInfo:
    host = f"[{rec.host}]" if ":" in rec.host else rec.host
    return PortInfo(
        sandbox=rec.sandbox_id,
        port=rec.port,
        url=f"http://{host}:{rec.host_port}/",
        host=rec.host,
        host_port=rec.host_port,
        active=active,
    )


def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidRequest(f"port must be a TCP port number between 1 and 65535 (got {port!r})")
    return port


@dataclass
class _Forward:
    record: PortRecord
    scope: anyio.CancelScope


class Ports:
    """The host listeners of one server."""

    def __init__(
        self,
        sandboxes: SandboxAccess,
        engine: Engine,
        table: PortTable,
        tg: TaskGroup,
        host: str,
        instances: Instances,
    ) -> None:
        self._sandboxes = sandboxes
        self._engine = engine
        self._table = table
        self._tg = tg
        self._host = host
        self._instances = instances
        self._forwards: dict[tuple[str, int], _Forward] = {}
        self._lock = anyio.Lock()

    # -- what the tools call ----------------------------------------------------------------

    async def expose(self, ref: str, port: int) -> PortInfo:
        check_port(port)
        sandbox = await self._sandboxes.use(ref)
        async with self._lock:
            current = self._forwards.get((sandbox.id, port))
            if current is not None:
                return port_info(current.record, True)
            mine = [key for key in self._forwards if key[0] == sandbox.id]
            if len(mine) >= MAX_PORTS:
                raise QuotaExceeded(
                    f"sandbox {sandbox.id} already exposes {len(mine)} ports (the limit); close_port one first"
                )
            existing = {r.port: r for r in await self._table.list(sandbox.id)}.get(port)
            if existing is not None and existing.instance_id in await self._instances.live():
                return port_info(existing, True)  # another live server on this data dir listens
            rec = PortRecord(sandbox.id, port, self._host, 0, time.time(), self._instances.id)
            rec = await self._open(rec)
            await self._table.upsert(rec)
        return port_info(rec, True)

    async def close(self, ref: str, port: int) -> PortInfo:
        check_port(port)
        sandbox = await self._sandboxes.resolve(ref)
        records = {r.port: r for r in await self._table.list(sandbox.id)}
        rec = records.get(port)
        if rec is None:
            exposed = ", ".join(str(p) for p in sorted(records)) or "none"
            raise InvalidRequest(f"port {port} of sandbox {sandbox.id} is not exposed (exposed: {exposed})")
        async with self._lock:
            self._stop(sandbox.id, port)
            await self._table.delete(sandbox.id, port)
        return port_info(rec, False)

    async def list(self, ref: str | None = None) -> list[PortInfo]:
        if ref:
            records = await self._table.list((await self._sandboxes.resolve(ref)).id)
        else:  # the caller's sandboxes' ports only
            mine = {rec.id for rec in await self._sandboxes.list_all()}
            records = [r for r in await self._table.list() if r.sandbox_id in mine]
        live = await self._instances.live()
        elsewhere = {r.instance_id for r in records} & live - {self._instances.id}
        return [port_info(r, (r.sandbox_id, r.port) in self._forwards or r.instance_id in elsewhere) for r in records]

    # -- lifecycle hooks (composition root) ------------------------------------------------------

    async def restore(self) -> None:
        """Take over the ports no live server listens on (ours from an earlier run, or a server's
        that is gone), on the same host port if it is free; stop listening for ports that were
        closed or taken over elsewhere. Runs at start and after every heartbeat."""
        records = await self._table.list()
        live = await self._instances.live()
        mine = self._instances.id
        async with self._lock:
            wanted = {(r.sandbox_id, r.port) for r in records if r.instance_id == mine}
            for key in [k for k in self._forwards if k not in wanted]:
                self._stop(*key)
        for rec in records:
            if (rec.instance_id == mine and (rec.sandbox_id, rec.port) in self._forwards) or (
                rec.instance_id != mine and rec.instance_id in live
            ):
                continue
            try:
                sandbox = await self._sandboxes.resolve(rec.sandbox_id)
            except SandboxNotFound:
                await self._table.delete(rec.sandbox_id)
                continue
            if sandbox.status == "lost":
                continue
            async with self._lock:
                await self._take_over(rec)

    async def _take_over(self, rec: PortRecord) -> None:
        mine = self._instances.id
        if (rec.sandbox_id, rec.port) in self._forwards:
            return
        try:
            opened = await self._open(rec.with_owner(mine))
        except OSError:
            log.warning(
                "sandbox %s port %d: host port %d is taken; listening on another one",
                rec.sandbox_id,
                rec.port,
                rec.host_port,
            )
            opened = await self._open(PortRecord(rec.sandbox_id, rec.port, rec.host, 0, rec.created_at, mine))
        if not await self._table.take_over(opened, rec.instance_id):
            self._stop(rec.sandbox_id, rec.port)  # another server was quicker, or it was closed

    async def close_sandbox(self, sandbox_id: str) -> None:
        """Stop forwarding a sandbox's ports and forget them (the sandbox is being deleted)."""
        async with self._lock:
            for key in [k for k in self._forwards if k[0] == sandbox_id]:
                self._stop(*key)
            await self._table.delete(sandbox_id)

    async def stop_listening(self, sandbox_id: str) -> None:
        """The sandbox's container is gone: stop its listeners (the records are left to whoever
        deleted it, or stay for a lost sandbox, shown inactive)."""
        async with self._lock:
            for key in [k for k in self._forwards if k[0] == sandbox_id]:
                self._stop(*key)

    async def close_all(self) -> None:
        """Stop every listener (server shutdown); the records stay for the next start."""
        for key in list(self._forwards):
            self._stop(*key)

    # -- listeners and connections -----------------------------------------------------------------

    async def _open(self, rec: PortRecord) -> PortRecord:
        """Listen for `rec` (host_port 0 = any free port); returns the record with the real port."""
        listener = await anyio.create_tcp_listener(local_host=rec.host, local_port=rec.host_port)
        bound = int(listener.extra(SocketAttribute.local_port))
        opened = PortRecord(rec.sandbox_id, rec.port, rec.host, bound, rec.created_at, rec.instance_id)
        scope = anyio.CancelScope()
        limiter = anyio.CapacityLimiter(MAX_CONNECTIONS)

        async def handle(client: SocketStream) -> None:
            try:
                async with limiter:
                    await self._connect(opened, client)
            except Exception:
                # One connection's failure must never end the listener (nor the server's task group).
                log.exception("sandbox %s port %d: connection failed", rec.sandbox_id, rec.port)

        async def serve() -> None:
            with scope:
                async with listener:
                    while True:
                        try:
                            await listener.serve(handle)
                        except Exception:
                            log.exception("sandbox %s port %d: listener failed; retrying", rec.sandbox_id, rec.port)
                            await anyio.sleep(1)

        self._forwards[(rec.sandbox_id, rec.port)] = _Forward(opened, scope)
        self._tg.start_soon(serve, name=f"port {rec.sandbox_id}:{rec.port}")
        log.info("sandbox %s port %d exposed at %s:%d", rec.sandbox_id, rec.port, rec.host, bound)
        return opened

    def _stop(self, sandbox_id: str, port: int) -> None:
        forward = self._forwards.pop((sandbox_id, port), None)
        if forward is not None:
            forward.scope.cancel()

    async def _connect(self, rec: PortRecord, client: SocketStream) -> None:
        async with client:
            try:
                # The server forwards a port it recorded, whoever asked for it and in whatever task.
                with tenancy.acting_as(tenancy.OPERATOR):
                    sandbox = await self._sandboxes.use(rec.sandbox_id)
                if sandbox.container_id is None:
                    return
                argv = self._sandboxes.agent_argv(sandbox, "tcp-relay", TARGET_HOST, str(rec.port))
                remote = await self._engine.open_exec_stream(sandbox.container_id, argv, user=SANDBOX_USER)
            except CorralError as exc:
                log.info("sandbox %s port %d: connection refused: %s", rec.sandbox_id, rec.port, exc)
                return
            async with remote, anyio.create_task_group() as tg:
                tg.start_soon(_pump, client, remote, True)
                await _pump(remote, client, False)
                tg.cancel_scope.cancel()


async def _pump(source: ByteStream, sink: ByteStream, half_close: bool) -> None:
    """Copy source -> sink until source ends; then pass the end on as a half-close if asked."""
    try:
        while True:
            data = await source.receive(65536)
            await sink.send(data)
    except _STREAM_ERRORS:
        pass
    if half_close:
        try:
            await sink.send_eof()
        except _STREAM_ERRORS:
            pass


__all__ = ["PortInfo", "Ports", "check_port"]
