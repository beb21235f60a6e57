"""Big request payloads go to the agent as files the host puts in the sandbox's agent volume.

A `docker exec` stream carries a MiB from the host to the agent through dockerd, a FIFO, the
containerd shim and a pipe into gVisor, 64 KiB at a time: ~6-9 ms per MiB here, most of a 1 MiB
write_file. The agent's code volume (/opt/corral in the sandbox) is a plain directory of Docker's on
this host, so the host writes the bytes into `inbox/` there and sends their name instead
(docs/agent-protocol.md, "Staged payloads"); the agent reads them (~0.5 ms per MiB) and the host
removes the file once the request is answered.

Nothing the sandbox makes is used here: the volume and `inbox/` are root's (the sandbox's user
cannot write them; root in a sandbox has no capabilities), names are the host's random tokens, and
every step refuses a symlink. Where any of this is unavailable (Docker on another host, Corral
without root, an engine that cannot say where the volume is), requests carry their bytes as before.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat

INBOX = "inbox"
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
