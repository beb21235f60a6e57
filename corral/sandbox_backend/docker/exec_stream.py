"""A `docker exec` attach as a byte stream: Docker's multiplexed stdout/stderr frames undone."""

from __future__ import annotations

import logging
import struct

import anyio

from corral.sandbox_backend.engine import ExecStream

log = logging.getLogger(__name__)


class DockerExecStream(ExecStream):
    """stdin/stdout of a `docker exec` as a byte stream: stdout frames demultiplexed from
    Docker's 8-byte headers, stderr frames passed to the log (the agent only writes diagnostics there).

    Docker also writes its own errors into the stream (e.g. "OCI runtime exec failed: ...", or
    "waiting on pid ..." when the container dies), as stdout frames; the agent channel tells them
    from agent frames. Bytes that are not Docker's framing at all end the stream with what they say.
    """

    def __init__(self, stream: anyio.abc.SocketStream, exec_id: str) -> None:
        self._stream = stream
        self.exec_id = exec_id
        self._buf = bytearray()
        self._pending = bytearray()

    async def _fill(self) -> bool:
        chunk = await self._stream.receive(65536)
        self._buf += chunk
        return True

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._pending:
            while len(self._buf) < 8:
                try:
                    await self._fill()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    raise anyio.EndOfStream from None
            kind, pad, size = struct.unpack(">B3sL", self._buf[:8])
            if kind not in (0, 1, 2) or pad != b"\0\0\0":
                text = bytes(self._buf[:200]).decode(errors="replace").strip()
                self._buf.clear()
                raise anyio.BrokenResourceError(f"Docker sent something that is not an exec stream: {text!r}")
            while len(self._buf) < 8 + size:
                try:
                    await self._fill()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    raise anyio.EndOfStream from None
            payload = bytes(self._buf[8 : 8 + size])
            del self._buf[: 8 + size]
            if kind == 1:
                self._pending += payload
            elif payload:
                log.debug("agent stderr: %s", payload.decode(errors="replace").rstrip())
        data = bytes(self._pending[:max_bytes])
        del self._pending[:max_bytes]
        return data

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()
