"""exec: run a process in its own process group, stream its output, enforce the timeout."""

from __future__ import annotations

import subprocess
import threading
import time

from .capture import DEFAULT_OUTPUT, FLUSH_INTERVAL, MAX_OUTPUT, PIPE_GRACE, Progress, Sink, read_pipe
from .errors import bad_request
from .params import DEFAULT_TIMEOUT, MAX_TIMEOUT, Params
from .rpc import Request, op
from .spawn import check_cwd, default_shell, kill_group, merged_env, spawn
from .state import Agent
from .util import start_thread
from .wire import MAX_FRAME

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import IO, Any


@op("exec", "argv", "shell", "cwd", "env", "stdin_b64", "timeout", "max_output", "stream")
def op_exec(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    argv = p.str_list("argv", None)
    shell = p.string("shell", None, max_len=MAX_FRAME)
    if (argv is None) == (shell is None):
        raise bad_request("exactly one of 'argv' and 'shell' is required")
    if shell is not None and "\0" in shell:
        raise bad_request("'shell' contains a NUL character")
    cwd = p.path("cwd", None)
    env = p.environment("env")
    stdin = p.b64("stdin_b64", None)
    timeout = p.number("timeout", DEFAULT_TIMEOUT, lo=0, hi=MAX_TIMEOUT, lo_exclusive=True)
    max_output = p.integer("max_output", DEFAULT_OUTPUT, lo=0, hi=MAX_OUTPUT)
    stream = p.boolean("stream", True)
    check_cwd(cwd)
    if shell is not None:
        command = [default_shell(), "-c", shell]
    else:
        assert argv is not None  # exactly one of the two, checked above
        command = argv
    return run_process(req, command, cwd, merged_env(env), stdin, timeout, max_output, stream)


def run_process(
    req: Request,
    command: list[str],
    cwd: str | None,
    env: dict[str, str],
    stdin: bytes | None,
    timeout: float,
    max_output: int,
    stream: bool,
) -> dict[str, Any]:
    started = time.monotonic()
    req.check_cancelled()
    proc = spawn(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so a timeout kills the whole tree
    )
    assert proc.stdout is not None and proc.stderr is not None
    sink = Sink(max_output, Progress(req, stream))
    readers = [start_thread(read_pipe, proc.stdout, "stdout", sink, name="exec-stdout"),
               start_thread(read_pipe, proc.stderr, "stderr", sink, name="exec-stderr")]
    if stdin is not None:
        start_thread(feed_stdin, proc.stdin, stdin, name="exec-stdin")
    finished = threading.Event()

    def wait() -> None:
        proc.wait()
        finished.set()

    start_thread(wait, name="exec-wait")
    req.on_cancel(finished.set)

    deadline = started + timeout
    timed_out = False
    while not finished.is_set() or proc.returncode is None:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if req.cancelled.is_set():
            break
        finished.wait(min(FLUSH_INTERVAL, deadline - now))
        sink.progress.maybe_flush()
    if proc.returncode is None:
        kill_group(proc.pid)
        proc.wait()
    grace_end = time.monotonic() + PIPE_GRACE
    for reader in readers:
        reader.join(max(0.0, grace_end - time.monotonic()))
    req.check_cancelled()
    result: dict[str, Any] = dict(sink.fields())
    result.update(
        exit_code=proc.returncode,
        timed_out=timed_out,
        duration=round(time.monotonic() - started, 4),
    )
    return result


def feed_stdin(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
    except OSError:
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass
