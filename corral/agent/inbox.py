"""Payloads the host put in the agent volume's inbox instead of sending them inline.

A request may name a file there (`staged`) in place of its `bytes` (docs/agent-protocol.md, "Staged
payloads"): a MiB read from it costs ~0.5 ms under gVisor, a MiB on the exec stream several. The
directory is root's, so only the host writes it; the host removes the file once it has the reply.
"""

from __future__ import annotations

import os
import re
import stat

from .bundle import AGENT_MOUNT
from .errors import Failure
from .wire import MAX_FRAME

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

NAME = re.compile(r"^[0-9a-f]{32}$")


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
        chunks = []
        left, offset = st.st_size, 0
        while left > 0:
            chunk = os.pread(fd, left, offset)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
            offset += len(chunk)
    except OSError as exc:
        raise Failure("io_error", f"staged payload {name}: {exc.strerror}", field="staged") from None
    finally:
        os.close(fd)
    out = {k: v for k, v in msg.items() if k != "staged"}
    out["bytes"] = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return out
