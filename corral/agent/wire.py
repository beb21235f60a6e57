"""Framing (4-byte big-endian length + UTF-8 JSON object) and the byte streams it runs over."""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any, Callable

from .util import write_all

MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    pass


def encode_frame(obj: dict[str, Any]) -> bytes:
    # Lone surrogates (undecodable file names) become JSON \udcXX escapes via backslashreplace.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    body = text.encode("utf-8", "backslashreplace")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buf = bytearray()

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = self._recv(max(65536, min(n - len(self._buf), 1 << 20)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def read(self) -> dict[str, Any] | None:
        """Next frame as a dict, or None on a clean end of stream."""
        if not self._fill(4):
            if self._buf:
                raise ProtocolError("stream ended inside a frame header")
            return None
        (length,) = _HEADER.unpack(bytes(self._buf[:4]))
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME} byte limit")
        if not self._fill(4 + length):
            raise ProtocolError("stream ended inside a frame")
        body = bytes(self._buf[4 : 4 + length])
        del self._buf[: 4 + length]
        try:
            msg = json.loads(body.decode("utf-8"))
        except ValueError as exc:
            raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise ProtocolError("frame is not a JSON object")
        return msg


class Stream:
    """What a connection reads frames from and writes them to."""

    def recv(self, n: int) -> bytes:
        raise NotImplementedError

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
    def __init__(self, rfd: int, wfd: int) -> None:
        self._rfd = rfd
        self._wfd = wfd

    def recv(self, n: int) -> bytes:
        return os.read(self._rfd, n)

    def write(self, data: bytes) -> None:
        write_all(self._wfd, data)

    def close(self) -> None:
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass
