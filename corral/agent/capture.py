"""Output capture shared by exec and code_run: bounded result text plus batched progress events."""

from __future__ import annotations

import codecs
import os
import threading
import time

from .rpc import Request

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import IO

STREAMS = ("stdout", "stderr")
FLUSH_INTERVAL = 0.25  # minimum spacing of `output` events per request
EVENT_CHUNK = 64 * 1024  # per stream per event; the rest is only counted (events are progress)
MAX_OUTPUT = 1024 * 1024  # per stream; keeps the worst-case JSON of a result under MAX_FRAME
DEFAULT_OUTPUT = 64 * 1024
PIPE_GRACE = 1.0  # how long to keep reading pipes after the process is gone


class Capture:
    """Keeps the first and the last limit/2 bytes of a stream and counts what falls between."""

    def __init__(self, limit: int) -> None:
        self._head_limit = (limit + 1) // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self._lock:
            self._total += len(data)
            room = self._head_limit - len(self._head)
            if room > 0:
                self._head += data[:room]
                data = data[room:]
            if data and self._tail_limit:
                self._tail += data[-self._tail_limit :]
                excess = len(self._tail) - self._tail_limit
                if excess > 0:
                    del self._tail[:excess]

    def result(self) -> tuple[str, int]:
        """(text, dropped byte count); a marker in the text shows where bytes were dropped."""
        with self._lock:
            dropped = self._total - len(self._head) - len(self._tail)
            if not dropped:
                return (bytes(self._head) + bytes(self._tail)).decode("utf-8", "replace"), 0
            head = bytes(self._head).decode("utf-8", "replace")
            tail = bytes(self._tail).decode("utf-8", "replace")
            return f"{head}\n[... {dropped} bytes omitted ...]\n{tail}", dropped


class Progress:
    """Batches output into `output` events, at most one flush per FLUSH_INTERVAL."""

    def __init__(self, req: Request, enabled: bool) -> None:
        self._req = req
        self._enabled = enabled
        self._lock = threading.Lock()
        self._pending = {name: bytearray() for name in STREAMS}
        self._skipped = {name: 0 for name in STREAMS}
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in STREAMS}
        self._last = time.monotonic()

    def add(self, stream: str, data: bytes) -> None:
        if not self._enabled:
            return
        with self._lock:
            pending = self._pending[stream]
            room = max(0, EVENT_CHUNK - len(pending))
            pending += data[:room]
            self._skipped[stream] += max(0, len(data) - room)

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._last < FLUSH_INTERVAL:
            return
        self._last = now
        with self._lock:
            batches = [(name, bytes(self._pending[name]), self._skipped[name]) for name in STREAMS]
            for name in STREAMS:
                self._pending[name] = bytearray()
                self._skipped[name] = 0
        for name, data, skipped in batches:
            text = self._decoders[name].decode(data)
            if text or skipped:
                fields: dict[str, object] = {"stream": name, "data": text}
                if skipped:
                    fields["skipped"] = skipped
                self._req.event("output", **fields)


class Sink:
    """Where a process's output goes: the result capture plus progress events."""

    def __init__(self, max_output: int, progress: Progress) -> None:
        self.captures = {name: Capture(max_output) for name in STREAMS}
        self.progress = progress

    def add(self, stream: str, data: bytes) -> None:
        self.captures[stream].add(data)
        self.progress.add(stream, data)

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in STREAMS:
            text, dropped = self.captures[name].result()
            out[name] = text
            out[name + "_dropped"] = dropped
        return out


def read_pipe(pipe: IO[bytes], stream: str, sink: Sink) -> None:
    # Keeps draining after the request ends (a leftover background job may hold the pipe) so the
    # writer never blocks or dies of SIGPIPE; the capture is bounded.
    fd = pipe.fileno()
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            sink.add(stream, data)
    except OSError:
        pass
    finally:
        pipe.close()
