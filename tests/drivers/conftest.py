"""Harness for the interpreter drivers: spawns one with the daemon's fd layout and talks to it.

Layout (docs/agent-protocol.md, "Interpreter drivers"): stdin /dev/null, stdout/stderr pipes,
control requests on fd 3, replies on fd 4, own session. Every wait has a deadline; nothing sleeps.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DRIVERS = Path(__file__).resolve().parents[2] / "corral" / "agent" / "drivers"
# Run the Python-based drivers under another interpreter (e.g. a 3.8) to check compatibility.
DRIVER_PYTHON = os.environ.get("CORRAL_DRIVER_PYTHON", sys.executable)
DEADLINE = 20.0
# The driver must see the pipes as exactly fds 3 and 4: a tiny trampoline renumbers, then execs.
RENUMBER_FDS = """
import fcntl, os, sys
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
for fd in sys.argv[1:3]:
    os.close(int(fd))
for target, fd in zip((3, 4), high):
    os.dup2(fd, target)
    os.close(fd)
os.execvp(sys.argv[3], sys.argv[3:])
"""


@functools.cache
def driver_python_has(module: str) -> bool:
    """Whether the interpreter that runs the Python drivers can import module."""
    probe = subprocess.run([DRIVER_PYTHON, "-c", f"import {module}"], capture_output=True, timeout=60)
    return probe.returncode == 0


class OutputPipe:
    """Drains one pipe on a thread so the driver never blocks on a full pipe."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._data = bytearray()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while chunk := self._file.read(65536):
            with self._cond:
                self._data += chunk
                self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return self._data.decode("utf-8", "replace")

    def size(self) -> int:
        with self._cond:
            return len(self._data)

    def wait_size(self, size: int, timeout: float = DEADLINE) -> int:
        """The size once at least `size` bytes arrived (the reader thread may trail the reply)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._data) >= size, timeout)
            return len(self._data)

    def take(self) -> str:
        """Everything so far, and start afresh."""
        with self._cond:
            text = self._data.decode("utf-8", "replace")
            self._data.clear()
            return text

    def wait_for(self, needle: str, timeout: float = DEADLINE) -> str:
        with self._cond:
            found = self._cond.wait_for(lambda: needle.encode() in self._data, timeout)
            text = self._data.decode("utf-8", "replace")
        assert found, f"{needle!r} never appeared; got {text[-2000:]!r}"
        return text

    def close(self) -> None:
        self._thread.join(timeout=5)
        self._file.close()


class Driver:
    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        request_r, self._request_w = os.pipe()
        self._reply_r, reply_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RENUMBER_FDS, str(request_r), str(reply_w), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(request_r, reply_w),
            start_new_session=True,
            cwd=cwd,
        )
        os.close(request_r)
        os.close(reply_w)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout = OutputPipe(os.dup(self.proc.stdout.fileno()))
        self.stderr = OutputPipe(os.dup(self.proc.stderr.fileno()))
        self.proc.stdout.close()
        self.proc.stderr.close()
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_replies, daemon=True)
        self._reader.start()
        self._next_id = 0
        self.ready = self.reply()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_replies(self) -> None:
        with os.fdopen(self._reply_r, "rb") as replies:
            for line in replies:
                self._replies.put(json.loads(line))
        self._replies.put(None)

    def send(self, code: str, **fields: Any) -> int:
        self._next_id += 1
        self.send_raw(json.dumps({"id": self._next_id, "code": code, **fields}) + "\n")
        return self._next_id

    def send_raw(self, text: str) -> None:
        os.write(self._request_w, text.encode())

    def reply(self, timeout: float = DEADLINE) -> dict[str, Any]:
        try:
            message = self._replies.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no reply within {timeout}s; stderr: {self.stderr.text()[-2000:]!r}")
        assert message is not None, f"driver closed fd 4; stderr: {self.stderr.text()[-2000:]!r}"
        return message

    def run(self, code: str, timeout: float = DEADLINE, **fields: Any) -> dict[str, Any]:
        request_id = self.send(code, **fields)
        message = self.reply(timeout)
        assert message["id"] == request_id
        return message

    def interrupt(self) -> None:
        os.kill(self.pid, signal.SIGINT)

    def close(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        os.close(self._request_w)
        self._reader.join(timeout=5)
        self.stdout.close()
        self.stderr.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    drivers: list[Driver] = []

    def start(language: str) -> Driver:
        argv = {
            "python": [DRIVER_PYTHON, str(DRIVERS / "python_driver.py")],
            "javascript": ["node", str(DRIVERS / "node_driver.js")],
            "typescript": ["node", str(DRIVERS / "node_driver.js"), "typescript"],
            "bash": [DRIVER_PYTHON, str(DRIVERS / "bash_driver.py")],
        }[language]
        driver = Driver(argv, cwd=tmp_path)
        drivers.append(driver)
        assert driver.ready == {"ready": True, "pid": driver.pid, "language": language}
        return driver

    yield start
    for driver in drivers:
        driver.close()


@pytest.fixture
def py(spawn: Callable[..., Driver]) -> Driver:
    return spawn("python")


@pytest.fixture
def js(spawn: Callable[..., Driver]) -> Driver:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    return spawn("javascript")


@functools.cache
def node_has_typescript() -> bool:
    if shutil.which("node") is None:
        return False
    probe = subprocess.run(["node", "-e", "require.resolve('typescript')"], capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.fixture
def ts(spawn: Callable[..., Driver]) -> Driver:
    if not node_has_typescript():
        pytest.skip("the host's node has no 'typescript' package (the Docker tier runs TypeScript in the image)")
    return spawn("typescript")


@pytest.fixture
def sh(spawn: Callable[..., Driver]) -> Driver:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    return spawn("bash")
