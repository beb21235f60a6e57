"""Framing and the byte streams it runs over.

A frame is a 4-byte big-endian length N and N bytes of UTF-8 JSON object. With the top bit of the
length set it is a *binary* frame: N (without that bit) bytes holding a 4-byte JSON length J, J
bytes of JSON object and then raw bytes, which become the object's field `bytes`. So file contents
cross as they are, without base64 and without JSON parsing them (docs/agent-protocol.md).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct

from .util import write_all

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any, Callable

MAX_FRAME = 16 * 1024 * 1024
SMALL_CHUNK = 64 * 1024
BINARY = 0x80000000  # flag in the length of a binary frame
BYTES_FIELD = "bytes"  # the field a binary frame's raw bytes travel in
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    pass


def _json_body(obj: dict[str, Any]) -> bytes:
    # Lone surrogates (undecodable file names) become JSON \udcXX escapes via backslashreplace.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", "backslashreplace")


def encode_frame(obj: dict[str, Any]) -> bytes:
    """The frame for `obj`: binary when its `bytes` field holds bytes. The result's length
    (without the 4-byte header) is what is checked against MAX_FRAME."""
    payload = obj.get(BYTES_FIELD)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        body = _json_body({k: v for k, v in obj.items() if k != BYTES_FIELD})
        size = 4 + len(body) + len(payload)
        return b"".join((_HEADER.pack(size | BINARY), _HEADER.pack(len(body)), body, payload))
    body = _json_body(obj)
    return _HEADER.pack(len(body)) + body


def _parse_object(body: bytes | bytearray) -> dict[str, Any]:
    try:
        msg = json.loads(body.decode("utf-8"))
    except ValueError as exc:
        raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("frame is not a JSON object")
    return msg


class FrameReader:
    def __init__(self, recv: Callable[[int], bytes], recv_into: Callable[[memoryview], int] | None = None) -> None:
        self._recv = recv
        self._recv_into = recv_into
        self._buf = bytearray()
        # With recv_into, one small reused buffer for headers and small frames (allocating one per
        # read costs page faults under gVisor); a big frame is read straight into its own buffer.
        self._chunk = bytearray(SMALL_CHUNK) if recv_into is not None else bytearray()
        self._chunk_view = memoryview(self._chunk)

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            if self._recv_into is not None:
                got = self._recv_into(self._chunk_view)
                if not got:
                    return False
                self._buf += self._chunk_view[:got]
                continue
            chunk = self._recv(max(65536, min(n - len(self._buf), 1 << 20)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def _body(self, length: int) -> bytes | bytearray:
        """The `length` bytes after the 4-byte header at the front of the buffer."""
        buffered = len(self._buf) - 4
        if self._recv_into is None or length - buffered <= SMALL_CHUNK:
            if not self._fill(4 + length):
                raise ProtocolError("stream ended inside a frame")
            body = bytes(self._buf[4 : 4 + length])
            del self._buf[: 4 + length]
            return body
        # Received in place, sized once: growing a buffer 64 KiB at a time re-copies the frame and
        # faults in fresh pages on every step, which under gVisor cost a 1 MiB write_file ~3 ms.
        frame = bytearray(length)
        view = memoryview(frame)
        view[:buffered] = memoryview(self._buf)[4:]
        self._buf.clear()
        filled = buffered
        while filled < length:
            got = self._recv_into(view[filled:])
            if not got:
                raise ProtocolError("stream ended inside a frame")
            filled += got
        return frame

    def read(self) -> dict[str, Any] | None:
        """Next frame as a dict, or None on a clean end of stream."""
        if not self._fill(4):
            if self._buf:
                raise ProtocolError("stream ended inside a frame header")
            return None
        (length,) = _HEADER.unpack(bytes(self._buf[:4]))
        binary = bool(length & BINARY)
        length &= ~BINARY
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME} byte limit")
        body = self._body(length)
        if not binary:
            return _parse_object(body)
        (size,) = _HEADER.unpack(body[:4]) if length >= 4 else (length + 1,)
        if size > length - 4:
            raise ProtocolError("binary frame with a JSON length beyond the frame")
        msg = _parse_object(body[4 : 4 + size])
        if BYTES_FIELD in msg:
            raise ProtocolError(f"binary frame whose JSON has a '{BYTES_FIELD}' field")
        msg[BYTES_FIELD] = bytes(memoryview(body)[4 + size :])
        return msg


class Stream:
    """What a connection reads frames from and writes them to."""

    def recv(self, n: int) -> bytes:
        raise NotImplementedError

    def recv_into(self, buffer: memoryview) -> int:
        data = self.recv(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def close(self) -> None:
        pass


class SocketStream(Stream):
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, n: int) -> bytes:
        return self._sock.recv(n)

    def recv_into(self, buffer: memoryview) -> int:
        return self._sock.recv_into(buffer)

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def shutdown(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()


class FdStream(Stream):
    """Reads and writes two descriptors (a relay's stdin/stdout, or our own). `shutdown` ends a
    read blocked in another thread: nothing else can, as the host's end of a `docker exec` never
    delivers EOF inside gVisor, and prepare_checkpoint must let go of these host descriptors."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self._rfd = rfd
        self._wfd = wfd
        self._wake_r, self._wake_w = os.pipe()
        self._poll = select.poll()
        self._poll.register(rfd, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._poll.register(self._wake_r, select.POLLIN)
        self._down = False

    def _readable(self) -> bool:
        """Wait until there is something to read; False once shut down."""
        while not self._down:
            for fd, _ in self._poll.poll():
                if fd == self._rfd:
                    return True
        return False

    def recv(self, n: int) -> bytes:
        return os.read(self._rfd, n) if self._readable() else b""

    def recv_into(self, buffer: memoryview) -> int:
        return os.readv(self._rfd, [buffer]) if self._readable() else 0

    def shutdown(self) -> None:
        self._down = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    def write(self, data: bytes) -> None:
        write_all(self._wfd, data)

    def close(self) -> None:
        for fd in (self._rfd, self._wfd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
