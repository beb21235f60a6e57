"""The agents of the sandboxes: one long-lived channel per sandbox, (re)connected on demand.

A per-call `docker exec` costs ~85 ms under gVisor before any work is done; the channel pays it
once per sandbox and then speaks the agent protocol (docs/agent-protocol.md) over that one stream.

The agent's code is installed root-owned at /opt/corral/agent (`install_tar`), and started with
the image's python by absolute path: sandbox code can put a `python3` first on PATH or files in
/workspace, but neither is ever what runs as the agent. It can still kill the agent (they share a
user) and answer in its place, so every reply is validated (`replies.check_reply`) and bounded.
When the channel breaks because the sandbox itself stopped (out of memory, too many processes),
the error says so, with the limit and what to do, and the next call starts it again.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from corral.agent.bundle import (
    AGENT_MOUNT,
    AGENT_VERSION,
    install_argv,
    install_tar,
    installed_argv,
    unpack_install,
)
from corral.config import MIB, SANDBOX_USER, WORKDIR
from corral.errors import (
    AgentFailure,
    AgentRefused,
    CheckpointUnavailable,
    CorralError,
    PayloadTooLarge,
    SandboxBusy,
    SandboxCrashed,
)
from corral.sandbox_backend.agent_channel import AgentChannel, AgentChannelError, AgentError
from corral.sandbox_backend.engine import ContainerInfo, Engine
from corral.sandbox_backend.store import SandboxRecord
from corral.service.inbox import STAGE_MIN, Staged, Staging, collect, stage
from corral.service.replies import check_reply

log = logging.getLogger(__name__)


class StagingFailed(Exception):
    """A reply's staged bytes could not be collected; the request is asked again inline."""

HELLO_TIMEOUT = 30.0
RELAY_EXIT_TIMEOUT = 10.0
# Where images keep python3; looked up by absolute path, never through the sandbox's PATH.
PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
_OUTBOX_OPS = frozenset({"read_file"})  # read-only: asked again inline if its staged reply fails
MAX_STAGED = 8 * MIB  # no reply carries more bytes (replies.ReadReply)
_NO_PROGRAM = (126, 127)  # docker exec: the program could not be run / was not found

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


def crash_error(rec: SandboxRecord, op: str, info: ContainerInfo) -> SandboxCrashed:
    """What to tell the model when the sandbox's container stopped under a call."""
    who = f"sandbox {rec.id}" + (f" ({rec.name})" if rec.name else "")
    after = (
        "every process in it ended and interpreter state is lost; files in /workspace are kept, and the "
        "sandbox starts again on the next call."
    )
    if info.oom_killed:
        return SandboxCrashed(
            f"{who} ran out of memory during {op}: it reached its {rec.memory_bytes // MIB} MiB limit and was "
            f"stopped (OOMKilled); {after} Use less memory at once (work in chunks, free large objects), or "
            "create a sandbox with a larger memory_mb.",
            oom=True,
            exit_code=info.exit_code,
        )
    if info.exit_code == 137:
        return SandboxCrashed(
            f"{who} was killed during {op} (exit code 137, the signal the kernel's out-of-memory killer sends: it "
            f"most likely ran out of memory at its {rec.memory_bytes // MIB} MiB limit); {after} If it did, use "
            "less memory at once, or create a sandbox with a larger memory_mb.",
            exit_code=137,
        )
    hint = ""
    if info.exit_code == 2:
        hint = (
            f"; gVisor stops a sandbox like this when it runs more processes or threads than its limit of "
            f"{rec.pids_limit} host threads allows (about 5 per process), e.g. a fork bomb"
        )
    return SandboxCrashed(
        f"{who} stopped during {op} (its container exited with code {info.exit_code}{hint}); {after}",
        exit_code=info.exit_code,
    )


# Safe to send again if the channel broke mid-request: they change nothing in the sandbox.
_IDEMPOTENT_OPS = frozenset({"hello", "read_file", "list_files", "stat", "context_list", "proc_output", "proc_list"})


