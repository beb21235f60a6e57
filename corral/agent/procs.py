"""Background processes: spool directories and the proc-waiter that runs each command.

Each process lives in its own spool directory `<data dir>/procs/<id>/` (on the sandbox's disk, so
processes started before a restart or an out-of-memory stop can still be read):
  spec.json   command, cwd, env overrides, start time (written by the daemon)
  pid.json    pid + start ticks of the command and of its waiter (written by the waiter)
  output.log  combined stdout+stderr (O_APPEND, so offsets are stable)
  stdin       FIFO; the waiter holds a write end open until proc_input {eof}
  exit.json   exit code, written by the waiter once the command has been reaped
Everything needed to answer proc_* lives on disk, so a restarted daemon picks them up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from .bundle import launch_argv
from .errors import Failure, bad_request, os_failure
from .params import NAME_RE, short
from .spawn import default_shell, kill_group, merged_env, spawn
from .util import (
    ensure_private_dir,
    read_json,
    read_line,
    start_thread,
    tail_of_file,
    token,
    write_all,
    write_json_atomic,
)

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

WAITER_START_TIMEOUT = 30.0


def proc_stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (OSError, ValueError):
        return None
    return text[text.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks, to tell it apart from a later reuse of its pid."""
    fields = proc_stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def pid_alive(pid: object, ticks: object) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    fields = proc_stat_fields(pid)
    if fields is None:
        if os.path.isdir("/proc/self"):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    if fields[0] in ("Z", "X"):
        return False
    return ticks is None or start_ticks(pid) in (None, ticks)


class ProcStore:
    """Spools in `directory`; `older` directories (where an earlier agent kept them) are still
    read, so processes started before an upgrade keep answering."""

    def __init__(self, directory: str, older: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.dirs = (directory, *(d for d in older if d != directory))

    def path(self, proc_id: str, *parts: str) -> str:
        for directory in self.dirs[1:]:
            if os.path.isdir(os.path.join(directory, proc_id)):
                return os.path.join(directory, proc_id, *parts)
        return os.path.join(self.dir, proc_id, *parts)

    def existing(self, proc_id: str) -> str:
        if not NAME_RE.match(proc_id) or proc_id.startswith("."):
            raise bad_request(f"invalid proc_id {short(proc_id)}")
        directory = self.path(proc_id)
        if not os.path.isfile(os.path.join(directory, "spec.json")):
            raise Failure("not_found", f"no background process {proc_id}")
        return directory

    def state(self, proc_id: str) -> dict[str, Any]:
        directory = self.path(proc_id)
        spec = read_json(os.path.join(directory, "spec.json")) or {}
        pids = read_json(os.path.join(directory, "pid.json")) or {}
        ended = read_json(os.path.join(directory, "exit.json"))
        pid = pids.get("pid")
        waiter = (pids.get("waiter_pid"), pids.get("waiter_ticks"))
        # Until exit.json exists a live waiter means "still running": between the command's exit
        # and the waiter recording it, the exit code is not known yet.
        running = ended is None and (pid_alive(pid, pids.get("ticks")) or pid_alive(*waiter))
        return {
            "proc_id": proc_id,
            "pid": pid,
            "command": spec.get("command"),
            "cwd": spec.get("cwd"),
            "running": running,
            "exit_code": ended.get("exit_code") if ended else None,
            "started": spec.get("started"),
            "ended": ended.get("ended") if ended else None,
            "_waiter": waiter,
        }

    def list(self) -> list[dict[str, Any]]:
        names: set[str] = set()
        for directory in self.dirs:
            try:
                names.update(os.listdir(directory))
            except OSError:
                pass
        procs = []
        for name in names:
            if NAME_RE.match(name) and os.path.isfile(self.path(name, "spec.json")):
                state = self.state(name)
                state.pop("_waiter")
                procs.append(state)
        procs.sort(key=lambda item: (item.get("started") or 0, item["proc_id"]))
        return procs

    def start(self, command: str, cwd: str, env: dict[str, str] | None) -> dict[str, Any]:
        ensure_private_dir(os.path.dirname(self.dir))
        ensure_private_dir(self.dir)
        while True:
            proc_id = "p" + token(5)
            try:
                os.mkdir(os.path.join(self.dir, proc_id), 0o700)
                break
            except FileExistsError:
                continue
        directory = os.path.join(self.dir, proc_id)
        spec = {"command": command, "cwd": cwd, "env": env or {}, "started": time.time()}
        write_json_atomic(os.path.join(directory, "spec.json"), spec)
        with open(os.path.join(directory, "waiter.log"), "ab") as waiter_log:
            waiter = spawn(
                launch_argv("proc-waiter", directory),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=waiter_log,
                start_new_session=True,  # outlives the daemon and its process group
            )
        assert waiter.stdout is not None
        start_thread(waiter.wait, name="proc-reaper")
        line = read_line(waiter.stdout, WAITER_START_TIMEOUT)
        waiter.stdout.close()
        try:
            reply = json.loads(line.decode("utf-8")) if line else None
        except ValueError:
            reply = None
        if isinstance(reply, dict) and type(reply.get("pid")) is int:
            return {"proc_id": proc_id, "pid": reply["pid"]}
        detail = tail_of_file(os.path.join(directory, "waiter.log"), 2000)
        kill_group(waiter.pid)
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
            error = reply["error"]
            raise Failure(str(error.get("type", "internal")), str(error.get("message", "")))
        raise Failure("internal", "background process did not start: %s" % (detail or "no details"))


def proc_waiter_main(directory: str) -> int:
    """Run one background command and record its exit code; detached from the daemon."""
    stdin_holder: list[int | None] = [None]

    def close_stdin(signum: int, frame: object) -> None:
        fd, stdin_holder[0] = stdin_holder[0], None
        if fd is not None:
            os.close(fd)

    signal.signal(signal.SIGUSR1, close_stdin)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    spec = read_json(os.path.join(directory, "spec.json")) or {}
    fifo = os.path.join(directory, "stdin")
    os.mkfifo(fifo, 0o600)
    # O_RDWR never blocks on a FIFO and keeps a writer present, so the command sees EOF only
    # once we drop it; the read end then opens without blocking.
    stdin_holder[0] = os.open(fifo, os.O_RDWR)
    stdin_fd = os.open(fifo, os.O_RDONLY)
    output_fd = os.open(os.path.join(directory, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        child = subprocess.Popen(
            [default_shell(), "-c", str(spec.get("command", ""))],
            stdin=stdin_fd,
            stdout=output_fd,
            stderr=output_fd,
            cwd=spec.get("cwd") or None,
            env=merged_env(spec.get("env")),
            start_new_session=True,
            preexec_fn=reset_signals,  # SIG_IGN would survive exec; the waiter is single-threaded
        )
    except OSError as exc:
        failure = os_failure(exc)
        emit_line({"error": {"type": failure.kind, "message": failure.message}})
        return 1
    pids = {"pid": child.pid, "ticks": start_ticks(child.pid),
            "waiter_pid": os.getpid(), "waiter_ticks": start_ticks(os.getpid())}
    write_json_atomic(os.path.join(directory, "pid.json"), pids)
    emit_line({"pid": child.pid})
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.close(devnull)
    os.close(stdin_fd)
    os.close(output_fd)
    code = child.wait()
    write_json_atomic(os.path.join(directory, "exit.json"), {"exit_code": code, "ended": time.time()})
    return 0


def reset_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)


def emit_line(obj: dict[str, Any]) -> None:
    write_all(1, (json.dumps(obj) + "\n").encode("utf-8"))

