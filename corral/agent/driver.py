"""One interpreter driver process: its control pipe (fd 3), reply pipe (fd 4) and output pipes.

The driver interface is specified in docs/agent-protocol.md ("Interpreter drivers"); the
drivers themselves are the files in drivers/. A Driver reports to its owner (a Context) from
its own threads: output, replies, and its exit.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time

from .errors import Failure
from .spawn import kill_group, spawn
from .util import log, start_thread

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any, Protocol

    class DriverOwner(Protocol):
        def driver_output(self, driver: Driver, stream: str, data: bytes) -> None: ...
        def driver_reply(self, driver: Driver, message: dict[str, Any]) -> None: ...
        def driver_event(self, driver: Driver) -> None: ...

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_DRIVER_LINE = 48 * 1024 * 1024
_SPAWN_LOCK = threading.Lock()  # driver spawns briefly create inheritable fds


def drivers_dir() -> str:
    # Tests substitute fake drivers; production always uses the bundled ones.
    return os.environ.get("CORRAL_AGENT_DRIVERS") or os.path.join(HERE, "drivers")


def driver_argv(language: str) -> list[str]:
    directory = drivers_dir()
    if language in ("javascript", "typescript"):
        import shutil

        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise Failure("not_found", f"{language} needs node, which is not installed in this sandbox")
        interpreter, script, extra = node, "node_driver.js", [language]
    else:
        interpreter, script, extra = sys.executable, f"{language}_driver.py", []
    path = os.path.join(directory, script)
    if not os.path.isfile(path):
        raise Failure("not_found", f"{language} driver is missing: {path}")
    return [interpreter, path, *extra]


def dup_high(fd: int) -> int:
    # Above 4, so the child's dup2 onto 3 and 4 cannot clobber the other source descriptor.
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def reserve_low_fds() -> None:
    """Occupy fds 3 and 4 for good, so no pipe subprocess uses internally can land there."""
    while True:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd > 4:
            os.close(fd)
            return


class Driver:
    """A driver process with its control pipe (fd 3), reply pipe (fd 4) and output pipes."""

    def __init__(self, language: str, argv: list[str], cwd: str | None, env: dict[str, str],
                 owner: DriverOwner) -> None:
        self.language = language
        self._owner = owner
        self.ready = threading.Event()
        self.exited = threading.Event()
        self.drained = threading.Event()
        self.deliberate = False  # killed on purpose (restart/close), not crashed
        self.stderr_head = bytearray()
        ctl_read, ctl_write = os.pipe()
        reply_read, reply_write = os.pipe()
        with _SPAWN_LOCK:
            try:
                child_ctl = dup_high(ctl_read)
                child_reply = dup_high(reply_write)
            finally:
                os.close(ctl_read)
                os.close(reply_write)

            def child_setup() -> None:
                os.dup2(child_ctl, 3)
                os.dup2(child_reply, 4)

            try:
                self.proc = spawn(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    # Everything the daemon opens is close-on-exec, so only 0-4 reach the driver.
                    close_fds=False,
                    preexec_fn=child_setup,
                )
            except BaseException:
                os.close(ctl_write)
                os.close(reply_read)
                raise
            finally:
                os.close(child_ctl)
                os.close(child_reply)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._stdout = self.proc.stdout
        self._stderr = self.proc.stderr
        self.pid = self.proc.pid
        self._ctl: int | None = ctl_write
        self._ctl_lock = threading.Lock()
        self._reply = reply_read
        os.set_blocking(ctl_write, False)

    def start_threads(self) -> None:
        start_thread(self._io_loop, name=f"driver-io-{self.pid}")
        start_thread(self._reap, name=f"driver-reap-{self.pid}")

    def alive(self) -> bool:
        return not self.exited.is_set()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready.is_set() and self.alive():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.ready.wait(min(remaining, 0.05))
        return self.ready.is_set() and self.alive()

    def send(self, message: dict[str, Any], deadline: float) -> bool:
        data = (json.dumps(message) + "\n").encode("utf-8", "backslashreplace")
        with self._ctl_lock:
            if self._ctl is None:
                return False
            view = memoryview(data)
            with selectors.DefaultSelector() as sel:
                sel.register(self._ctl, selectors.EVENT_WRITE)
                while view:
                    try:
                        view = view[os.write(self._ctl, view[:65536]) :]
                        continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        return False
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self.alive():
                        return False
                    sel.select(min(remaining, 0.25))
        return True

    def interrupt(self) -> None:
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGINT)
            except OSError:
                pass

    def kill(self) -> None:
        kill_group(self.pid)
        self._close_ctl()

    def _close_ctl(self) -> None:
        with self._ctl_lock:
            if self._ctl is not None:
                os.close(self._ctl)
                self._ctl = None

    def _reap(self) -> None:
        self.proc.wait()
        self.exited.set()
        self._close_ctl()
        self._owner.driver_event(self)

    def _io_loop(self) -> None:
        fds = {self._stdout.fileno(): "stdout", self._stderr.fileno(): "stderr", self._reply: "reply"}
        lines = bytearray()
        sel = selectors.DefaultSelector()
        try:
            for fd, name in fds.items():
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ, name)
            while sel.get_map():
                for key, _ in sel.select():
                    if key.fd not in sel.get_map():
                        continue
                    if key.data == "reply":
                        self._read_replies(sel, key.fd, lines)
                    else:
                        self._read_output(sel, key.fd, key.data)
        except Exception:
            import traceback

            log(f"driver {self.pid} I/O loop failed:\n{traceback.format_exc()}")
            kill_group(self.pid)
        finally:
            sel.close()
            self._stdout.close()
            self._stderr.close()
            os.close(self._reply)
            self.drained.set()

    def _read_output(self, sel: selectors.BaseSelector, fd: int, stream: str) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            sel.unregister(fd)
            return
        if stream == "stderr" and len(self.stderr_head) < 8192:
            self.stderr_head += data[: 8192 - len(self.stderr_head)]
        self._owner.driver_output(self, stream, data)

    def _drain_outputs(self, sel: selectors.BaseSelector) -> None:
        # A reply is written after the driver flushed its output, so everything belonging to the
        # run is already in the pipes: take it before handing over the reply.
        for key in list(sel.get_map().values()):
            fd = key.fd
            while key.data != "reply" and fd in sel.get_map():
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    sel.unregister(fd)
                    break
                self._owner.driver_output(self, key.data, data)

    def _read_replies(self, sel: selectors.BaseSelector, fd: int, lines: bytearray) -> None:
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            sel.unregister(fd)
            return
        lines += data
        while True:
            end = lines.find(b"\n")
            if end < 0:
                break
            line = bytes(lines[:end])
            del lines[: end + 1]
            self._handle_line(sel, line)
        if len(lines) > MAX_DRIVER_LINE:
            log(f"driver {self.pid} sent an over-long line; killing it")
            sel.unregister(fd)
            kill_group(self.pid)

    def _handle_line(self, sel: selectors.BaseSelector, line: bytes) -> None:
        try:
            message = json.loads(line.decode("utf-8", "replace"))
        except ValueError:
            log(f"driver {self.pid} sent a line that is not JSON: {line[:200]!r}")
            return
        if not isinstance(message, dict):
            return
        if message.get("ready") is True:
            self.ready.set()
            return
        self._drain_outputs(sel)
        self._owner.driver_reply(self, message)