class AgentPool:
    def __init__(self, engine: Engine, tg: TaskGroup, agent_volume: Callable[[str], str] | None = None) -> None:
        self._engine = engine
        self._tg = tg
        self.staging = Staging(engine, agent_volume)  # big payloads as files (service/inbox.py)
        self._channels: dict[str, AgentChannel] = {}
        self._exec_ids: dict[str, str] = {}  # the exec that carries each channel (its relay)
        self._locks: dict[str, anyio.Lock] = {}
        # The daemon's start time per sandbox, from its hello: tells a restarted sandbox apart.
        self.agent_started: dict[str, float] = {}
        self._python: dict[str, str] = {}  # image -> the python3 that ran the agent there
        self._connecting: dict[str, anyio.CancelScope] = {}  # background connects (connect_soon)

    def is_open(self, sandbox_id: str) -> bool:
        channel = self._channels.get(sandbox_id)
        return channel is not None and not channel.closed

    async def started(self, rec: SandboxRecord) -> None:
        """A new sandbox has started: connect to its agent. In an image whose agent has answered
        here before, in the background (`connect_soon`): the agent's ~0.4 s start was over half of
        a cold create (measured), and it overlaps what the caller (and the model) does next. An
        image never run here is waited for, so that one without a usable python3 fails the create
        with the reason."""
        if rec.image in self._python:
            self.connect_soon(rec)
        else:
            await self.get(rec)

    def connect_soon(self, rec: SandboxRecord) -> None:
        """Connect to a just-started sandbox's agent in the background. Its interpreter starts
        while the caller has its answer (and the model thinks); the first request waits for it,
        since `get` holds the sandbox's lock while connecting. A failure here is only logged: that
        request connects again and reports it."""
        scope = anyio.CancelScope()
        self._connecting[rec.id] = scope

        async def connect() -> None:
            try:
                with scope:
                    await self.get(rec)
            except CorralError as exc:
                log.warning("sandbox %s: the agent did not answer after start: %s", rec.id, exc)
            finally:
                if self._connecting.get(rec.id) is scope:
                    del self._connecting[rec.id]

        self._tg.start_soon(connect)

    def argv(self, rec: SandboxRecord, mode: str, *args: str) -> list[str]:
        """The command line that runs the installed agent in `mode` in this sandbox."""
        return installed_argv(mode, *args, python=self._python.get(rec.image, PYTHONS[0]))

    async def install(self, container_id: str, volume: str) -> None:
        """Copy the agent's code, root-owned, into a created container's new agent `volume`,
        before it starts: straight into the volume's directory when this host has it (a few ms),
        else through Docker's archive API (~50 ms of a cold create, measured)."""
        directory = await self._engine.volume_dir(volume)
        if directory is not None:
            try:
                await anyio.to_thread.run_sync(unpack_install, directory)
                return
            except OSError as exc:
                log.info("agent volume %s: unpacking here failed (%s); copying through Docker", volume, exc)
        await self._engine.put_archive(container_id, AGENT_MOUNT, install_tar())

    async def _install_running(self, rec: SandboxRecord, python: str) -> None:
        """Install the agent's code into a running sandbox that lacks this version (a sandbox of an
        older Corral). Files copied in from outside may stay invisible to a running gVisor
        sandbox, so root inside it unpacks them; root there has no capabilities, and sandbox code
        can neither write where it works nor reach its environment."""
        assert rec.container_id is not None
        done = await self._engine.exec_collect(rec.container_id, install_argv(python=python), user="0:0", workdir="/")
        if done.exit_code != 0:
            detail = done.stderr.decode(errors="replace").strip()[-500:]
            raise AgentFailure(f"sandbox {rec.id}: could not install the agent ({detail})", kind="unavailable")

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
        known = self._python.get(rec.image)
        pythons = [known] if known else list(PYTHONS)
        installed = False
        failure: Exception | None = None
        while pythons:
            python = pythons[0]
            stream = await self._engine.open_exec_stream(
                rec.container_id, installed_argv("relay", python=python), user=SANDBOX_USER, workdir=WORKDIR
            )
            channel = AgentChannel(stream)
            await channel.start(self._tg)
            try:
                with anyio.fail_after(HELLO_TIMEOUT):
                    hello = check_reply("hello", await channel.request("hello", {}))
            except (AgentChannelError, TimeoutError, AgentFailure) as exc:
                await channel.aclose()
                failure = exc
                code = await self._exit_code(stream.exec_id)
                if code in _NO_PROGRAM:
                    pythons.pop(0)  # no such python here: try the next one
                    continue
                if not installed and code is not None:
                    # The agent's code is not there (a sandbox of an older Corral, or another version).
                    installed = True
                    await self._install_running(rec, python)
                    continue
                raise AgentFailure(
                    f"sandbox {rec.id}: the in-sandbox agent did not start ({exc})", kind="unavailable"
                ) from exc
            self._python[rec.image] = python
            if hello["version"] != AGENT_VERSION and not installed:
                # A daemon of another Corral still runs there: ours replaces it once installed.
                log.info("sandbox %s: replacing agent %s with %s", rec.id, hello["version"], AGENT_VERSION)
                await channel.aclose()
                installed = True
                await self._install_running(rec, python)
                continue
            if hello["started"] is not None:
                self.agent_started[rec.id] = hello["started"]
            return channel, stream.exec_id
        raise AgentFailure(
            f"sandbox {rec.id}: image {rec.image!r} has no python3 at {' or '.join(PYTHONS)}, which Corral's "
            "in-sandbox agent needs (Python >= 3.8). Use an image with python3, such as the default one.",
            kind="no_python",
        ) from failure

    async def _exit_code(self, exec_id: str) -> int | None:
        """The exit code of a finished exec; Docker may record it a moment after the stream ends."""
        for _ in range(20):
            try:
                code = await self._engine.exec_exit_code(exec_id)
            except CorralError:
                return None
            if code is not None:
                return code
            await anyio.sleep(0.1)
        return None

    async def request(
        self,
        rec: SandboxRecord,
        op: str,
        params: dict[str, Any],
        *,
        timeout: float | None = None,
        on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Send a request and return its validated reply. Big payloads cross as files where they
        can (service/inbox.py); whenever that fails, on the stream."""
        staged = await self._stage(rec, params)
        if staged is not None:
            inline = {k: v for k, v in params.items() if k != "bytes"}
            try:
                return await self._request(rec, op, {**inline, "staged": staged.name}, timeout, on_event)
            except AgentRefused as exc:
                if exc.field != "staged":
                    raise
                self.staging.give_up(rec, "in", exc)
            finally:
                staged.remove()
        outbox = await self.staging.directory(rec, "out") if op in _OUTBOX_OPS else None
        if outbox is not None:
            try:
                named = {**params, "outbox": secrets.token_hex(16)}
                return await self._request(rec, op, named, timeout, on_event, outbox=outbox)
            except StagingFailed as exc:
                self.staging.give_up(rec, "out", exc)
        return await self._request(rec, op, params, timeout, on_event)

    async def _stage(self, rec: SandboxRecord, params: dict[str, Any]) -> Staged | None:
        data = params.get("bytes")
        if not isinstance(data, bytes) or len(data) < STAGE_MIN:
            return None
        directory = await self.staging.directory(rec, "in")
        if directory is None:
            return None
        try:
            staged = await anyio.to_thread.run_sync(stage, directory, data)
        except OSError as exc:
            self.staging.give_up(rec, "in", exc)
            return None
        self.staging.staged += 1
        return staged

    async def _collect(self, reply: dict[str, Any], name: str, outbox: str) -> dict[str, Any]:
        size = reply.pop("outbox")
        if type(size) is not int:
            raise StagingFailed(f"the agent announced {size!r} staged bytes")
        try:
            data = await anyio.to_thread.run_sync(collect, outbox, name, size, MAX_STAGED)
        except (OSError, ValueError) as exc:
            raise StagingFailed(str(exc)) from exc
        self.staging.staged += 1
        return {**reply, "bytes": data}

    async def _request(
        self,
        rec: SandboxRecord,
        op: str,
        params: dict[str, Any],
        timeout: float | None,
        on_event: Callable[[dict[str, Any]], Awaitable[None]] | None,
        *,
        outbox: str | None = None,
    ) -> dict[str, Any]:
        """Send a request and return its validated reply (its bytes collected from `outbox` when
        the agent left them there). A broken channel is dropped (the next call
        reconnects to the same daemon, which keeps its state); read-only requests are retried on the
        new channel; a sandbox that stopped under the request is reported as such."""
        for attempt in range(2):
            channel = await self.get(rec)
            try:
                reply = await channel.request(op, params, timeout=timeout, on_event=on_event)
            except AgentError as exc:
                raise translate(exc) from exc
            except AgentChannelError as exc:
                await self.drop(rec.id)
                crashed = await self._crash(rec, op)
                if crashed is not None:
                    raise crashed from exc
                if attempt == 1 or op not in _IDEMPOTENT_OPS:
                    raise AgentFailure(
                        f"sandbox {rec.id}: lost contact with the in-sandbox agent during {op} ({exc}); "
                        "the sandbox is reconnected on the next call, but the outcome of this one is unknown",
                        kind="disconnected",
                    ) from exc
                log.info("sandbox %s: agent channel failed (%s); reconnecting", rec.id, exc)
                continue
            if outbox is not None and "outbox" in reply:
                reply = await self._collect(dict(reply), params["outbox"], outbox)
            return check_reply(op, reply)
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

    async def _crash(self, rec: SandboxRecord, op: str) -> SandboxCrashed | None:
        """The sandbox's crash as an error, if its container stopped; None while it runs."""
        if rec.container_id is None:
            return None
        info = None
        for attempt in range(8):
            try:
                info = await self._engine.inspect(rec.container_id)
            except CorralError:
                return None
            if info is None:
                return None  # removed: the next call reports it lost
            # Docker may record the stop a moment after the stream broke, and the out-of-memory
            # flag a moment after the stop.
            if not info.running and (info.oom_killed or info.exit_code != 137 or attempt >= 5):
                return crash_error(rec, op, info)
            if info.running and attempt >= 3:
                return None
            await anyio.sleep(0.5)
        return crash_error(rec, op, info) if info is not None and not info.running else None

    async def drop(self, sandbox_id: str) -> None:
        self.staging.forget(sandbox_id)
        connecting = self._connecting.pop(sandbox_id, None)
        if connecting is not None:
            connecting.cancel()
        self._exec_ids.pop(sandbox_id, None)
        channel = self._channels.pop(sandbox_id, None)
        if channel is not None:
            with anyio.CancelScope(shield=True):
                await channel.aclose()

    async def close_all(self) -> None:
        for sandbox_id in list(self._channels):
            await self.drop(sandbox_id)
