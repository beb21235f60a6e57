"""Payloads that cross as files instead of on the exec stream (docs/agent-protocol.md, "Staged
payloads"): a MiB costs ~0.5-2 ms that way under gVisor, several on the stream.

In: a request may name a file the host put in the agent volume's inbox (`staged`) in place of its
`bytes`; the directory is root's, so only the host writes it, and the host removes the file once it
has the reply. Out: a request may name a file (`outbox`) for the bytes of its reply, which go to
/workspace/.corral/outbox/ (the sandbox's own disk and limit); the host reads and removes it.
"""

from __future__ import annotations

import os
import re
import stat
import time

from .bundle import AGENT_MOUNT, DEFAULT_DATA_DIR
from .errors import Failure
from .util import pread_upto, write_all
from .wire import MAX_FRAME

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

NAME = re.compile(r"^[0-9a-f]{32}$")
STAGE_MIN = 256 * 1024  # the host's threshold too (service/inbox.py)
STALE_SECONDS = 300.0  # outbox files of requests whose host went away


def inbox_dir() -> str:
    # Tests point it elsewhere; in a sandbox it is the root-owned /opt/corral/inbox.
    return os.environ.get("CORRAL_AGENT_INBOX") or os.path.join(AGENT_MOUNT, "inbox")


def load_staged(msg: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """`msg` with its staged payload read into `bytes`. Every failure names the field `staged`,
    which tells the host to send the bytes inline instead."""
    name = msg.get("staged")
    if "bytes" not in fields or "bytes" in msg:
        raise Failure("bad_request", "'staged' stands for the 'bytes' of a request that takes them", field="staged")
    if not isinstance(name, str) or not NAME.match(name):
        raise Failure("bad_request", "'staged' must be the 32 hex digit name of a staged payload", field="staged")
    try:
        fd = os.open(os.path.join(inbox_dir(), name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise Failure("not_found", f"staged payload {name}: {exc.strerror}", field="staged") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FRAME:
            why = f"staged payload {name} is not a file of at most {MAX_FRAME} bytes"
            raise Failure("bad_request", why, field="staged")
        data = pread_upto(fd, st.st_size, 0)
    except OSError as exc:
        raise Failure("io_error", f"staged payload {name}: {exc.strerror}", field="staged") from None
    finally:
        os.close(fd)
    out = {k: v for k, v in msg.items() if k != "staged"}
    out["bytes"] = data
    return out


def outbox_dir() -> str:
    # Tests point it elsewhere; the host looks for it at .corral/outbox of the /workspace volume.
    return os.environ.get("CORRAL_AGENT_OUTBOX") or os.path.join(DEFAULT_DATA_DIR, "outbox")


def stage_reply(result: dict[str, Any], name: object) -> dict[str, Any]:
    """`result` with its `bytes` moved to the outbox file `name` (replaced by their count in
    `outbox`); unchanged when they are small or cannot be written there (a full disk, say)."""
    data = result.get("bytes")
    if not isinstance(name, str) or not NAME.match(name) or not isinstance(data, (bytes, bytearray)):
        return result
    if len(data) < STAGE_MIN:
        return result
    directory = outbox_dir()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        drop_stale(directory)
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
    except OSError:
        return result
    staged = {k: v for k, v in result.items() if k != "bytes"}
    staged["outbox"] = len(data)
    return staged


def drop_stale(directory: str) -> None:
    now = time.time()
    for entry in os.scandir(directory):
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                os.unlink(entry.path)
        except OSError:
            pass
