"""Big payloads cross as files in the sandbox's volumes instead of on the exec stream.

A `docker exec` stream carries a MiB through dockerd, a FIFO, the containerd shim and a pipe into
gVisor, 64 KiB at a time: ~6-9 ms per MiB here, most of a 1 MiB write_file or read_file. Both of a
sandbox's volumes are directories of Docker's on this host (docs/agent-protocol.md, "Staged
payloads"):
- in: the host writes a request's bytes into `inbox/` of the agent's code volume (/opt/corral in
  the sandbox) and sends their name; the agent reads them (~0.5 ms per MiB). Nothing the sandbox
  makes is used: the volume and `inbox/` are root's (sandbox code cannot write them), names are the
  host's random tokens, every step refuses a symlink.
- out: for a reply's bytes the host names a file in `.corral/outbox/` of /workspace, the agent
  writes it there (it counts against the sandbox's disk limit) and the host reads it from the
  volume's side. That directory is the sandbox's, so it is hostile ground: every component is
  opened without following symlinks, the file must be a regular file of exactly the size the reply
  announced (at most what was asked for), and it is read through the descriptor opened first.
Where any of this is unavailable (Docker on another host, Corral without root, a volume not mounted
here) the bytes go on the stream as before; a staging that fails once is not tried again for that
sandbox.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from collections.abc import Callable

from corral.errors import CorralError
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord

log = logging.getLogger(__name__)

INBOX = "inbox"
OUTBOX = (".corral", "outbox")  # under /workspace; the agent's DEFAULT_DATA_DIR is /workspace/.corral
STAGE_MIN = 256 * 1024  # smaller payloads cost less on the stream than a file's round trips
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Staged:
    """One payload written to the inbox; `remove()` once its request is answered. It holds the
    inbox open, so the removal happens where the file was written, whatever became of the path."""

    def __init__(self, inbox_fd: int, name: str) -> None:
        self._inbox_fd = inbox_fd
        self.name = name

    def remove(self) -> None:
        if self._inbox_fd < 0:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.name, dir_fd=self._inbox_fd)
        os.close(self._inbox_fd)
        self._inbox_fd = -1


def stage(volume_dir: str, data: bytes) -> Staged:
    """Write `data` into `<volume_dir>/inbox/` under a new random name (OSError if it cannot)."""
    top = os.open(volume_dir, _DIR_FLAGS)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(INBOX, 0o700, dir_fd=top)
        inbox = os.open(INBOX, _DIR_FLAGS, dir_fd=top)
    finally:
        os.close(top)
    try:
        st = os.fstat(inbox)
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(f"{volume_dir}/{INBOX} is not the host's own directory")
        os.fchmod(inbox, 0o755)  # the agent runs as the sandbox's user: it reads, never writes
        name = secrets.token_hex(16)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=inbox)
        try:
            os.fchmod(fd, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.unlink(name, dir_fd=inbox)
            raise
        finally:
            os.close(fd)
    except BaseException:
        os.close(inbox)
        raise
    return Staged(inbox, name)


def collect(volume_dir: str, name: str, size: int, limit: int) -> bytes:
    """The `size` bytes the agent left in `<volume_dir>/.corral/outbox/<name>`, which is removed.
    OSError (or ValueError) if anything there is not as the host expects."""
    if not 0 <= size <= limit:
        raise ValueError(f"the agent announced {size} bytes, more than the {limit} asked for")
    fds = [os.open(volume_dir, _DIR_FLAGS)]
    try:
        for part in OUTBOX:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fds[-1])
        try:
            os.unlink(name, dir_fd=fds[-1])
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise ValueError(f"outbox/{name} is not a regular file of {size} bytes")
            chunks, offset = [], 0
            while offset < size:
                chunk = os.pread(fd, size - offset, offset)
                if not chunk:
                    raise ValueError(f"outbox/{name} ended after {offset} of {size} bytes")
                chunks.append(chunk)
                offset += len(chunk)
        finally:
            os.close(fd)
    finally:
        for fd in reversed(fds):
            os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Staging:
    """Which of a sandbox's volumes this host can reach, and which directions still work for it."""

    def __init__(self, engine: Engine, agent_volume: Callable[[str], str] | None) -> None:
        self._engine = engine
        self._agent_volume = agent_volume
        self._dirs: dict[tuple[str, str], str | None] = {}  # (sandbox id, in|out) -> volume dir here
        self.staged = 0  # payloads that crossed as files, either way

    async def directory(self, rec: SandboxRecord, way: str) -> str | None:
        key = (rec.id, way)
        if key not in self._dirs:
            volume = rec.volume if way == "out" else self._agent_volume(rec.id) if self._agent_volume else None
            try:
                self._dirs[key] = await self._engine.volume_dir(volume) if volume else None
            except CorralError:
                self._dirs[key] = None
        return self._dirs[key]

    def give_up(self, rec: SandboxRecord, way: str, why: object) -> None:
        log.warning("sandbox %s: payloads go %s on the stream from now on (%s)", rec.id, way, why)
        self._dirs[(rec.id, way)] = None

    def forget(self, sandbox_id: str) -> None:
        for way in ("in", "out"):
            self._dirs.pop((sandbox_id, way), None)
