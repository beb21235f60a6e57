"""Moving a connection's bytes in the kernel once the proxy has decided about it.

The proxy's event loop is the MCP server's: copying every chunk of every download through it
would cost the server's latency and the download's throughput (measured: a Python relay added
1-3 ms to a 1 MiB GET from a sandbox). So after the head of a connection is handled, its sockets
leave asyncio and each direction runs on a thread of its own: `splice(2)` through a pipe on Linux
(no copy into Python at all), a plain recv/send loop elsewhere. Cutting a relay shuts its sockets
down, which ends the threads' blocking calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Sequence
from typing import cast

PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, spelled out for Pythons that lack the name
CHUNK = 256 * 1024
SPLICE = hasattr(os, "splice")

log = logging.getLogger(__name__)


def transport_of(writer: asyncio.StreamWriter) -> asyncio.Transport:
    """The full transport behind a writer (StreamWriter types it as write-only)."""
    return cast(asyncio.Transport, writer.transport)


async def detach(writer: asyncio.StreamWriter) -> socket.socket:
    """Take the socket out of its asyncio transport (after what was written there is sent) as a
    blocking socket of our own."""
    transport = transport_of(writer)
    transport.pause_reading()
    for _ in range(1000):  # what the transport still holds is sent first
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.005)
    raw = transport.get_extra_info("socket")
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    sock.setblocking(True)
    transport.abort()
    return sock


def _splice(src: socket.socket, dst: socket.socket) -> None:
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
        while True:
            moved = os.splice(src.fileno(), write_end, PIPE_SIZE, flags=os.SPLICE_F_MOVE)
            if moved == 0:
                return
            while moved:
                moved -= os.splice(read_end, dst.fileno(), moved, flags=os.SPLICE_F_MOVE)
    finally:
        os.close(read_end)
        os.close(write_end)


def _copy(src: socket.socket, dst: socket.socket) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := src.recv_into(buf):
        dst.sendall(view[:n])


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        if SPLICE:
            try:
                _splice(src, dst)
                return
            except OSError as exc:
                if exc.errno not in (22, 95):  # EINVAL / EOPNOTSUPP: this pair cannot splice
                    return
        _copy(src, dst)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Workers:
    """Threads that run pumps: as many as there are pumps at once (a pump may last for hours, so
    a bounded pool could starve new connections), kept idle for a while for the next ones, and
    started without making the event loop wait for them (Thread.start would)."""

    IDLE = 60.0

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[object, ...]]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    @property
    def idle(self) -> int:
        """Threads waiting for a job."""
        with self._lock:
            return self._idle

    def submit(self, fn: Callable[..., None], *args: object) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put((fn, args))
        if spawn:
            threading.Thread(target=self._work, name="corral-egress-pump", daemon=True).start()

    def _work(self) -> None:
        # `_idle` counts threads that will take the next job; a thread that left while counted
        # would strand every job given to it. So a job's failure never ends its thread.
        while True:
            try:
                fn, args = self._jobs.get(timeout=self.IDLE)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._jobs.empty():
                        self._idle -= 1
                        return
                continue
            try:
                fn(*args)
            except Exception:
                log.exception("egress relay: a pump failed")
            with self._lock:
                self._idle += 1


_WORKERS = Workers()


class Relay:
    """Directions (src, dst) between connected sockets, each on its own thread."""

    def __init__(
        self, directions: Sequence[tuple[socket.socket, socket.socket]], workers: Workers | None = None
    ) -> None:
        self._workers = workers or _WORKERS
        self._directions = directions
        self._sockets = {id(s): s for pair in directions for s in pair}
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._left = len(directions)
        self._lock = threading.Lock()

    def start(self) -> None:
        for src, dst in self._directions:
            self._workers.submit(self._run, src, dst)

    def _run(self, src: socket.socket, dst: socket.socket) -> None:
        _pump(src, dst)
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            # The loop may be gone (a server shutting down does not wait for its relays).
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def cut(self) -> None:
        for sock in self._sockets.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def wait(self) -> None:
        try:
            await asyncio.shield(self._done)
        finally:
            if not self._done.done():
                self.cut()
                await asyncio.shield(self._done)
            for sock in self._sockets.values():
                sock.close()
