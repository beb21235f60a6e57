"""Background processes in a sandbox: start, read output incrementally, send input, signal, list.

The agent runs each command detached from itself, spools its combined stdout+stderr to a file inside
the sandbox and keeps its exit code on disk (docs/agent-protocol.md, proc_*), so processes and their
output outlive both the agent's connection and this server. SQLite maps the short ids the model
sees (p-xxxxxx) to the sandbox and the agent's own proc id, and remembers each process's read
cursor, so `process_output` without `since` continues where the last reply stopped.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from typing import Any

from pydantic import BaseModel, Field

from corral.config import WORKDIR, ExecPolicy
from corral.errors import AgentFailure, AgentRefused, CorralError, InvalidRequest, QuotaExceeded, SandboxNotFound
from corral.sandbox_backend.store import ProcessRecord
from corral.sandbox_backend.store.processes import ProcessTable
from corral.service.access import SandboxAccess
from corral.service.replies import fit
from corral.service.validation import check_env, check_path, check_size

PROCESS_ID_RE = re.compile(r"^p-[0-9a-f]{6}$")
SIGNALS: tuple[str, ...] = ("TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT")
ENDING_SIGNALS = frozenset({"TERM", "KILL", "INT", "HUP", "QUIT"})
MAX_RUNNING = 32  # per sandbox
KEEP_FINISHED = 50  # finished processes remembered per sandbox; older ones are forgotten
MAX_WAIT = 30.0
MAX_INPUT = 1024 * 1024
SIGNAL_SETTLE = 3.0  # how long signal_process waits to report that the process ended
FAR = 1 << 62  # a cursor past any output: proc_output then waits only for the exit


class ProcessInfo(BaseModel):
    id: str = Field(description="Process id (p-xxxxxx) for process_output, send_input, signal_process.")
    sandbox: str
    command: str
    cwd: str | None = None
    pid: int | None = Field(None, description="pid inside the sandbox.")
    running: bool
    exit_code: int | None = Field(None, description="Exit status once ended; negative = killed by that signal number.")
    started_at: float
    ended_at: float | None = None

    @classmethod
    def from_record(cls, rec: ProcessRecord) -> ProcessInfo:
        return cls(
            id=rec.id,
            sandbox=rec.sandbox_id,
            command=rec.command,
            cwd=rec.cwd,
            pid=rec.pid,
            running=rec.running,
            exit_code=rec.exit_code,
            started_at=rec.started_at,
            ended_at=rec.ended_at,
        )


class ProcessOutput(BaseModel):
    id: str
    output: str = Field(description="Combined stdout+stderr since the cursor.")
    next_cursor: int = Field(description="Pass as `since` to get only what comes after this reply.")
    more_bytes: int = Field(
        0, description="Output already waiting beyond this reply (call again for it); 0 = up to date."
    )
    running: bool
    exit_code: int | None = None


class InputSent(BaseModel):
    id: str
    bytes_written: int
    stdin_closed: bool


def _kind(exc: CorralError) -> str | None:
    """The agent's error type ('not_found', 'not_running', ...) of an error it answered with."""
    return exc.kind if isinstance(exc, AgentRefused) else None


def check_process_id(process_id: str) -> str:
    if not isinstance(process_id, str) or not PROCESS_ID_RE.match(process_id.strip()):
        raise InvalidRequest(
            f"invalid process id {str(process_id)[:40]!r}: expected p-xxxxxx as returned by start_process "
            "(list_processes shows them)"
        )
    return process_id.strip()


