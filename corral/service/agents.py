"""The agents of the sandboxes: one long-lived channel per sandbox, (re)connected on demand.

A per-call `docker exec` costs ~85 ms under gVisor before any work is done; the channel pays it
once per sandbox and then speaks the agent protocol (docs/agent-protocol.md) over that one stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from corral.agent.bundle import AGENT_VERSION, bootstrap_argv
from corral.config import SANDBOX_USER, WORKDIR
from corral.errors import (
    AgentFailure,
    AgentRefused,
    CheckpointUnavailable,
    CorralError,
    PayloadTooLarge,
    SandboxBusy,
)
from corral.sandbox_backend.agent_channel import AgentChannel, AgentChannelError, AgentError
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 30.0
RELAY_EXIT_TIMEOUT = 10.0

# Agent error types that are the agent's own trouble, not the request's (docs/agent-protocol.md).
_AGENT_FAULTS = frozenset({"internal", "cancelled"})


def translate(exc: AgentError) -> CorralError:
    """The agent's error as Corral's, keeping its type as `.kind` so callers never match text."""
    if exc.type == "too_large":
        return PayloadTooLarge(exc.message)
    if exc.type == "busy":
        return SandboxBusy(exc.message)
    if exc.type in _AGENT_FAULTS:
        return AgentFailure(exc.message, kind=exc.type)
    return AgentRefused(exc.message, kind=exc.type, field=exc.field)


# Safe to send again if the channel broke mid-request: they change nothing in the sandbox.
_IDEMPOTENT_OPS = frozenset(
    {"hello", "read_file", "list_files", "stat", "context_list", "proc_output", "proc_list"}
)


class AgentPool:
    def __init__(self, engine: Engine, tg: TaskGroup) -> None:
        self._engine = engine
        self._tg = tg
        self._channels: dict[str, AgentChannel] = {}
        self._exec_ids: dict[str, str] = {}  # the exec that carries each channel (its relay)
        self._locks: dict[str, anyio.Lock] = {}
        # The daemon's start time per sandbox, from its hello: tells a restarted sandbox apart.
        self.agent_started: dict[str, float] = {}

    def is_open(self, sandbox_id: str) -> bool:
        channel = self._channels.get(sandbox_id)
        return channel is not None and not channel.closed

    async def get(self, rec: SandboxRecord) -> AgentChannel:
        channel = self._channels.get(rec.id)
        if channel is not None and not channel.closed:
            return channel
        async with self._locks.setdefault(rec.id, anyio.Lock()):
            channel = self._channels.get(rec.id)
            if channel is not None and not channel.closed:
                return channel
            channel, exec_id = await self._connect(rec)
            self._channels[rec.id] = channel
            self._exec_ids[rec.id] = exec_id
            return channel

    async def _connect(self, rec: SandboxRecord) -> tuple[AgentChannel, str]:
        assert rec.container_id is not None
        for attempt in range(2):
            stream = await self._engine.open_exec_stream(
                rec.container_id, bootstrap_argv("relay"), user=SANDBOX_USER, workdir=WORKDIR
            )
            channel = AgentChannel(stream)
            await channel.start(self._tg)
            try:
                with anyio.fail_after(HELLO_TIMEOUT):
                    hello = await channel.request("hello", {})
            except (AgentChannelError, TimeoutError) as exc:
                await channel.aclose()
                code = await self._engine.exec_exit_code(stream.exec_id)
                if code in (126, 127):
                    raise AgentFailure(
                        f"sandbox {rec.id}: image {rec.image!r} has no usable python3, which Corral's "
                        "in-sandbox agent needs (Python >= 3.8). Use an image with python3, such as the "
                        "default one.",
                        kind="no_python",
                    ) from exc
                raise AgentFailure(
                    f"sandbox {rec.id}: the in-sandbox agent did not start ({exc})", kind="unavailable"
                ) from exc
            if hello.get("version") == AGENT_VERSION or attempt == 1:
                started = hello.get("started")
                if isinstance(started, int | float):
                    self.agent_started[rec.id] = float(started)
                return channel, stream.exec_id
            # A daemon from an older Corral is still running in the sandbox: replace it.
            log.info("sandbox %s: replacing agent %s with %s", rec.id, hello.get("version"), AGENT_VERSION)
            try:
                await channel.request("shutdown", {}, timeout=5)
            except AgentChannelError:
                pass
            await channel.aclose()
        raise AssertionError("unreachable")

    async def request(
        self,
        rec: SandboxRecord,
        op: str,
        params: dict[str, Any],
        *,
        timeout: float | None = None,
        on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Send a request. A broken channel is dropped (the next call reconnects to the same
        daemon, which keeps its state); read-only requests are retried on the new channel."""
        for attempt in range(2):
            channel = await self.get(rec)
            try:
                return await channel.request(op, params, timeout=timeout, on_event=on_event)
            except AgentError as exc:
                raise translate(exc) from exc
            except AgentChannelError as exc:
                await self.drop(rec.id)
                if attempt == 1 or op not in _IDEMPOTENT_OPS:
                    raise AgentFailure(
                        f"sandbox {rec.id}: lost contact with the in-sandbox agent during {op} ({exc}); "
                        "the sandbox is reconnected on the next call, but the outcome of this one is unknown",
                        kind="disconnected",
                    ) from exc
                log.info("sandbox %s: agent channel failed (%s); reconnecting", rec.id, exc)
        raise AssertionError("unreachable")

    async def release_host(self, rec: SandboxRecord) -> None:
        """Make every process in the sandbox that holds a descriptor of the host's end (the relays
        of `docker exec`) exit, so that a memory checkpoint of it can be restored: the daemon ends
        them (prepare_checkpoint, docs/agent-protocol.md) and we wait until our own relay is gone."""
        channel = await self.get(rec)
        exec_id = self._exec_ids[rec.id]
        try:
            await channel.request("prepare_checkpoint", {}, timeout=30)
        except AgentError as exc:
            raise translate(exc) from exc
        except AgentChannelError as exc:
            raise AgentFailure(f"sandbox {rec.id}: the agent did not prepare the checkpoint ({exc})") from exc
        finally:
            await self.drop(rec.id)
        with anyio.move_on_after(RELAY_EXIT_TIMEOUT):
            # The exec's end has no event of its own: ask the engine until it has an exit code.
            while await self._engine.exec_exit_code(exec_id) is None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            return
        raise CheckpointUnavailable(f"sandbox {rec.id}: the agent's relay did not exit within {RELAY_EXIT_TIMEOUT:g} s")

    async def drop(self, sandbox_id: str) -> None:
        self._exec_ids.pop(sandbox_id, None)
        channel = self._channels.pop(sandbox_id, None)
        if channel is not None:
            with anyio.CancelScope(shield=True):
                await channel.aclose()

    async def close_all(self) -> None:
        for sandbox_id in list(self._channels):
            await self.drop(sandbox_id)
