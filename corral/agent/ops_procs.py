"""proc_start, proc_output, proc_input, proc_signal, proc_list: background processes (procs.py)."""

from __future__ import annotations

import errno
import os
import selectors
import signal
import time

from .capture import DEFAULT_OUTPUT
from .errors import Failure, bad_request, os_failure
from .params import Params
from .procs import pid_alive
from .rpc import Request, op
from .spawn import check_cwd
from .state import Agent

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

STDIN_WRITE_TIMEOUT = 10.0
MAX_PROC_WAIT = 60.0
MAX_PROC_READ = 4 * 1024 * 1024


@op("proc_start", "command", "cwd", "env")
def op_proc_start(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    command = p.string("command", max_len=1 << 20)
    if "\0" in command:
        raise bad_request("'command' contains a NUL character")
    cwd = p.path("cwd", None)
    env = p.environment("env")
    check_cwd(cwd)
    return agent.procs.start(command, os.path.abspath(cwd) if cwd else os.getcwd(), env)


@op("proc_output", "proc_id", "since", "max_bytes", "wait")
def op_proc_output(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    proc_id = p.string("proc_id", max_len=64)
    since = p.integer("since", 0, lo=0, hi=1 << 62)
    max_bytes = p.integer("max_bytes", DEFAULT_OUTPUT, lo=1, hi=MAX_PROC_READ)
    wait = p.number("wait", 0.0, lo=0, hi=MAX_PROC_WAIT)
    directory = agent.procs.existing(proc_id)
    log_path = os.path.join(directory, "output.log")
    deadline = time.monotonic() + wait
    while True:
        state = agent.procs.state(proc_id)
        size = file_size(log_path)
        if size > since or not state["running"] or time.monotonic() >= deadline:
            break
        if req.cancelled.wait(0.1):
            req.check_cancelled()
    data = b""
    if size > since:
        try:
            with open(log_path, "rb") as f:
                f.seek(since)
                data = f.read(max_bytes)
        except OSError as exc:
            raise os_failure(exc, log_path) from None
        more_may_follow = state["running"] or since + len(data) < size
        cut = utf8_safe_end(data)
        if more_may_follow and cut > 0:
            data = data[:cut]
    following = since + len(data)
    return {
        "data": data.decode("utf-8", "replace"),
        "next": following,
        "size": max(size, following),
        "eof": not state["running"] and following >= file_size(log_path),
        "running": state["running"],
        "exit_code": state["exit_code"],
    }


def utf8_safe_end(data: bytes) -> int:
    """Length of `data` without a trailing incomplete UTF-8 sequence (so polls never split one)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte or ASCII
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0x6 else 3 if byte >> 4 == 0xE else 4
            return len(data) - back if need > back and byte >= 0xC0 else len(data)
    return len(data)


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@op("proc_input", "proc_id", "data_b64", "eof")
def op_proc_input(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    proc_id = p.string("proc_id", max_len=64)
    data = p.b64("data_b64", None)
    eof = p.boolean("eof", False)
    if data is None and not eof:
        raise bad_request("one of 'data_b64' and 'eof' is required")
    directory = agent.procs.existing(proc_id)
    state = agent.procs.state(proc_id)
    if not state["running"]:
        raise Failure("not_running", f"background process {proc_id} is not running")
    written = 0
    if data:
        written = write_fifo(req, os.path.join(directory, "stdin"), data, proc_id)
    if eof:
        waiter_pid, waiter_ticks = state["_waiter"]
        if pid_alive(waiter_pid, waiter_ticks):
            os.kill(waiter_pid, signal.SIGUSR1)  # the waiter closes its end of the stdin FIFO
    return {"written": written}


def write_fifo(req: Request, path: str, data: bytes, proc_id: str) -> int:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            raise Failure("not_running", f"background process {proc_id} no longer reads its stdin") from None
        raise os_failure(exc, path) from None
    written = 0
    deadline = time.monotonic() + STDIN_WRITE_TIMEOUT
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while written < len(data):
                try:
                    written += os.write(fd, data[written : written + 65536])
                    continue
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    raise Failure("not_running", f"background process {proc_id} closed its stdin") from None
                remaining = deadline - time.monotonic()
                req.check_cancelled()
                if remaining <= 0:
                    message = "stdin of %s is not being read; wrote %d of %d bytes"
                    raise Failure("timeout", message % (proc_id, written, len(data)))
                sel.select(min(remaining, 0.5))
    finally:
        os.close(fd)
    return written


@op("proc_signal", "proc_id", "signal")
def op_proc_signal(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    proc_id = p.string("proc_id", max_len=64)
    sig = p.signal_number("signal", "TERM")
    agent.procs.existing(proc_id)
    state = agent.procs.state(proc_id)
    if not state["running"]:
        raise Failure("not_running", f"background process {proc_id} is not running")
    try:
        os.killpg(state["pid"], sig)  # the command leads its own session: signal all of it
    except ProcessLookupError:
        raise Failure("not_running", f"background process {proc_id} is not running") from None
    except PermissionError:
        raise Failure("permission", f"not allowed to signal background process {proc_id}") from None
    return {}


@op("proc_list")
def op_proc_list(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    return {"procs": agent.procs.list()}