class Processes:
    """Background processes of the sandboxes; the model's ids map to the agent's in SQLite."""

    def __init__(self, sandboxes: SandboxAccess, table: ProcessTable, policy: ExecPolicy) -> None:
        self._sandboxes = sandboxes
        self._table = table
        self._policy = policy

    async def _record(self, process_id: str) -> ProcessRecord:
        rec = await self._table.get(check_process_id(process_id))
        if rec is not None:
            try:  # a process belongs to its sandbox's tenant: another tenant's is answered as missing
                await self._sandboxes.resolve(rec.sandbox_id)
            except SandboxNotFound:
                rec = None
        if rec is None:
            raise InvalidRequest(
                f"no process with id {process_id!r}; it was never started here, or its sandbox was deleted. "
                "list_processes shows a sandbox's processes"
            )
        return rec

    async def _update(self, rec: ProcessRecord, state: dict[str, Any]) -> ProcessRecord:
        """Store what the agent says about a process (running, exit code) if it changed."""
        running = bool(state.get("running", False))
        code = state.get("exit_code")
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        if running == rec.running and exit_code == rec.exit_code:
            return rec
        ended = state.get("ended")
        ended_at = None if running else (float(ended) if isinstance(ended, int | float) else time.time())
        changes: dict[str, Any] = {"running": running, "exit_code": exit_code, "ended_at": ended_at}
        await self._table.update(rec.id, **changes)
        return rec.with_(**changes)

    async def _mark_gone(self, rec: ProcessRecord) -> ProcessRecord:
        if rec.running:
            return await self._update(rec, {"running": False, "exit_code": rec.exit_code})
        return rec

    async def start_process(
        self,
        ref: str,
        command: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ProcessInfo:
        if not isinstance(command, str) or not command.strip():
            raise InvalidRequest("command is empty; give a shell command such as 'python3 -m http.server 8000'")
        if "\x00" in command:
            raise InvalidRequest("command contains a NUL byte")
        check_size("command", len(command.encode()), self._policy.max_code_bytes)
        sandbox = await self._sandboxes.resolve(ref)
        running = [p for p in await self._table.list(sandbox.id) if p.running]
        if len(running) >= MAX_RUNNING:
            running = [p for p in await self._refresh(sandbox.id) if p.running]
            if len(running) >= MAX_RUNNING:
                raise QuotaExceeded(
                    f"sandbox {sandbox.id} already runs {len(running)} background processes (the limit); stop "
                    "some with signal_process first (list_processes shows them)"
                )
        params: dict[str, Any] = {
            "command": command,
            "cwd": check_path(cwd or WORKDIR),
            "env": check_env(env),
        }
        res = await self._sandboxes.request(sandbox.id, "proc_start", params, timeout=60)
        rec = ProcessRecord(
            id=await self._new_id(),
            sandbox_id=sandbox.id,
            agent_id=res["proc_id"],
            pid=res["pid"],
            command=command,
            cwd=params["cwd"],
            started_at=time.time(),
        )
        await self._table.insert(rec)
        await self._prune(sandbox.id)
        return ProcessInfo.from_record(rec)

    async def _new_id(self) -> str:
        while True:
            candidate = f"p-{secrets.token_hex(3)}"
            if await self._table.get(candidate) is None:
                return candidate

    async def _prune(self, sandbox_id: str) -> None:
        finished = [p for p in await self._table.list(sandbox_id) if not p.running]
        if len(finished) > KEEP_FINISHED:
            await self._table.delete(sandbox_id, [p.id for p in finished[:-KEEP_FINISHED]])

    async def process_output(
        self,
        process_id: str,
        *,
        since: int | None = None,
        wait: float = 0.0,
        max_bytes: int | None = None,
    ) -> ProcessOutput:
        rec = await self._record(process_id)
        cap = self._policy.output_limit
        limit = cap if max_bytes is None else max_bytes
        if not 1 <= limit <= cap:
            raise InvalidRequest(f"max_bytes must be between 1 and {cap} (got {limit})")
        if not 0 <= wait <= MAX_WAIT:
            raise InvalidRequest(f"wait must be between 0 and {MAX_WAIT:g} seconds (got {wait:g})")
        start = rec.cursor if since is None else since
        if start < 0:
            raise InvalidRequest(f"since must be a cursor >= 0 from an earlier reply (got {start})")
        params = {"proc_id": rec.agent_id, "since": start, "max_bytes": limit, "wait": wait}
        try:
            res = await self._sandboxes.request(rec.sandbox_id, "proc_output", params, timeout=wait + 30)
        except CorralError as exc:
            raise await self._explain(rec, exc) from exc
        data = res["data"]
        following = res["next"]
        if following < start or following - start > limit + 4:
            raise AgentFailure(f"process {rec.id}: the sandbox's agent sent a bad output cursor")
        size = res["size"]
        more = max(0, size - following) if size is not None else 0
        rec = await self._update(rec, res)
        if following != rec.cursor:
            await self._table.update(rec.id, cursor=following)
        result = ProcessOutput(
            id=rec.id,
            output=data[: limit * 4],
            next_cursor=following,
            more_bytes=more,
            running=rec.running,
            exit_code=rec.exit_code,
        )
        fit(result, ("output",))
        return result

    async def _explain(self, rec: ProcessRecord, exc: CorralError) -> CorralError:
        """Turn the agent's errors about a process into messages that use the model's process id."""
        kind = _kind(exc)
        if kind == "not_found":
            await self._mark_gone(rec)
            return InvalidRequest(
                f"process {rec.id} no longer exists in sandbox {rec.sandbox_id} (its spool under /workspace/.corral "
                "was removed); start it again with start_process"
            )
        if kind == "not_running":
            rec = await self._refresh_one(rec)
            code = f" with exit code {rec.exit_code}" if rec.exit_code is not None else ""
            return InvalidRequest(
                f"process {rec.id} is not running (it ended{code}); process_output still returns its output"
            )
        return exc

    async def _refresh_one(self, rec: ProcessRecord) -> ProcessRecord:
        for current in await self._refresh(rec.sandbox_id):
            if current.id == rec.id:
                return current
        return rec

    async def send_input(self, process_id: str, text: str = "", *, eof: bool = False) -> InputSent:
        rec = await self._record(process_id)
        data = (text or "").encode()
        if not data and not eof:
            raise InvalidRequest("nothing to send: give text (include '\\n' to end a line) and/or eof=true")
        check_size("text", len(data), MAX_INPUT)
        params: dict[str, Any] = {"proc_id": rec.agent_id}
        if data:
            params["data_b64"] = base64.b64encode(data).decode()
        if eof:
            params["eof"] = True
        try:
            res = await self._sandboxes.request(rec.sandbox_id, "proc_input", params, timeout=30)
        except CorralError as exc:
            if _kind(exc) == "timeout":
                raise InvalidRequest(
                    f"process {rec.id} is not reading its input fast enough: {exc}. Read its output with "
                    "process_output and try again"
                ) from exc
            raise await self._explain(rec, exc) from exc
        return InputSent(id=rec.id, bytes_written=res["written"], stdin_closed=eof)

    async def signal_process(self, process_id: str, signal: str = "TERM") -> ProcessInfo:
        rec = await self._record(process_id)
        name = signal.upper().removeprefix("SIG") if isinstance(signal, str) else ""
        if name not in SIGNALS:
            raise InvalidRequest(f"unsupported signal {signal!r}; use one of: {', '.join(SIGNALS)}")
        try:
            signal_params = {"proc_id": rec.agent_id, "signal": name}
            await self._sandboxes.request(rec.sandbox_id, "proc_signal", signal_params, timeout=30)
        except CorralError as exc:
            raise await self._explain(rec, exc) from exc
        if name in ENDING_SIGNALS:
            # Give it a moment to end so the reply can say whether it did (proc_output with a cursor past
            # any output returns as soon as the process is gone, or after `wait`).
            params = {"proc_id": rec.agent_id, "since": FAR, "max_bytes": 1, "wait": SIGNAL_SETTLE}
            try:
                res = await self._sandboxes.request(rec.sandbox_id, "proc_output", params, timeout=SIGNAL_SETTLE + 30)
            except CorralError:
                return ProcessInfo.from_record(rec)
            rec = await self._update(rec, res)
        return ProcessInfo.from_record(rec)

    async def _refresh(self, sandbox_id: str) -> list[ProcessRecord]:
        """The sandbox's processes, updated from the agent's view of them."""
        records = await self._table.list(sandbox_id)
        if not records:
            return records
        res = await self._sandboxes.request(sandbox_id, "proc_list", {}, timeout=30)
        states = {p["proc_id"]: p for p in res["procs"]}
        updated = []
        for rec in records:
            state = states.get(rec.agent_id)
            updated.append(await (self._update(rec, state) if state is not None else self._mark_gone(rec)))
        return updated

    async def list_processes(self, ref: str) -> list[ProcessInfo]:
        sandbox = await self._sandboxes.resolve(ref)
        return [ProcessInfo.from_record(rec) for rec in await self._refresh(sandbox.id)]

    async def copy_sandbox(self, source_id: str, fork_id: str) -> None:
        """A fork has its source's background processes (their spools and, with its memory, the
        processes themselves): give them ids of its own, cursors kept."""
        for rec in await self._table.list(source_id):
            await self._table.insert(rec.with_(id=await self._new_id(), sandbox_id=fork_id))

    async def tail(self, ref: str, max_bytes: int = 4096) -> list[tuple[ProcessInfo, str | None]]:
        """Each background process of a sandbox with the end of its output (None when it cannot be
        read: the sandbox is not running). Moves no read cursor, writes nothing, starts nothing:
        for the operator's `corral logs` next to a live server."""
        sandbox = await self._sandboxes.resolve(ref)
        result: list[tuple[ProcessInfo, str | None]] = []
        for rec in await self._table.list(sandbox.id):
            text: str | None = None
            if sandbox.status == "running":
                try:
                    params = {"proc_id": rec.agent_id, "since": 0, "max_bytes": 1, "wait": 0}
                    size = (await self._sandboxes.request(sandbox.id, "proc_output", params, timeout=30)).get("size")
                    start = max(0, size - max_bytes) if isinstance(size, int) else 0
                    params = {**params, "since": start, "max_bytes": max_bytes}
                    res = await self._sandboxes.request(sandbox.id, "proc_output", params, timeout=30)
                    text = str(res.get("data", ""))
                except CorralError as exc:
                    text = f"(output not readable: {exc})"
            result.append((ProcessInfo.from_record(rec), text))
        return result

    async def forget_sandbox(self, sandbox_id: str) -> None:
        """Drop the process records of a deleted sandbox (its processes died with its container)."""
        await self._table.delete(sandbox_id)
