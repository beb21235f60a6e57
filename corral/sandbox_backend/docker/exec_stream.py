"""A `docker exec` attach as a byte stream: Docker's multiplexed stdout/stderr frames undone.

Built on an asyncio Protocol rather than a generic socket stream: Docker passes a MiB of output in
~32 KiB frames, and demultiplexing them in `data_received` (a plain callback) instead of one task
wake-up per chunk keeps a large read from costing the server several milliseconds of CPU.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import anyio
import anyio.lowlevel

from corral.sandbox_backend.engine import ExecStream

log = logging.getLogger(__name__)

_FRAME_HEADER = struct.Struct(">BxxxL")
HIGH_WATER = 32 * 1024 * 1024  # stdout bytes buffered before we stop reading the socket
MAX_STDERR_LOG = 4096


class _Demux(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.stdout = bytearray()
        self.ended = False
        self.error: BaseException | None = None
        self.paused_reading = False
        self.garbage: str | None = None  # what came instead of Docker's framing, if anything
        self.wanted = 1  # stdout bytes the waiting reader needs before it is worth waking
        self._waiter: asyncio.Future[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        raw = self.raw
        raw += data
        start = 0
        while len(raw) - start >= 8:
            if raw[start] not in (0, 1, 2) or raw[start + 1 : start + 4] != b"\0\0\0":
                # Not Docker's framing at all: end the stream with what it says.
                self.garbage = bytes(raw[start : start + 200]).decode(errors="replace").strip()
                raw.clear()
                self.ended = True
                self._wake()
                return
            kind, size = _FRAME_HEADER.unpack_from(raw, start)
            end = start + 8 + size
            if len(raw) < end:
                break
            if kind == 1:
                self.stdout += memoryview(raw)[start + 8 : end]
            elif size:
                text = bytes(raw[start + 8 : min(end, start + 8 + MAX_STDERR_LOG)])
                log.debug("agent stderr: %s", text.decode(errors="replace").rstrip())
            start = end
        del raw[:start]
        if len(self.stdout) > HIGH_WATER and self.transport is not None and not self.paused_reading:
            self.transport.pause_reading()
            self.paused_reading = True
        if len(self.stdout) >= self.wanted:
            self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return True  # keep the transport open for writing; our side closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._writable.set()
        self._wake()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_readable(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def wait_writable(self) -> None:
        await self._writable.wait()


class DockerExecStream(ExecStream):
    """stdin/stdout of a `docker exec` as a byte stream: stdout frames demultiplexed from
    Docker's 8-byte headers, stderr frames passed to the log (the agent only writes diagnostics there).

    Docker also writes its own errors into the stream (e.g. "OCI runtime exec failed: ...", or
    "waiting on pid ..." when the container dies), as stdout frames; the agent channel tells them
    from agent frames. Bytes that are not Docker's framing at all end the stream with what they say.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Demux, exec_id: str) -> None:
        self._transport = transport
        self._protocol = protocol
        self.exec_id = exec_id
        self._closed = False

    @classmethod
    async def open(cls, sock: socket.socket, exec_id: str) -> DockerExecStream:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(_Demux, sock)
        return cls(transport, protocol, exec_id)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        proto = self._protocol
        while not proto.stdout:
            if self._closed:
                raise anyio.ClosedResourceError
            if proto.ended:
                raise _ended(proto)
            await proto.wait_readable()
        data = bytes(proto.stdout[:max_bytes])
        del proto.stdout[:max_bytes]
        if proto.paused_reading and len(proto.stdout) < HIGH_WATER // 2 and not self._transport.is_closing():
            proto.paused_reading = False
            self._transport.resume_reading()
        return data

    async def receive_exactly(self, nbytes: int) -> bytes:
        """Exactly `nbytes` (EndOfStream if the stream ends first), woken once they are all here:
        a 1 MiB frame arrives in ~30 chunks, and one wake-up and one copy beat thirty."""
        proto = self._protocol
        while len(proto.stdout) < nbytes:
            if self._closed:
                raise anyio.ClosedResourceError
            if proto.ended:
                raise _ended(proto)
            if proto.paused_reading and not self._transport.is_closing():
                proto.paused_reading = False  # the frame is bigger than the high-water mark
                self._transport.resume_reading()
            proto.wanted = nbytes
            try:
                await proto.wait_readable()
            finally:
                proto.wanted = 1
        data = bytes(proto.stdout[:nbytes])
        del proto.stdout[:nbytes]
        return data

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._transport.is_closing() or self._protocol.error is not None:
            raise anyio.BrokenResourceError
        self._transport.write(item)
        await self._protocol.wait_writable()
        if self._protocol.error is not None:
            raise anyio.BrokenResourceError from self._protocol.error

    async def send_eof(self) -> None:
        if not self._transport.is_closing() and self._transport.can_write_eof():
            self._transport.write_eof()

    async def aclose(self) -> None:
        self._closed = True
        self._transport.close()
        self._protocol._wake()
        await anyio.lowlevel.checkpoint()


def _ended(proto: _Demux) -> Exception:
    if proto.garbage is not None:
        return anyio.BrokenResourceError(f"Docker sent something that is not an exec stream: {proto.garbage!r}")
    return anyio.EndOfStream()
