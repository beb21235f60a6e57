"""read_lines: a range of lines of a text file of any size, read in one streaming pass.

The file is read in 1 MiB chunks into one reused buffer; newlines are counted with bytes.count,
so memory stays bounded and the line numbers are right at any position (a 2,000,000-line file's
last line is found by number). What is returned stops at a whole line, within max_lines and
max_bytes; only a single line longer than max_bytes is cut (`line_cut`). Counting the rest of the
file for `total_lines` stops after COUNT_BUDGET seconds (then `total_lines` is null).
"""

from __future__ import annotations

import codecs
import os
import time

from .errors import Failure, bad_request, os_failure
from .params import Params
from .rpc import Request, op
from .state import Agent
from .util import open_regular_file

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

CHUNK = 1024 * 1024
SNIFF = 8192  # bytes looked at to tell text from binary (NUL, or not UTF-8), as git and grep do
BINARY_HEAD = 4096  # what a binary file's reply carries, for the host to recognise its type
COUNT_BUDGET = 20.0
DEFAULT_LINES = 2000
DEFAULT_BYTES = 256 * 1024
MAX_BYTES = 8 * 1024 * 1024
NO_LIMIT = 1 << 62


def looks_binary(head: bytes) -> bool:
    if b"\0" in head:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut last char is fine
    except UnicodeDecodeError:
        return True
    return False


class _Scan:
    """Lines start..end (1-based, inclusive) from a stream of chunks, within the caps."""

    def __init__(self, start: int, end: int, max_lines: int, max_bytes: int) -> None:
        self.start, self.end = start, min(end, start + max_lines - 1)
        self.wanted_end = end
        self.max_bytes = max_bytes
        self.line = 1  # number of the line the next byte belongs to
        self.out = bytearray()
        self.last = 0  # last complete line in `out`
        self.line_cut = False
        self.done = False
        self.stopped_early = False  # stopped by max_bytes

    def feed(self, buf: bytearray, n: int) -> None:
        i = 0
        while i < n and not self.done:
            if self.line < self.start:
                need = self.start - self.line
                found = buf.count(b"\n", i, n)
                if found < need:
                    self.line += found
                    return
                for _ in range(need):
                    i = buf.find(b"\n", i, n) + 1
                self.line = self.start
                continue
            j = buf.find(b"\n", i, n)
            stop = n if j < 0 else j + 1
            if len(self.out) + (stop - i) > self.max_bytes:
                self._overflow(buf, i, stop)
                return
            self.out += buf[i:stop]
            i = stop
            if j >= 0:
                self.last = self.line
                self.line += 1
                if self.last >= self.end:
                    self.done = True

    def _overflow(self, buf: bytearray, i: int, stop: int) -> None:
        self.done = True
        self.stopped_early = True
        if self.last < self.start:  # the first line alone is too long: return its start
            room = self.max_bytes - len(self.out)
            self.out += buf[i : i + room]
            self.last = self.start
            self.line_cut = True
        else:  # drop the partial line: what is returned ends at a whole line
            del self.out[len(self.out) - self._partial() :]

    def _partial(self) -> int:
        """Bytes of `out` after the last newline (the line being collected)."""
        nl = self.out.rfind(b"\n")
        return len(self.out) - (nl + 1)

    def finish(self, ended_with_newline: bool) -> None:
        """At end of file: a last line without a newline still counts."""
        if not self.done and self.line >= self.start and self._partial() > 0 and not ended_with_newline:
            self.last = self.line


def count_lines(fd: int, buf: bytearray, deadline: float) -> int | None:
    """Lines in the file (a last line without a newline counts), or None past the deadline."""
    lines, offset, last = 0, 0, b"\n"
    while True:
        n = os.preadv(fd, [buf], offset)
        if not n:
            return lines + (0 if last == b"\n" else 1)
        lines += buf.count(b"\n", 0, n)
        last = bytes(buf[n - 1 : n])
        offset += n
        if time.monotonic() > deadline:
            return None


@op("read_lines", "path", "start_line", "end_line", "max_lines", "max_bytes")
def op_read_lines(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    path = p.path("path")
    start = p.integer("start_line", 1, lo=-NO_LIMIT, hi=NO_LIMIT)
    end = p.integer("end_line", None, lo=-NO_LIMIT, hi=NO_LIMIT)
    max_lines = p.integer("max_lines", DEFAULT_LINES, lo=1, hi=1000000)
    max_bytes = p.integer("max_bytes", DEFAULT_BYTES, lo=1, hi=MAX_BYTES)
    if start == 0 or end == 0:
        raise bad_request("line numbers count from 1 (negative ones from the end: -1 is the last line)")
    fd, st = open_regular_file(path)
    try:
        return read_lines(req, fd, st.st_size, start, end, max_lines, max_bytes)
    except OSError as exc:
        raise os_failure(exc, path) from None
    finally:
        os.close(fd)


def read_lines(
    req: Request, fd: int, size: int, start: int, end: int | None, max_lines: int, max_bytes: int
) -> dict[str, Any]:
    head = os.pread(fd, SNIFF, 0)
    if looks_binary(head):
        return {"binary": True, "size": size, "bytes": head[:BINARY_HEAD]}
    buf = bytearray(CHUNK)
    deadline = time.monotonic() + COUNT_BUDGET
    total: int | None = None
    if start < 0 or (end is not None and end < 0):
        total = count_lines(fd, buf, deadline)
        if total is None:
            raise Failure("timeout", f"the file is too large to count its lines within {COUNT_BUDGET:g} s")
        start = max(1, total + 1 + start) if start < 0 else start
        if end is not None and end < 0:
            end = total + 1 + end
    if end is not None and end < start:
        raise bad_request(f"end_line ({end}) is before start_line ({start})")
    scan = _Scan(start, NO_LIMIT if end is None else end, max_lines, max_bytes)
    offset, newlines, last, at_eof = 0, 0, b"\n", False
    while True:
        req.check_cancelled()
        n = os.preadv(fd, [buf], offset)
        if not n:
            at_eof = True
            break
        if not scan.done:
            scan.feed(buf, n)
        elif total is not None or time.monotonic() > deadline:
            break  # the range is read; the total is known already or would take too long
        newlines += buf.count(b"\n", 0, n)
        last = bytes(buf[n - 1 : n])
        offset += n
    if at_eof:
        scan.finish(last == b"\n")
        if total is None:
            total = newlines + (0 if last == b"\n" else 1)
    more = scan.stopped_early or (scan.last >= scan.start and scan.last < min(scan.wanted_end, total or NO_LIMIT))
    return {
        "binary": False,
        "size": size,
        "bytes": bytes(scan.out),
        "first_line": start,
        "last_line": scan.last if scan.last >= start else None,
        "total_lines": total,
        "truncated": bool(more),
        "line_cut": scan.line_cut,
    }
